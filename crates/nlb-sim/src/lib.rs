//! A deterministic simulator of an nlb cluster on one Ethernet segment.
//!
//! It runs the real [`nlb_core::node::Node`] of every host, exchanging real frames
//! through a simulated learning switch, in virtual time. Everything random comes from
//! one seed, so a failing run replays exactly.
//!
//! What it models:
//! - **the switch**: MAC learning with ageing, flooding of unknown unicast, broadcast
//!   and multicast, and optional IGMP snooping keyed by MAC (as hardware switches do);
//! - **the data plane** of each host: the buckets it accepts per rule, conntrack for
//!   the connections it has, and the kernel's ownership *lease*, which ends a killed
//!   daemon's ownership on its own;
//! - **clients** that open flows (a SYN flooded to every host; the hosts that own its
//!   bucket accept it) and close them later;
//! - **faults**: seeded heartbeat loss, partitions (directional, so asymmetric ones
//!   too), host crashes (kernel and daemon gone), daemon kills and restarts (kernel
//!   stays, lease runs out), daemon freezes (a paused VM or a stopped process: its
//!   frames queue, its timers do not fire, its lease runs out, and when it thaws
//!   everything is handed to it at once, in a seeded order), and port moves (live
//!   migration).
//!
//! After every step the simulator checks the safety property: no two hosts whose
//! kernels run accept new connections for one bucket of one rule. Violations are
//! recorded with the time, so tests can assert there are none (or, across a partition,
//! that none lasts).

use nlb_core::buckets::BUCKETS;
use nlb_core::config::{Config, Protocol};
use nlb_core::filter::{Flow, cluster_seed, decide};
use nlb_core::node::{Action, Command, Event, Node};
use nlb_core::time::Instant;
use nlb_wire::MacAddr;
use nlb_wire::addressing::{ClusterMode, cluster_mac, igmp_group};
use nlb_wire::ethernet::{ETHERTYPE_NLB_HEARTBEAT, EthernetFrame};
use nlb_wire::heartbeat::BucketBitmap;
use nlb_wire::igmp::IgmpRepr;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::Ipv4Addr;
use std::time::Duration;

/// Ethernet overhead per frame on the wire that the frame bytes do not show: preamble
/// and start delimiter (8), FCS (4) and the inter-frame gap (12).
pub const WIRE_OVERHEAD: u64 = 24;

/// Heartbeats kept in [`Sim::heartbeat_log`].
pub const HEARTBEAT_LOG: usize = 256;

/// Knobs of a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed of everything random.
    pub seed: u64,
    /// One-way latency through the switch.
    pub latency: Duration,
    /// Probability that a heartbeat frame is lost on its way to one receiver.
    pub heartbeat_loss: f64,
    /// Whether the switch snoops IGMP and sends group MACs only to joined ports.
    pub igmp_snooping: bool,
    /// How long the switch remembers a learned MAC.
    pub mac_ageing: Duration,
    /// The cluster key's contents, if the hosts authenticate heartbeats.
    pub key: Option<Vec<u8>>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            latency: Duration::from_micros(50),
            heartbeat_loss: 0.0,
            igmp_snooping: false,
            mac_ageing: Duration::from_secs(300),
            key: None,
        }
    }
}

/// A port of the switch.
pub type Port = usize;

/// A learning switch.
#[derive(Debug, Default)]
pub struct Switch {
    ports: usize,
    table: BTreeMap<MacAddr, (Port, Instant)>,
    groups: BTreeMap<MacAddr, BTreeSet<Port>>,
    snooping: bool,
    ageing: Duration,
}

impl Switch {
    fn learn(&mut self, now: Instant, src: MacAddr, port: Port) {
        if !src.is_multicast() {
            self.table.insert(src, (port, now));
        }
    }

    /// The ports a frame from `ingress` to `dst` goes out of.
    fn forward(&self, now: Instant, ingress: Port, dst: MacAddr) -> Vec<Port> {
        let all_but_ingress = || (0..self.ports).filter(|&p| p != ingress).collect();
        if dst.is_broadcast() {
            return all_but_ingress();
        }
        if dst.is_multicast() {
            if self.snooping && dst.octets()[..3] == [0x01, 0x00, 0x5e] {
                return self
                    .groups
                    .get(&dst)
                    .map(|ports| ports.iter().copied().filter(|&p| p != ingress).collect())
                    .unwrap_or_default();
            }
            return all_but_ingress();
        }
        match self.table.get(&dst) {
            Some(&(port, at)) if now.saturating_since(at) < self.ageing => {
                if port == ingress {
                    vec![]
                } else {
                    vec![port]
                }
            }
            _ => all_but_ingress(),
        }
    }

    /// The port the switch has learned for `mac`, if any.
    pub fn learned_port(&self, mac: MacAddr) -> Option<Port> {
        self.table.get(&mac).map(|&(port, _)| port)
    }

    /// Whether the entry for `mac` is missing or older than the ageing time, so that
    /// frames to it are flooded.
    pub fn is_stale(&self, now: Instant, mac: MacAddr) -> bool {
        self.table
            .get(&mac)
            .is_none_or(|&(_, at)| now.saturating_since(at) >= self.ageing)
    }

    /// Whether the switch ever learned one of these MACs as a source.
    pub fn learned_any(&self, macs: &[MacAddr]) -> bool {
        macs.iter().any(|mac| self.table.contains_key(mac))
    }
}

/// The kernel side of a host.
#[derive(Debug, Clone)]
pub struct DataPlane {
    /// Buckets accepted for new connections, per rule slot.
    pub owned: Vec<BucketBitmap>,
    /// Whether established connections are accepted, per rule slot.
    pub keep_established: Vec<bool>,
    /// When the ownership lease runs out, once the daemon is gone or frozen.
    pub lease_until: Option<Instant>,
    /// Whether the lease ran out while the daemon was frozen: the kernel holds the
    /// elements no more, until the thawed daemon refreshes them.
    pub lease_expired: bool,
}

impl DataPlane {
    fn new(slots: usize) -> Self {
        DataPlane {
            owned: vec![BucketBitmap::new(BUCKETS); slots],
            keep_established: vec![true; slots],
            lease_until: None,
            lease_expired: false,
        }
    }

    /// The buckets accepted now, after the lease.
    pub fn effective_owned(&self, now: Instant, slot: usize) -> Option<&BucketBitmap> {
        match self.lease_until {
            _ if self.lease_expired => None,
            Some(until) if now >= until => None,
            _ => self.owned.get(slot),
        }
    }
}

/// One simulated host.
#[derive(Debug)]
pub struct SimHost {
    /// Its configuration.
    pub config: Config,
    /// Its NIC's MAC.
    pub mac: MacAddr,
    /// Its switch port.
    pub port: Port,
    /// The daemon, if running.
    pub node: Option<Node>,
    /// Whether the kernel runs (false after a crash).
    pub kernel_up: bool,
    /// The data plane.
    pub dataplane: DataPlane,
    /// Connections this host has, by flow id.
    pub conntrack: BTreeSet<u64>,
    /// While the daemon is frozen: until when, and the frames that queued for it.
    pub frozen: Option<Frozen>,
    incarnation: u32,
}

/// A frozen daemon's pause.
#[derive(Debug, Clone)]
pub struct Frozen {
    /// When it thaws.
    pub until: Instant,
    /// Frames that arrived meanwhile, in order, as its socket queues them.
    pub held: Vec<Vec<u8>>,
}

/// A client connection.
#[derive(Debug, Clone)]
pub struct SimFlow {
    /// The flow's addresses.
    pub flow: Flow,
    /// How long it lasts once a host accepts it.
    pub duration: Duration,
    /// The host that accepted it, if any did yet.
    pub host: Option<usize>,
    /// SYNs sent.
    pub syns: u32,
    /// Whether it broke: its host dropped it before it ended.
    pub broken: bool,
}

/// A safety violation: two hosts accept new connections for one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// When.
    pub at: Instant,
    /// Rule slot.
    pub slot: usize,
    /// Bucket.
    pub bucket: u16,
    /// The hosts (indices) that both accept it.
    pub hosts: Vec<usize>,
    /// Whether a partition was in force.
    pub partitioned: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Pending {
    Deliver { port: Port, frame: Vec<u8> },
    Syn { flow: u64 },
    FlowEnd { flow: u64 },
}

/// The simulated segment.
#[derive(Debug)]
pub struct Sim {
    /// Virtual time.
    pub now: Instant,
    /// The hosts.
    pub hosts: Vec<SimHost>,
    /// The switch.
    pub switch: Switch,
    /// Every event every node raised, with the time and host index.
    pub events: Vec<(Instant, usize, Event)>,
    /// Safety violations seen.
    pub violations: Vec<Violation>,
    /// The flows, by id.
    pub flows: BTreeMap<u64, SimFlow>,
    /// Heartbeat bytes put on the wire, overhead included.
    pub heartbeat_wire_bytes: u64,
    /// Frames to a cluster MAC delivered to ports without a host (bystanders).
    pub bystander_cluster_frames: u64,
    /// The latest heartbeats the hosts sent (at most [`HEARTBEAT_LOG`]), for an
    /// attacker's replays.
    pub heartbeat_log: std::collections::VecDeque<Vec<u8>>,
    config: SimConfig,
    rng: StdRng,
    queue: BinaryHeap<Reverse<(Instant, u64, Pending)>>,
    sequence: u64,
    blocked: BTreeSet<(Port, Port)>,
    client_port: Port,
    bystander_ports: BTreeSet<Port>,
    next_flow: u64,
    /// Whether some data plane changed since the last safety check.
    dataplane_dirty: bool,
}

impl Sim {
    /// A segment with one host per config, a client port and `bystanders` ports that
    /// belong to nobody in the cluster.
    pub fn new(config: SimConfig, hosts: Vec<Config>, bystanders: usize) -> Sim {
        let host_count = hosts.len();
        let ports = host_count + 1 + bystanders;
        let mut sim = Sim {
            now: Instant::ZERO,
            hosts: Vec::new(),
            switch: Switch {
                ports,
                snooping: config.igmp_snooping,
                ageing: config.mac_ageing,
                ..Switch::default()
            },
            events: Vec::new(),
            violations: Vec::new(),
            flows: BTreeMap::new(),
            heartbeat_wire_bytes: 0,
            bystander_cluster_frames: 0,
            heartbeat_log: std::collections::VecDeque::new(),
            rng: StdRng::seed_from_u64(config.seed),
            config,
            queue: BinaryHeap::new(),
            sequence: 0,
            blocked: BTreeSet::new(),
            client_port: host_count,
            bystander_ports: (host_count + 1..ports).collect(),
            next_flow: 0,
            dataplane_dirty: false,
        };
        for (index, host_config) in hosts.into_iter().enumerate() {
            let mac = MacAddr([0x52, 0x54, 0, 0, 0, host_config.host.id]);
            let slots = host_config.rules.len() + 1;
            sim.hosts.push(SimHost {
                config: host_config,
                mac,
                port: index,
                node: None,
                kernel_up: true,
                dataplane: DataPlane::new(slots),
                conntrack: BTreeSet::new(),
                frozen: None,
                incarnation: 0,
            });
            sim.start_daemon(index);
        }
        sim
    }

    /// The simulation's configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    fn push(&mut self, at: Instant, pending: Pending) {
        self.sequence += 1;
        self.queue.push(Reverse((at, self.sequence, pending)));
    }

    /// Starts (or restarts) host `index`'s daemon with a new incarnation. In IGMP mode
    /// its kernel reports the group, as joining it on the interface makes Linux do.
    pub fn start_daemon(&mut self, index: usize) {
        let now = self.now;
        let host = &mut self.hosts[index];
        host.incarnation += 1;
        host.dataplane.lease_until = None;
        host.dataplane.lease_expired = false;
        host.frozen = None;
        let key = self
            .config
            .key
            .as_deref()
            .map(nlb_wire::heartbeat::HeartbeatKey::derive);
        let node = Node::new(host.config.clone(), host.mac, host.incarnation, key, now);
        host.node = Some(node);
        if host.config.cluster.mode == ClusterMode::Igmp {
            let vips = host.config.cluster.vips.clone();
            let (mac, port) = (host.mac, host.port);
            for vip in vips {
                let report = IgmpRepr::MembershipReportV2 {
                    group: igmp_group(vip),
                };
                let frame = report.to_frame(mac, Ipv4Addr::new(198, 18, 255, 1), None);
                self.send(port, frame);
            }
        }
        self.drain(index);
    }

    /// Kills host `index`'s daemon; its kernel keeps the last ownership until the lease
    /// runs out, and keeps its connections.
    pub fn kill_daemon(&mut self, index: usize) {
        let host = &mut self.hosts[index];
        let lease = nlb_core::lease::ownership_lease(&host.config);
        host.frozen = None;
        host.node = None;
        host.dataplane.lease_until = Some(self.now + lease);
    }

    /// Freezes host `index`'s daemon for `duration`, as SIGSTOP or a paused VM would: it
    /// stops refreshing the kernel's lease, its timers do not fire, and frames for it
    /// queue. Its kernel runs on and keeps its connections. When it thaws, the daemon
    /// gets the overdue timeout and every queued frame at once, in an order the seed
    /// picks (timeout first or frames first), and refreshes its lease after the node
    /// has judged them, as the daemon's ordering contract says.
    pub fn freeze(&mut self, index: usize, duration: Duration) {
        let now = self.now;
        let host = &mut self.hosts[index];
        if host.node.is_none() {
            return;
        }
        let lease = nlb_core::lease::ownership_lease(&host.config);
        host.dataplane.lease_until = Some(host.dataplane.lease_until.unwrap_or(now + lease));
        host.frozen = Some(Frozen {
            until: now + duration,
            held: Vec::new(),
        });
    }

    /// Whether host `index`'s daemon is frozen now.
    pub fn is_frozen(&self, index: usize) -> bool {
        self.hosts[index].frozen.is_some()
    }

    fn thaw(&mut self, index: usize) {
        let now = self.now;
        let Some(frozen) = self.hosts[index].frozen.take() else {
            return;
        };
        if self.hosts[index].node.is_none() {
            return;
        }
        // The daemon applies what one input produced before it takes the next (and its
        // lease refresh follows the node's judgement), so the data plane is checked
        // between the two.
        let timeout_first = self.rng.random_bool(0.5);
        for step in [timeout_first, !timeout_first] {
            let node = self.hosts[index].node.as_mut().expect("checked");
            if step {
                node.handle_timeout(now);
            } else {
                for frame in &frozen.held {
                    node.handle_frame(now, frame);
                }
            }
            self.drain(index);
            let dataplane = &mut self.hosts[index].dataplane;
            dataplane.lease_until = None;
            dataplane.lease_expired = false;
            self.dataplane_dirty = true;
            self.check_safety();
        }
        self.report_connections(index);
    }

    /// An attacker on bystander port `bystander` (0-based, of those [`Sim::new`] made)
    /// sends `frame` now, whatever its source MAC says.
    pub fn inject(&mut self, bystander: usize, frame: Vec<u8>) {
        let Some(&port) = self.bystander_ports.iter().nth(bystander) else {
            return;
        };
        self.send(port, frame);
    }

    /// Crashes host `index`: kernel and daemon gone, its connections lost.
    pub fn crash(&mut self, index: usize) {
        let host = &mut self.hosts[index];
        host.node = None;
        host.frozen = None;
        host.kernel_up = false;
        let lost: Vec<u64> = std::mem::take(&mut host.conntrack).into_iter().collect();
        for flow in lost {
            if let Some(f) = self.flows.get_mut(&flow) {
                f.broken = true;
            }
        }
    }

    /// Blocks frames from every port in `from` to every port in `to` (one direction).
    pub fn block(&mut self, from: &[usize], to: &[usize]) {
        for &a in from {
            for &b in to {
                self.blocked
                    .insert((self.hosts[a].port, self.hosts[b].port));
            }
        }
    }

    /// Splits the hosts into groups that cannot hear each other.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i != j {
                    self.block(a, b);
                }
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Moves host `index` to a new switch port (a live migration). Frames to its MAC go
    /// to the old port until the switch learns the new one.
    pub fn move_port(&mut self, index: usize) -> Port {
        let port = self.switch.ports;
        self.switch.ports += 1;
        let old = self.hosts[index].port;
        self.hosts[index].port = port;
        let moved: Vec<_> = self
            .blocked
            .iter()
            .copied()
            .filter(|&(a, b)| a == old || b == old)
            .collect();
        for (a, b) in moved {
            self.blocked.insert((
                if a == old { port } else { a },
                if b == old { port } else { b },
            ));
        }
        port
    }

    /// Sends an operator command to host `index`'s daemon.
    pub fn command(
        &mut self,
        index: usize,
        command: Command,
    ) -> Result<nlb_wire::heartbeat::HostState, nlb_core::node::CommandError> {
        let now = self.now;
        let node = self.hosts[index].node.as_mut().expect("daemon runs");
        let result = node.handle_command(now, command);
        self.drain(index);
        result
    }

    fn send(&mut self, ingress: Port, frame: Vec<u8>) {
        let Ok(parsed) = EthernetFrame::parse(&frame) else {
            return;
        };
        let is_heartbeat = parsed.ethertype == ETHERTYPE_NLB_HEARTBEAT;
        if is_heartbeat {
            self.heartbeat_wire_bytes += frame.len() as u64 + WIRE_OVERHEAD;
            if self.hosts.iter().any(|h| h.port == ingress) {
                if self.heartbeat_log.len() == HEARTBEAT_LOG {
                    self.heartbeat_log.pop_front();
                }
                self.heartbeat_log.push_back(frame.clone());
            }
        }
        let now = self.now;
        self.switch.learn(now, parsed.src, ingress);
        if self.switch.snooping
            && let Ok(datagram) = nlb_wire::igmp::IgmpDatagram::parse(parsed.payload)
        {
            let group_mac = nlb_wire::addressing::ipv4_multicast_mac(datagram.igmp.group());
            match datagram.igmp {
                IgmpRepr::MembershipReportV1 { .. } | IgmpRepr::MembershipReportV2 { .. } => {
                    self.switch
                        .groups
                        .entry(group_mac)
                        .or_default()
                        .insert(ingress);
                }
                IgmpRepr::LeaveGroup { .. } => {
                    if let Some(ports) = self.switch.groups.get_mut(&group_mac) {
                        ports.remove(&ingress);
                    }
                }
                IgmpRepr::MembershipQuery { .. } => {}
            }
        }
        let is_cluster_mac = self.is_cluster_mac(parsed.dst);
        for port in self.switch.forward(now, ingress, parsed.dst) {
            if self.blocked.contains(&(ingress, port)) {
                continue;
            }
            if is_heartbeat && self.rng.random_bool(self.config.heartbeat_loss) {
                continue;
            }
            if is_cluster_mac && self.bystander_ports.contains(&port) {
                self.bystander_cluster_frames += 1;
            }
            let at = now + self.config.latency;
            self.push(
                at,
                Pending::Deliver {
                    port,
                    frame: frame.clone(),
                },
            );
        }
    }

    fn is_cluster_mac(&self, mac: MacAddr) -> bool {
        let Some(host) = self.hosts.first() else {
            return false;
        };
        host.config
            .cluster
            .vips
            .iter()
            .any(|&vip| cluster_mac(vip, host.config.cluster.mode) == mac)
    }

    /// Drains host `index`'s outputs: frames into the switch, actions into its data
    /// plane, events into the log.
    fn drain(&mut self, index: usize) {
        loop {
            let Some(node) = self.hosts[index].node.as_mut() else {
                return;
            };
            if let Some(frame) = node.poll_transmit() {
                let port = self.hosts[index].port;
                self.send(port, frame);
                continue;
            }
            if let Some(Action::SetRule {
                rule,
                owned,
                keep_established,
            }) = node.poll_action()
            {
                self.dataplane_dirty = true;
                let host = &mut self.hosts[index];
                host.dataplane.owned[rule] = owned;
                host.dataplane.keep_established[rule] = keep_established;
                if !keep_established {
                    self.drop_connections(index, rule);
                }
                continue;
            }
            if let Some(event) = node.poll_event() {
                self.events.push((self.now, index, event));
                continue;
            }
            return;
        }
    }

    fn drop_connections(&mut self, index: usize, slot: usize) {
        let host = &self.hosts[index];
        let doomed: Vec<u64> = host
            .conntrack
            .iter()
            .copied()
            .filter(|id| {
                self.flows
                    .get(id)
                    .is_some_and(|f| rule_slot(&host.config, &f.flow) == slot)
            })
            .collect();
        for id in doomed {
            self.hosts[index].conntrack.remove(&id);
            if let Some(flow) = self.flows.get_mut(&id) {
                flow.broken = true;
            }
        }
        self.report_connections(index);
    }

    fn report_connections(&mut self, index: usize) {
        let now = self.now;
        let count = self.hosts[index].conntrack.len() as u32;
        if self.hosts[index].frozen.is_some() {
            // A frozen daemon counts its connections when it thaws.
            return;
        }
        if let Some(node) = self.hosts[index].node.as_mut() {
            node.handle_connections(now, count);
            self.drain(index);
        }
    }

    /// Opens a flow now from `src:src_port` to `dst:dst_port`, lasting `duration` once a
    /// host accepts it.
    pub fn open_flow(
        &mut self,
        src: Ipv4Addr,
        src_port: u16,
        dst: Ipv4Addr,
        dst_port: u16,
        duration: Duration,
    ) -> u64 {
        let flow = Flow {
            src,
            src_port,
            dst,
            dst_port,
            protocol: Protocol::Tcp,
        };
        self.open_flow_at(self.now, flow, duration)
    }

    /// Schedules the SYN of a new flow at `at`.
    fn open_flow_at(&mut self, at: Instant, flow: Flow, duration: Duration) -> u64 {
        let id = self.next_flow;
        self.next_flow += 1;
        self.flows.insert(
            id,
            SimFlow {
                flow,
                duration,
                host: None,
                syns: 0,
                broken: false,
            },
        );
        self.push(at, Pending::Syn { flow: id });
        id
    }

    /// Opens `count` flows from random client addresses in 198.18.128.0/17, spread
    /// evenly over the next `over`, each lasting a random time up to `max_duration`.
    pub fn open_random_flows(
        &mut self,
        count: usize,
        over: Duration,
        dst: Ipv4Addr,
        dst_port: u16,
        max_duration: Duration,
    ) {
        let start = self.now;
        for i in 0..count {
            let offset = over.mul_f64(i as f64 / count.max(1) as f64);
            let src = Ipv4Addr::from(
                u32::from(Ipv4Addr::new(198, 18, 128, 0)) + self.rng.random_range(0..(1 << 15)),
            );
            let flow = Flow {
                src,
                src_port: self.rng.random_range(1024..=65535),
                dst,
                dst_port,
                protocol: Protocol::Tcp,
            };
            let duration = max_duration.mul_f64(self.rng.random_range(0.1..1.0));
            self.open_flow_at(start + offset, flow, duration);
        }
    }

    fn handle_syn(&mut self, id: u64) {
        let now = self.now;
        let Some(flow) = self.flows.get(&id).cloned() else {
            return;
        };
        // The SYN goes to the cluster MAC: the switch decides who sees it.
        let dst_mac = cluster_mac(flow.flow.dst, self.hosts[0].config.cluster.mode);
        let ports = self.switch.forward(now, self.client_port, dst_mac);
        let mut acceptors = Vec::new();
        for (index, host) in self.hosts.iter().enumerate() {
            if !host.kernel_up || !ports.contains(&host.port) {
                continue;
            }
            if self.blocked.contains(&(self.client_port, host.port)) {
                continue;
            }
            let owned: Vec<BucketBitmap> = (0..host.dataplane.owned.len())
                .map(|slot| {
                    host.dataplane
                        .effective_owned(now, slot)
                        .cloned()
                        .unwrap_or_else(|| BucketBitmap::new(BUCKETS))
                })
                .collect();
            let decision = decide(&host.config, &owned, cluster_seed(&host.config), &flow.flow);
            if decision.accept {
                acceptors.push(index);
            }
        }
        let entry = self.flows.get_mut(&id).expect("flow exists");
        entry.syns += 1;
        match acceptors.as_slice() {
            [] => {
                // TCP retransmits the SYN after its initial RTO, 1 s.
                self.push(now + Duration::from_secs(1), Pending::Syn { flow: id });
            }
            [host] => {
                entry.host = Some(*host);
                let ends = now + entry.duration;
                let host = *host;
                self.hosts[host].conntrack.insert(id);
                self.push(ends, Pending::FlowEnd { flow: id });
                self.report_connections(host);
            }
            many => {
                entry.broken = true;
                let bucket = nlb_core::filter::bucket_of(
                    &flow.flow,
                    nlb_core::config::Affinity::Single,
                    cluster_seed(&self.hosts[0].config),
                );
                self.violations.push(Violation {
                    at: now,
                    slot: usize::MAX,
                    bucket,
                    hosts: many.to_vec(),
                    partitioned: !self.blocked.is_empty(),
                });
            }
        }
    }

    fn handle_flow_end(&mut self, id: u64) {
        let Some(flow) = self.flows.get(&id) else {
            return;
        };
        if let Some(host) = flow.host
            && self.hosts[host].conntrack.remove(&id)
        {
            self.report_connections(host);
        }
    }

    /// The earliest time anything is due.
    fn next_due(&self) -> Option<Instant> {
        let queued = self.queue.peek().map(|Reverse((at, _, _))| *at);
        let timers = self
            .hosts
            .iter()
            .filter_map(|h| match &h.frozen {
                Some(frozen) => Some(frozen.until),
                None => h.node.as_ref().map(Node::poll_timeout),
            })
            .min();
        let leases = self
            .hosts
            .iter()
            .filter_map(|h| h.dataplane.lease_until)
            .min();
        [queued, timers, leases].into_iter().flatten().min()
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Instant) {
        while let Some(next) = self.next_due() {
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            self.step();
            self.check_safety();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        self.run_until(until);
    }

    fn step(&mut self) {
        let now = self.now;
        while let Some(Reverse((at, _, _))) = self.queue.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, _, pending)) = self.queue.pop().expect("peeked");
            match pending {
                Pending::Deliver { port, frame } => {
                    let Some(index) = self.hosts.iter().position(|h| h.port == port) else {
                        continue;
                    };
                    let host = &mut self.hosts[index];
                    if let Some(frozen) = host.frozen.as_mut() {
                        frozen.held.push(frame);
                    } else if let Some(node) = host.node.as_mut() {
                        node.handle_frame(now, &frame);
                        self.drain(index);
                    }
                }
                Pending::Syn { flow } => self.handle_syn(flow),
                Pending::FlowEnd { flow } => self.handle_flow_end(flow),
            }
        }
        for index in 0..self.hosts.len() {
            if self.hosts[index]
                .frozen
                .as_ref()
                .is_some_and(|frozen| frozen.until <= now)
            {
                self.thaw(index);
            }
            let due = self.hosts[index].frozen.is_none()
                && self.hosts[index]
                    .node
                    .as_ref()
                    .is_some_and(|n| n.poll_timeout() <= now);
            if due {
                self.hosts[index]
                    .node
                    .as_mut()
                    .expect("checked")
                    .handle_timeout(now);
                self.drain(index);
            }
        }
        for host in &mut self.hosts {
            if host.dataplane.lease_until.is_some_and(|until| until <= now) {
                self.dataplane_dirty = true;
                if host.frozen.is_some() {
                    host.dataplane.lease_expired = true;
                } else {
                    for owned in &mut host.dataplane.owned {
                        *owned = BucketBitmap::new(BUCKETS);
                    }
                }
                host.dataplane.lease_until = None;
            }
        }
    }

    fn check_safety(&mut self) {
        if !std::mem::take(&mut self.dataplane_dirty) {
            return;
        }
        let now = self.now;
        let slots = self.hosts.first().map_or(0, |h| h.dataplane.owned.len());
        for slot in 0..slots {
            let mut holders: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
            for (index, host) in self.hosts.iter().enumerate() {
                if !host.kernel_up {
                    continue;
                }
                if let Some(owned) = host.dataplane.effective_owned(now, slot) {
                    for bucket in owned.iter() {
                        holders.entry(bucket).or_default().push(index);
                    }
                }
            }
            for (bucket, hosts) in holders {
                if hosts.len() > 1 {
                    self.violations.push(Violation {
                        at: now,
                        slot,
                        bucket,
                        hosts,
                        partitioned: !self.blocked.is_empty(),
                    });
                }
            }
        }
    }

    /// For each rule slot, the buckets no running host accepts.
    pub fn unowned_buckets(&self, slot: usize) -> usize {
        let now = self.now;
        (0..BUCKETS)
            .filter(|&bucket| {
                !self.hosts.iter().any(|h| {
                    h.kernel_up
                        && h.dataplane
                            .effective_owned(now, slot)
                            .is_some_and(|owned| owned.contains(bucket))
                })
            })
            .count()
    }

    /// Host `index`'s node.
    pub fn node(&self, index: usize) -> &Node {
        self.hosts[index].node.as_ref().expect("daemon runs")
    }

    /// Events of one kind, as (time, host index).
    pub fn events_matching(&self, mut pred: impl FnMut(&Event) -> bool) -> Vec<(Instant, usize)> {
        self.events
            .iter()
            .filter(|(_, _, e)| pred(e))
            .map(|(t, i, _)| (*t, *i))
            .collect()
    }

    /// Runs until `pred` holds or `limit` passes; returns the time it first held.
    pub fn run_until_true(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&Sim) -> bool,
    ) -> Option<Instant> {
        let deadline = self.now + limit;
        loop {
            if pred(self) {
                return Some(self.now);
            }
            let next = self.next_due()?;
            if next > deadline {
                self.now = deadline;
                return pred(self).then_some(self.now);
            }
            self.now = self.now.max(next);
            self.step();
            self.check_safety();
        }
    }
}

fn rule_slot(config: &Config, flow: &Flow) -> usize {
    config
        .rule_for(flow.dst, flow.dst_port, flow.protocol)
        .unwrap_or(config.rules.len())
}

/// A configuration for host `id` of a test cluster: VIP 198.18.0.10, one rule for TCP
/// port 80, the given mode, default timers unless overridden.
pub fn test_config(id: u8, mode: ClusterMode, extra_cluster: &str, extra_rule: &str) -> Config {
    let text = format!(
        r#"
[cluster]
interface = "sim0"
vips = ["198.18.0.10"]
mode = "{mode}"
{extra_cluster}

[host]
id = {id}

[[rule]]
ports = "80"
protocol = "tcp"
{extra_rule}
"#
    );
    Config::parse(&text, "sim.toml").expect("test config is valid")
}

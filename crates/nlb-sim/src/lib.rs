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
//!
//! # Captures
//!
//! The switch has a tap (`pcap.rs`): every frame that enters it, written as a pcap file
//! stamped with virtual time, for Wireshark and `nlb doctor`. Ask for one with
//! [`SimConfig::capture`], or set `NLB_SIM_PCAP` to a directory and every simulation any
//! test makes writes `<dir>/<test>-<n>-seed<seed>.pcap`, so that a failing seed of an
//! existing test can be opened without changing it:
//!
//! ```text
//! NLB_SIM_PCAP=/tmp/sim cargo test -p nlb-sim --test properties partitions_heal
//! ```
//!
//! What the tap sees (each frame once, at the switch's ingress: frames that loss or a
//! partition then drop are in it) is the contract of [`pcap`].
//!
//! # Layout
//!
//! - [`Sim`] itself, the event queue and the clock: this file;
//! - the switch and the network's faults: `network.rs` ([`Switch`]);
//! - hosts, their daemons and data planes: `host.rs` ([`SimHost`], [`DataPlane`]);
//! - clients and flows: `flows.rs` ([`SimFlow`]);
//! - the safety check: `checks.rs` ([`Violation`]);
//! - the switch's tap: `pcap.rs` ([`Capture`], [`PcapWriter`]).

mod checks;
mod flows;
mod host;
mod network;
pub mod pcap;

pub use checks::Violation;
pub use flows::SimFlow;
pub use host::{DataPlane, Frozen, SimHost};
pub use network::{HEARTBEAT_LOG, Port, Switch, WIRE_OVERHEAD};
pub use pcap::{Capture, PcapWriter};

use nlb_core::buckets::BUCKETS;
use nlb_core::config::Config;
use nlb_core::node::{Event, Node};
use nlb_core::time::Instant;
use nlb_wire::addressing::ClusterMode;
use nlb_wire::bitmap::BucketBitmap;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

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
    /// Where the switch's tap writes, from the first frame on. `None`: a file in the
    /// directory `NLB_SIM_PCAP` names, if it is set, else no capture.
    pub capture: Option<Capture>,
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
            capture: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Pending {
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
    /// The switch's tap, if capturing.
    tap: Option<pcap::Tap>,
}

impl Sim {
    /// A segment with one host per config, a client port and `bystanders` ports that
    /// belong to nobody in the cluster.
    pub fn new(config: SimConfig, hosts: Vec<Config>, bystanders: usize) -> Sim {
        let host_count = hosts.len();
        let ports = host_count + 1 + bystanders;
        // Before the daemons start: their first frames (IGMP reports) are in it.
        let tap = pcap::Tap::open(config.capture.as_ref(), config.seed);
        let mut sim = Sim {
            now: Instant::ZERO,
            hosts: Vec::new(),
            switch: Switch::new(ports, config.igmp_snooping, config.mac_ageing),
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
            tap,
        };
        for (index, host_config) in hosts.into_iter().enumerate() {
            sim.hosts.push(SimHost::new(host_config, index));
            sim.start_daemon(index);
        }
        sim
    }

    /// The simulation's configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    pub(crate) fn push(&mut self, at: Instant, pending: Pending) {
        self.sequence += 1;
        self.queue.push(Reverse((at, self.sequence, pending)));
    }

    pub(crate) fn report_connections(&mut self, index: usize) {
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

//! A simulated host: its daemon (the real [`Node`]), its kernel's data plane, and
//! what happens to them: starts and restarts, kills, freezes and thaws, crashes, and
//! operator commands.
//!
//! The data plane holds what the node's last `Action::SetRule` said per rule slot, and
//! the kernel's ownership lease: once the daemon is gone or frozen, the lease runs out
//! on its own and the host stops taking new connections ([`DataPlane::effective_owned`]).

use crate::{Port, Sim};
use nlb_core::buckets::BUCKETS;
use nlb_core::config::Config;
use nlb_core::filter::RuleRef;
use nlb_core::node::{Action, Command, Node};
use nlb_core::time::Instant;
use nlb_wire::MacAddr;
use nlb_wire::addressing::{ClusterMode, igmp_group};
use nlb_wire::bitmap::BucketBitmap;
use nlb_wire::igmp::IgmpRepr;
use rand::Rng;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

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

impl SimHost {
    /// Host `index` of the segment (on switch port `index`), its daemon not started.
    pub(crate) fn new(config: Config, index: usize) -> SimHost {
        let mac = MacAddr([0x52, 0x54, 0, 0, 0, config.host.id]);
        let slots = config.rules.len() + 1;
        SimHost {
            config,
            mac,
            port: index,
            node: None,
            kernel_up: true,
            dataplane: DataPlane::new(slots),
            conntrack: BTreeSet::new(),
            frozen: None,
            incarnation: 0,
        }
    }
}

impl Sim {
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

    pub(crate) fn thaw(&mut self, index: usize) {
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

    /// Hands host `index`'s daemon the result of one run of its check `check` (the
    /// daemon's check runner does this on a real host). Returns the check's new verdict if
    /// it changed.
    pub fn check_result(
        &mut self,
        index: usize,
        check: usize,
        probe: nlb_core::check::Probe,
    ) -> Option<nlb_core::check::Health> {
        let now = self.now;
        let node = self.hosts[index].node.as_mut().expect("daemon runs");
        let changed = node.handle_check(now, check, probe);
        self.drain(index);
        changed
    }

    /// Drains host `index`'s outputs: frames into the switch, actions into its data
    /// plane, events into the log.
    pub(crate) fn drain(&mut self, index: usize) {
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

    pub(crate) fn drop_connections(&mut self, index: usize, slot: usize) {
        let host = &self.hosts[index];
        let doomed: Vec<u64> = host
            .conntrack
            .iter()
            .copied()
            .filter(|id| {
                self.flows.get(id).is_some_and(|f| {
                    RuleRef::of(&host.config, &f.flow).slot(host.config.rules.len()) == slot
                })
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
}

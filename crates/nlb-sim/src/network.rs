//! The segment: a learning switch, the frames on it, and the faults of the network
//! (heartbeat loss, partitions, port moves, an attacker's frames).
//!
//! The switch learns source MACs with ageing, floods unknown unicast, broadcast and
//! multicast, and with IGMP snooping sends the IGMP cluster MACs only to the ports that
//! joined the group, keyed by MAC as hardware switches do. [`Sim::send`] puts a frame
//! on it: the tap records it as it enters (see `crate::pcap`); heartbeats are counted
//! (and logged for replays) and may be lost per receiver; blocked port pairs
//! (partitions) drop the frame; the rest is delivered after the latency.

use crate::{Pending, Sim};
use nlb_core::time::Instant;
use nlb_wire::MacAddr;
use nlb_wire::addressing::cluster_mac;
use nlb_wire::ethernet::{ETHERTYPE_NLB_HEARTBEAT, EthernetFrame};
use nlb_wire::igmp::IgmpRepr;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Ethernet overhead per frame on the wire that the frame bytes do not show: preamble
/// and start delimiter (8), FCS (4) and the inter-frame gap (12).
pub const WIRE_OVERHEAD: u64 = 24;

/// Heartbeats kept in [`Sim::heartbeat_log`].
pub const HEARTBEAT_LOG: usize = 256;

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
    /// A switch with `ports` ports and nothing learned.
    pub(crate) fn new(ports: usize, snooping: bool, ageing: Duration) -> Switch {
        Switch {
            ports,
            snooping,
            ageing,
            ..Switch::default()
        }
    }

    pub(crate) fn learn(&mut self, now: Instant, src: MacAddr, port: Port) {
        if !src.is_multicast() {
            self.table.insert(src, (port, now));
        }
    }

    /// The ports a frame from `ingress` to `dst` goes out of.
    pub(crate) fn forward(&self, now: Instant, ingress: Port, dst: MacAddr) -> Vec<Port> {
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

impl Sim {
    /// An attacker on bystander port `bystander` (0-based, of those [`Sim::new`] made)
    /// sends `frame` now, whatever its source MAC says.
    pub fn inject(&mut self, bystander: usize, frame: Vec<u8>) {
        let Some(&port) = self.bystander_ports.iter().nth(bystander) else {
            return;
        };
        self.send(port, frame);
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

    pub(crate) fn send(&mut self, ingress: Port, frame: Vec<u8>) {
        // At ingress, before loss and partitions, which act per receiver: a mirror of
        // the switch's ports sees the frame whoever then misses it.
        if let Some(tap) = self.tap.as_mut() {
            tap.record(self.now, &frame);
        }
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

    pub(crate) fn is_cluster_mac(&self, mac: MacAddr) -> bool {
        let Some(host) = self.hosts.first() else {
            return false;
        };
        host.config
            .cluster
            .vips
            .iter()
            .any(|&vip| cluster_mac(vip, host.config.cluster.mode) == mac)
    }
}

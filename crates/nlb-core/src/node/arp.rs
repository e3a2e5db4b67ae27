//! ARP (RFC 826) and address conflict detection (RFC 5227): probing before the first
//! join, answering for the VIPs, announcing them, and defending them.
//!
//! # Probing
//!
//! A host probes its VIPs (RFC 5227 §2.1) before it first joins, and refuses to join if
//! a MAC outside the cluster answers. While probing it only listens, which also lets it
//! learn the cluster before it is counted.
//!
//! # ARP
//!
//! The two lowest ids of the view ([`ARP_RESPONDERS`]) answer requests and probes for
//! the VIPs (a 64-host cluster does not answer each request 64 times) with the cluster
//! MAC as the ARP sender address, sent to the requester's ARP sender address (RFC 826), from
//! the host's own Ethernet address. They announce the VIPs (RFC 5227 §2.3) when they
//! join and when they take over a departed host's buckets, with copies more than 1 s
//! apart so that Linux's `locktime` does not ignore them. An ARP packet claiming a VIP
//! from a MAC that is neither a cluster MAC nor a member's is a conflict: it is reported
//! with the MAC and defended at most once per 10 s (RFC 5227 §2.4 (c)).

use super::{Event, Misconfig, Node, Timer};
use crate::time::Instant;
use nlb_wire::MacAddr;
use nlb_wire::arp::{ArpKind, ArpPacket, ArpRepr};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Probes sent for each VIP before the first join (RFC 5227 PROBE_NUM).
pub const PROBE_COUNT: u32 = 3;

/// Time between probes. RFC 5227 §2.2 allows shorter values than its 1–2 s on fast
/// links; a LAN answers within milliseconds.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Wait after the last probe before the address counts as free.
pub const PROBE_WAIT_AFTER: Duration = Duration::from_millis(200);

/// When announcements go out, after a join or a takeover.
pub const ANNOUNCE_OFFSETS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_millis(1100),
    Duration::from_millis(2200),
    Duration::from_millis(5000),
];

/// At most one defensive announcement per VIP in this time (RFC 5227 DEFEND_INTERVAL).
pub const DEFEND_INTERVAL: Duration = Duration::from_secs(10);

/// Hosts of a view that answer ARP requests for the VIPs: a responder and a backup.
pub const ARP_RESPONDERS: usize = 2;

/// A conflict as `nlb query` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConflictInfo {
    /// The VIP.
    pub ip: Ipv4Addr,
    /// The MAC that claimed it.
    pub mac: MacAddr,
    /// When, in the caller's clock.
    pub at_us: u64,
}

/// How many recent conflicts and probes to remember for queries.
const RECENT_LIMIT: usize = 16;

/// Appends to a list of recent things, dropping the oldest beyond [`RECENT_LIMIT`].
fn remember(list: &mut VecDeque<ConflictInfo>, item: ConflictInfo) {
    if list.len() == RECENT_LIMIT {
        list.pop_front();
    }
    list.push_back(item);
}

impl Node {
    pub(super) fn begin_probing(&mut self, now: Instant) {
        self.probing_since = Some(now);
        self.probes_sent = 0;
        self.arm_probe_timer();
        self.timers.set(Timer::Heartbeat, now);
    }

    /// Probe `n` (0-based) goes out `(n + 1)` intervals after probing starts, so that a
    /// heartbeat announces this host's MAC to the members before its first probe (a
    /// member that knows the MAC does not mistake the probe for a stranger's).
    pub(super) fn next_probe_at(&self, since: Instant) -> Instant {
        if self.probes_sent < PROBE_COUNT {
            since + PROBE_INTERVAL * (self.probes_sent + 1)
        } else {
            since + PROBE_INTERVAL * PROBE_COUNT + PROBE_WAIT_AFTER
        }
    }

    /// Arms [`Timer::Probe`] for the next probe while probing, and stops it otherwise.
    fn arm_probe_timer(&mut self) {
        let next = self.probing_since.map(|since| self.next_probe_at(since));
        self.timers.set_or_stop(Timer::Probe, next);
    }

    pub(super) fn run_probing(&mut self, now: Instant) {
        let Some(since) = self.probing_since else {
            return;
        };
        while self.probes_sent < PROBE_COUNT && now >= self.next_probe_at(since) {
            for vip in self.config.cluster.vips.clone() {
                let probe = ArpRepr::probe(self.mac, vip);
                self.transmits.push_back(probe.to_frame(self.mac, None));
            }
            self.probes_sent += 1;
            self.arm_probe_timer();
        }
        if self.probes_sent >= PROBE_COUNT && now >= self.next_probe_at(since) {
            self.probing_since = None;
            self.arm_probe_timer();
            self.probed = true;
            self.schedule_announcements(now);
            // Join with a heartbeat at once, rather than a period later.
            self.timers.set(Timer::Heartbeat, now);
        }
    }

    pub(super) fn cluster_mac_of(&self, vip: Ipv4Addr) -> Option<MacAddr> {
        self.cluster_macs
            .iter()
            .find(|(v, _)| *v == vip)
            .map(|&(_, mac)| mac)
    }

    pub(super) fn is_cluster_mac(&self, mac: MacAddr) -> bool {
        self.cluster_macs.iter().any(|&(_, m)| m == mac)
    }

    pub(super) fn is_member_mac(&self, mac: MacAddr) -> bool {
        mac == self.mac || self.peers.keys().any(|&(_, m)| m == mac)
    }

    pub(super) fn schedule_announcements(&mut self, now: Instant) {
        self.announce_at = ANNOUNCE_OFFSETS
            .iter()
            .map(|&offset| now + offset)
            .collect();
        self.timers
            .set_or_stop(Timer::Announce, self.announce_at.first().copied());
    }

    pub(super) fn announce(&mut self, vip: Ipv4Addr) {
        if let Some(cluster_mac) = self.cluster_mac_of(vip) {
            let frame = ArpRepr::announcement(cluster_mac, vip).to_frame(self.mac, None);
            self.transmits.push_back(frame);
            self.stats.arp_announcements_sent += 1;
        }
    }

    pub(super) fn run_announcements(&mut self, now: Instant) {
        let due = self.announce_at.iter().filter(|&&at| at <= now).count();
        if due == 0 {
            return;
        }
        self.announce_at.retain(|&at| at > now);
        self.timers
            .set_or_stop(Timer::Announce, self.announce_at.first().copied());
        if self.participating() {
            for vip in self.config.cluster.vips.clone() {
                self.announce(vip);
            }
        }
    }

    /// At most two hosts answer ARP for a VIP: the two lowest ids this host hears as live
    /// members (a designated responder and its backup, so that every request is answered
    /// while one of them fails, and by the next ones as soon as both are silent, even
    /// before a new view is agreed). A host outside any view, joining or alone, answers
    /// for itself.
    pub(super) fn answers_arp(&self) -> bool {
        self.participating()
            && (!self.view.members.contains(self.id)
                || self
                    .live_set()
                    .iter()
                    .take(ARP_RESPONDERS)
                    .any(|h| h == self.id))
    }

    pub(super) fn handle_arp(&mut self, now: Instant, eth_src: MacAddr, payload: &[u8]) {
        let Ok(arp) = ArpPacket::new_checked(payload).and_then(|p| ArpRepr::parse(&p)) else {
            self.stats.arp_malformed += 1;
            return;
        };
        if self.is_member_mac(eth_src) || self.is_cluster_mac(arp.sender_mac) {
            return;
        }
        let kind = arp.kind();
        let vips = &self.config.cluster.vips;
        if kind != ArpKind::Probe && vips.contains(&arp.sender_ip) {
            self.handle_conflict(now, arp.sender_ip, arp.sender_mac);
            return;
        }
        if !vips.contains(&arp.target_ip) {
            return;
        }
        match kind {
            ArpKind::Probe => {
                self.stats.probes_seen += 1;
                remember(
                    &mut self.probes,
                    ConflictInfo {
                        ip: arp.target_ip,
                        mac: arp.sender_mac,
                        at_us: now.micros(),
                    },
                );
                self.events.push_back(Event::ProbeSeen {
                    ip: arp.target_ip,
                    mac: arp.sender_mac,
                });
                self.reply(&arp);
            }
            ArpKind::Request => self.reply(&arp),
            _ => {}
        }
    }

    pub(super) fn reply(&mut self, request: &ArpRepr) {
        if !self.answers_arp() {
            return;
        }
        let Some(cluster_mac) = self.cluster_mac_of(request.target_ip) else {
            return;
        };
        let reply = ArpRepr::reply_to(request, cluster_mac, request.target_ip);
        self.transmits.push_back(reply.to_frame(self.mac, None));
        self.stats.arp_replies_sent += 1;
    }

    pub(super) fn handle_conflict(&mut self, now: Instant, ip: Ipv4Addr, mac: MacAddr) {
        self.stats.conflicts += 1;
        if self.probing_since.is_some() {
            // RFC 5227 §2.1.1: someone answered or uses the address we are probing for.
            self.probing_since = None;
            self.arm_probe_timer();
            self.misconfig = Some(Misconfig::AddressInUse { ip, mac });
            self.events
                .push_back(Event::Misconfigured(Misconfig::AddressInUse { ip, mac }));
            self.update(now);
            return;
        }
        let defended = self.participating()
            && self
                .last_defence
                .get(&ip)
                .is_none_or(|&at| now.saturating_since(at) >= DEFEND_INTERVAL);
        if defended {
            self.last_defence.insert(ip, now);
            self.announce(ip);
        }
        remember(
            &mut self.conflicts,
            ConflictInfo {
                ip,
                mac,
                at_us: now.micros(),
            },
        );
        self.events.push_back(Event::Conflict { ip, mac, defended });
    }
}

//! Membership: heartbeats in (checked cheapest first), peers, echoes and confirmation,
//! and expiry after the failure window.
//!
//! # Liveness: only fresh heartbeats make members
//!
//! Every heartbeat carries an echo of the newest heartbeat its sender accepted from
//! each host it hears (incarnation and sequence). A receiver counts the sender as a
//! member (*confirmed*) only while the sender's latest heartbeat echoes the receiver's
//! own incarnation and a sequence the receiver sent within its failure window. Since the
//! sender heard the receiver that recently, and declares a host dead only after a whole
//! window without it, it cannot have declared the receiver dead before now.
//!
//! - An old capture, replayed to a receiver that restarted (new incarnation), or that
//!   forgot the sender, echoes something older: it confirms nothing, so a dead host cannot
//!   be kept alive by replays. Replays of recent frames are not newer than what was
//!   accepted ([`AntiReplay`](nlb_wire::heartbeat::AntiReplay)); under another source MAC they fail (the MAC is under the
//!   tag, see nlb-wire's heartbeat module for the threat model).
//! - A frame that queued while this host was paused is just as stale.
//! - A peer that is heard but not confirmed still counts for release before claim: this
//!   host never claims a bucket any recent, authentic heartbeat lists. Being careful costs
//!   availability for at most a window, never safety.
//! - A host that joins (or restarts) is confirmed one echo later: its first heartbeat
//!   echoes nobody, the members answer soon (a quarter period at most) with its echo, and
//!   its next heartbeat echoes them. Confirmation is judged at each heartbeat received.
//! - What an attacker with captures but no key can still do: replay a dead host's
//!   authentic heartbeats to a receiver that forgot it (after a restart), which then
//!   respects that host's old claims, as unconfirmed, and leaves those buckets unowned
//!   while the replays last; and send heartbeats with bad tags to keep a host that never
//!   joined in `KeyMismatch`. Both cost availability, never safety.
//!
//! Per-sender state is bounded: peers and replay windows are kept per (host id, MAC), at
//! most [`MACS_PER_HOST_ID`] MACs per id (64 ids; a sender that does not hear this host
//! gives its place to a new one). Peers expire with the failure window; replay windows
//! of senders that are no longer peers are dropped once the table reaches
//! [`REPLAY_TABLE_LIMIT`].
//! Every field a heartbeat carries is checked against this host's configuration before
//! it is used (bucket counts, rule counts, epochs); what does not fit is a counted drop,
//! and drops are reported once per reason and then summarised
//! ([`DROP_REPORT_INTERVAL`]), never logged per frame.

use super::{Event, Node};
use crate::buckets::{BUCKETS, HostId};
use crate::time::Instant;
use nlb_wire::MacAddr;
use nlb_wire::bitmap::{BucketBitmap, MemberSet};
use nlb_wire::heartbeat::{HeartbeatPacket, HeartbeatRepr, HostState};
use std::time::Duration;

/// Senders (MACs) tracked per host id: one, and one more so that a duplicate id can be
/// seen and named.
pub const MACS_PER_HOST_ID: usize = 2;

/// Replay windows kept before those of senders that are no longer peers are dropped.
pub const REPLAY_TABLE_LIMIT: usize = 4 * 64;

/// At most one [`Event::HeartbeatDropped`] per reason in this time.
pub const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Why a heartbeat was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Not a valid heartbeat.
    Malformed,
    /// Authentication tag missing or wrong.
    BadTag,
    /// Not newer than the last one from that sender.
    Replay,
    /// From another cluster on the segment.
    ForeignCluster,
    /// From a host that uses this host's id.
    DuplicateHostId,
    /// Another format version: that host runs another nlb release.
    Version,
    /// The sender MAC under the tag is not the Ethernet source: re-sent by someone else.
    SpoofedSource,
}

impl DropReason {
    /// Every reason, for metrics that list them all.
    pub const ALL: [DropReason; 7] = [
        DropReason::Malformed,
        DropReason::BadTag,
        DropReason::Replay,
        DropReason::ForeignCluster,
        DropReason::DuplicateHostId,
        DropReason::Version,
        DropReason::SpoofedSource,
    ];

    /// What an operator should do about it.
    pub const fn advice(self) -> &'static str {
        match self {
            DropReason::Malformed => "a host sends heartbeats nlb cannot read: check its release",
            DropReason::BadTag => {
                "heartbeats fail authentication: every host needs the same cluster.key_file"
            }
            DropReason::Replay => "old heartbeats re-sent: someone replays captured frames",
            DropReason::ForeignCluster => "another cluster shares this segment",
            DropReason::DuplicateHostId => "two hosts use one host.id: give each its own",
            DropReason::Version => {
                "a host speaks another heartbeat version: upgrade every host to one nlb release"
            }
            DropReason::SpoofedSource => {
                "heartbeats re-sent under another MAC: someone on the segment forges them"
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Peer {
    pub(super) last_heard: Instant,
    /// Whether its latest heartbeat echoed one this host sent within the failure window:
    /// proof that the peer hears this host now. Only confirmed peers are members; every
    /// peer's claims are respected (module docs, "Liveness").
    pub(super) confirmed: bool,
    pub(super) latest: HeartbeatRepr,
    /// The targets of the last heartbeat sent under a different view than `latest`'s.
    pub(super) previous_targets: Option<Vec<BucketBitmap>>,
}

impl Peer {
    pub(super) fn participating(&self) -> bool {
        self.confirmed && participating_state(self.latest.state)
    }
    pub(super) fn view(&self) -> (u32, MemberSet) {
        (self.latest.view_epoch, self.latest.view_members)
    }
}

pub(super) fn participating_state(state: HostState) -> bool {
    matches!(
        state,
        HostState::Converging | HostState::Converged | HostState::Draining
    )
}

/// A peer as `nlb query` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberInfo {
    /// Host id.
    pub id: HostId,
    /// Its state.
    pub state: HostState,
    /// Its MAC.
    pub mac: MacAddr,
    /// Buckets it owns, over all rules.
    pub buckets: usize,
    /// Microseconds since it was last heard (0 for this host).
    pub last_heard_us: u64,
    /// Whether its cluster-wide configuration matches this host's.
    pub config_matches: bool,
    /// The rule slots for which it says a health check is down (its heartbeat's
    /// `CHECK_DOWN` bits): why it takes no share of them.
    pub check_down_rules: Vec<usize>,
}

impl Node {
    pub(super) fn drop_heartbeat(&mut self, now: Instant, reason: DropReason, from: MacAddr) {
        *self.stats.heartbeats_dropped.entry(reason).or_default() += 1;
        // One entry per reason: the table is as small as `DropReason`.
        let (last, unreported) = self.drop_reports.entry(reason).or_insert((None, 0));
        *unreported += 1;
        if last.is_none_or(|at| now.saturating_since(at) >= DROP_REPORT_INTERVAL) {
            self.events.push_back(Event::HeartbeatDropped {
                reason,
                from,
                count: *unreported,
            });
            *last = Some(now);
            *unreported = 0;
        }
    }

    pub(super) fn handle_heartbeat(&mut self, now: Instant, src: MacAddr, payload: &[u8]) {
        // Cheapest checks first, so that a flood costs as little as it can: the format,
        // the version, the cluster, and only then the tag.
        let packet = match HeartbeatPacket::new_checked(payload) {
            Ok(packet) => packet,
            Err(nlb_wire::Error::Unsupported(_)) => {
                return self.drop_heartbeat(now, DropReason::Version, src);
            }
            Err(_) => return self.drop_heartbeat(now, DropReason::Malformed, src),
        };
        if packet.version() != nlb_wire::heartbeat::VERSION {
            if packet.cluster_id() == self.cluster_id {
                self.last_old_release = Some((now, src));
                if self.view.epoch == 0 {
                    self.update(now);
                }
            }
            return self.drop_heartbeat(now, DropReason::Version, src);
        }
        if packet.cluster_id() != self.cluster_id {
            return self.drop_heartbeat(now, DropReason::ForeignCluster, src);
        }
        let heartbeat = match HeartbeatRepr::parse(&packet, self.key.as_ref()) {
            Ok(heartbeat) => heartbeat,
            Err(nlb_wire::Error::BadTag) => {
                self.last_bad_tag = Some((now, src));
                if self.view.epoch == 0 {
                    // Only a host that never joined judges a key mismatch.
                    self.update(now);
                }
                return self.drop_heartbeat(now, DropReason::BadTag, src);
            }
            Err(_) => return self.drop_heartbeat(now, DropReason::Malformed, src),
        };
        if heartbeat.sender_mac != Some(src) {
            // Re-sent under another source: with a key the tag already failed, as it
            // covers the MAC; without one this still refuses the plain replay.
            return self.drop_heartbeat(now, DropReason::SpoofedSource, src);
        }
        // Nothing from the wire is used before it is checked against this host's own
        // configuration: every nlb host has 256 buckets per rule, a host with this
        // configuration has exactly this many rules, and an epoch at its ceiling could
        // not grow.
        let fits = heartbeat
            .rules
            .iter()
            .all(|rule| rule.owned.bucket_count() == BUCKETS)
            && (heartbeat.rules.len() == self.owned.len()
                || heartbeat.config_fingerprint != self.fingerprint)
            && heartbeat.view_epoch < u32::MAX - 1;
        if !fits {
            return self.drop_heartbeat(now, DropReason::Malformed, src);
        }
        let key = (heartbeat.host_id, src);
        // Per-sender state is bounded: at most MACS_PER_HOST_ID senders per host id are
        // tracked (a second one is already a duplicate id), and replay windows of
        // senders that are not peers any more are dropped when the table is full.
        let macs_of_id = self
            .peers
            .range((heartbeat.host_id, MacAddr::ZERO)..=(heartbeat.host_id, MacAddr::BROADCAST))
            .count();
        if !self.peers.contains_key(&key) && macs_of_id >= MACS_PER_HOST_ID {
            // With a key, a sender that does not hear this host gives way: stale MACs
            // replayed by an attacker cannot keep a live host of that id out. (Without
            // one anyone can pose as any host anyway, and churning the table would only
            // make a flood cost more.)
            let unconfirmed = self
                .key
                .is_some()
                .then(|| {
                    self.peers
                        .range(
                            (heartbeat.host_id, MacAddr::ZERO)
                                ..=(heartbeat.host_id, MacAddr::BROADCAST),
                        )
                        .find(|(_, peer)| !peer.confirmed)
                        .map(|(&key, _)| key)
                })
                .flatten();
            match unconfirmed {
                Some(stale) => {
                    self.peers.remove(&stale);
                    self.targets_changed = true;
                }
                None => return self.drop_heartbeat(now, DropReason::DuplicateHostId, src),
            }
        }
        if self.replay.len() >= REPLAY_TABLE_LIMIT && !self.replay.contains_key(&key) {
            let peers = &self.peers;
            self.replay.retain(|key, _| peers.contains_key(key));
        }
        if self
            .replay
            .entry(key)
            .or_default()
            .check(heartbeat.incarnation, heartbeat.sequence)
            .is_err()
        {
            return self.drop_heartbeat(now, DropReason::Replay, src);
        }
        if heartbeat.host_id == self.id {
            // Counted, and kept as a peer (it is never a member: it has this host's id)
            // so that it hears its echo and finds this host.
            self.drop_heartbeat(now, DropReason::DuplicateHostId, src);
        }
        self.stats.heartbeats_received += 1;
        let confirmed = self.echoes_me(now, &heartbeat);
        let mut restarted = false;
        match self.peers.get_mut(&key) {
            Some(peer) => {
                self.targets_changed |= peer.confirmed != confirmed;
                peer.confirmed = confirmed;
                restarted = peer.latest.incarnation != heartbeat.incarnation;
                if peer.view() != (heartbeat.view_epoch, heartbeat.view_members) {
                    peer.previous_targets =
                        Some(peer.latest.rules.iter().map(|r| r.target.clone()).collect());
                }
                let same_targets = peer.latest.rules.len() == heartbeat.rules.len()
                    && peer
                        .latest
                        .rules
                        .iter()
                        .zip(&heartbeat.rules)
                        .all(|(a, b)| a.target == b.target);
                self.targets_changed |=
                    !same_targets || peer.view() != (heartbeat.view_epoch, heartbeat.view_members);
                peer.latest = heartbeat;
                peer.last_heard = now;
            }
            None => {
                self.targets_changed = true;
                if heartbeat.host_id != self.id {
                    self.events.push_back(Event::PeerUp {
                        host: heartbeat.host_id,
                        mac: src,
                    });
                }
                // Echo it back soon, so that it can count this host.
                self.hurry_heartbeat(now);
                self.peers.insert(
                    key,
                    Peer {
                        last_heard: now,
                        confirmed,
                        latest: heartbeat,
                        previous_targets: None,
                    },
                );
            }
        }
        if restarted {
            // A restart: echo it back soon, so that it can count this host.
            self.hurry_heartbeat(now);
        }
        self.update(now);
    }

    /// Whether `heartbeat` echoes this host's incarnation and a sequence this host sent
    /// within the failure window: then its sender heard this host that recently, and (as
    /// it declares a host dead only after a window without it) cannot have declared it
    /// dead before now. An old capture, or a frame that queued while this host was
    /// paused, echoes something older and proves nothing.
    pub(super) fn echoes_me(&self, now: Instant, heartbeat: &HeartbeatRepr) -> bool {
        let Some(floor) = self
            .sent
            .iter()
            .find(|&&(at, _)| now.saturating_since(at) <= self.window)
            .map(|&(_, sequence)| sequence)
        else {
            return false;
        };
        heartbeat.echoes.iter().any(|echo| {
            echo.host_id == self.id
                && echo.incarnation == self.incarnation
                && (floor..=self.sequence).contains(&echo.sequence)
        })
    }

    pub(super) fn expire_peers(&mut self, now: Instant) {
        let window = self.window;
        let expired: Vec<_> = self
            .peers
            .iter()
            .filter(|(_, peer)| now > peer.last_heard + window)
            .map(|(&key, _)| key)
            .collect();
        for key in expired {
            self.targets_changed = true;
            self.peers.remove(&key);
            if key.0 != self.id {
                self.events.push_back(Event::PeerDown { host: key.0 });
            }
        }
    }

    /// The participating hosts this host hears with its own configuration, itself
    /// included if it participates.
    pub(super) fn live_set(&self) -> MemberSet {
        let mut live = MemberSet::EMPTY;
        if self.participating() {
            live.insert(self.id);
            for (&(id, _), peer) in &self.peers {
                if id != self.id
                    && peer.participating()
                    && peer.latest.config_fingerprint == self.fingerprint
                {
                    live.insert(id);
                }
            }
        }
        live
    }

    /// The participating peer record of `host`, if it is heard.
    pub(super) fn peer(&self, host: HostId) -> Option<&Peer> {
        self.peers
            .range((host, MacAddr::ZERO)..=(host, MacAddr::BROADCAST))
            .map(|(_, peer)| peer)
            .find(|peer| peer.participating() && peer.latest.config_fingerprint == self.fingerprint)
    }

    /// Who accepts new connections for `bucket` of rule `slot` now, as far as this host
    /// knows: itself, or the peers whose latest heartbeat lists it as owned. More than one
    /// only in a partition; none during a hand-off or a failover.
    pub fn owners_of(&self, slot: usize, bucket: u16) -> Vec<HostId> {
        let mut owners: Vec<HostId> = self
            .peers
            .iter()
            .filter(|(_, peer)| {
                peer.latest
                    .rules
                    .get(slot)
                    .is_some_and(|rule| rule.owned.contains(bucket))
            })
            .map(|(&(id, _), _)| id)
            .collect();
        if self
            .owned
            .get(slot)
            .is_some_and(|owned| owned.contains(bucket))
        {
            owners.push(self.id);
        }
        owners.sort_unstable();
        owners.dedup();
        owners
    }

    /// This host and every peer heard within the failure window, by id.
    pub fn members(&self, now: Instant) -> Vec<MemberInfo> {
        let mut members = vec![MemberInfo {
            id: self.id,
            state: self.state,
            mac: self.mac,
            buckets: self.owned.iter().map(BucketBitmap::len).sum(),
            last_heard_us: 0,
            config_matches: true,
            check_down_rules: (0..self.owned.len())
                .filter(|&slot| self.check_down(slot).is_some())
                .collect(),
        }];
        for (&(id, mac), peer) in &self.peers {
            members.push(MemberInfo {
                id,
                state: peer.latest.state,
                mac,
                buckets: peer.latest.rules.iter().map(|r| r.owned.len()).sum(),
                last_heard_us: now.saturating_since(peer.last_heard).as_micros() as u64,
                config_matches: peer.latest.config_fingerprint == self.fingerprint,
                check_down_rules: (0..peer.latest.rules.len())
                    .filter(|&slot| peer.latest.rules[slot].check_down)
                    .collect(),
            });
        }
        members.sort_by_key(|m| (m.id, m.mac));
        members
    }
}

//! ARP: claims (`duplicate_ip`, `ip_mac_flap`), requests and their replies
//! (`unanswered_request`, `unexpected_reply`), storms, gratuitous ARP, RFC 5227 probes and
//! their conflicts, and sender MACs that differ from the Ethernet source. The rules are in
//! the [analyzer](super) docs.

use super::corruption::damaged_station;
use super::{Analyzer, ip_key, ip_of_key, mac_key};
use crate::finding::{Kind, Severity};
use crate::link::{Frame, Vlan};
use crate::model::{Conflict, Evidence, GratuitousClass, MismatchPattern, Subject};
use nlb_wire::addressing::{NlbMac, classify_mac};
use nlb_wire::arp::{ArpKind, ArpPacket, ArpRepr};
use nlb_wire::{Error, MacAddr};
use std::collections::VecDeque;
use std::collections::hash_map::Entry;
use std::net::Ipv4Addr;

/// Askers remembered per requested IP, for matching replies.
const ASKER_SLOTS: usize = 8;

/// RFC 5227 §1.1: PROBE_WAIT + PROBE_NUM × PROBE_MAX, about the time a prober listens.
const PROBE_LISTEN_NS: i64 = 2 * super::SECOND;

/// Requests for one IP since it last answered.
#[derive(Debug, Clone, Copy)]
pub(super) struct Episode {
    first_ts: i64,
    first_frame: u64,
    last_frame: u64,
    last_ts: i64,
    requests: u32,
    asker_ip: Ipv4Addr,
    asker_mac: MacAddr,
    /// The `unanswered_request` record, once the reply timeout passed.
    record: Option<usize>,
}

/// What is known about one IP (per VLAN).
#[derive(Debug, Clone, Default)]
pub(super) struct IpState {
    /// Its [`ip_key`](super::ip_key).
    pub(super) key: u64,
    pub(super) owner: Option<MacAddr>,
    owner_last_ts: i64,
    /// The MAC before `owner`, for A → B → A.
    previous: Option<MacAddr>,
    /// `owner` took the IP over with a gratuitous ARP: not a duplicate unless `previous`
    /// claims it again.
    takeover: bool,
    /// Recent requests for this IP: asker IPs and times, one slot per asker; the first
    /// `asker_len` slots are in use. (Two arrays: a tuple's padding would make the
    /// state, read on every request and reply for the IP, a cache line longer.)
    asker_ips: [u32; ASKER_SLOTS],
    asker_ts: [i64; ASKER_SLOTS],
    asker_next: u8,
    asker_len: u8,
    episode: Option<Episode>,
    /// This IP's `unanswered_request` record, once it has one: episodes after the first
    /// find it without a lookup by identity.
    unanswered: Option<u32>,
    /// The `unexpected_reply` record of this IP and a MAC, the latest one to make one.
    unexpected: Option<(MacAddr, u32)>,
    last_probe: Option<(MacAddr, i64)>,
}

impl IpState {
    /// Remembers that `asker` asked for this IP at `ts`: its own slot if it has one,
    /// else a free one, else the oldest.
    fn note_asker(&mut self, asker: Ipv4Addr, ts: i64) {
        let asker = u32::from(asker);
        let used = usize::from(self.asker_len);
        let slot = if let Some(slot) = self.asker_ips[..used].iter().position(|&ip| ip == asker) {
            slot
        } else if used < ASKER_SLOTS {
            self.asker_len += 1;
            used
        } else {
            self.asker_next = self.asker_next.wrapping_add(1);
            usize::from(self.asker_next.wrapping_sub(1)) % ASKER_SLOTS
        };
        self.asker_ips[slot] = asker;
        self.asker_ts[slot] = ts;
    }

    /// Whether someone asked for `repr.sender_ip` (the replier) recently: the reply's
    /// target IP among the askers remembered here.
    fn was_asked(&self, repr: &ArpRepr, now: i64, memory: i64) -> bool {
        let used = usize::from(self.asker_len);
        let target = u32::from(repr.target_ip);
        (self.asker_ips[..used].iter().zip(&self.asker_ts[..used]))
            .any(|(&asker, &ts)| asker == target && now - ts <= memory)
    }
}

/// One source's requests within the storm window.
#[derive(Debug, Clone)]
pub(super) struct StormWindow {
    /// Time of the source's latest request.
    last: i64,
    /// The window holds the latest request alone, and `recent` is not in use: most
    /// sources ask far less often than once a window, and then their window costs no
    /// read of `recent`'s buffer.
    alone: bool,
    /// Times of its requests within the window, oldest first (unless `alone`).
    recent: VecDeque<i64>,
    /// Its `request_storm` record, once it has one: a storm adds to it with every request.
    record: Option<u32>,
}

impl Analyzer {
    /// Raises the requests whose reply timeout passed before `now`.
    pub(super) fn expire_requests(&mut self, now: i64) {
        // A reply exactly at the deadline is in time ("within"), hence `>=`.
        while let Some(&(deadline, slot, first_ts)) = self.deadlines.front() {
            if deadline >= now {
                break;
            }
            self.deadlines.pop_front();
            // No lookup: the deadline holds the state's slot, and the state and the model
            // are apart.
            let state = &mut self.ip_states[slot as usize];
            let key = state.key;
            let Some(episode) = state
                .episode
                .as_mut()
                .filter(|e| e.first_ts == first_ts && e.record.is_none())
            else {
                continue;
            };
            let (vlan, ip) = ip_of_key(key);
            let severity = if self.model.is_vip(ip) {
                Severity::Error
            } else {
                Severity::Warning
            };
            let index = self.model.record_kept(
                &mut state.unanswered,
                Kind::UnansweredRequest,
                severity,
                vlan,
                Some(ip),
                Subject::None,
                episode.first_frame,
                episode.first_ts,
            );
            episode.record = Some(index);
            let record = &mut self.model.records[index];
            record.count += u64::from(episode.requests);
            record.last_frame = record.last_frame.max(episode.last_frame);
            record.last_ts = record.last_ts.max(episode.last_ts);
            record.add_peer(episode.asker_ip, episode.asker_mac);
            record.add_mac(episode.asker_mac);
            record.longest_ns = record.longest_ns.max(now - episode.first_ts);
        }
    }

    /// The entry in `deadlines` of the episode of the IP in `slot` that began at
    /// `first_ts`.
    fn deadline(&self, slot: u32, first_ts: i64) -> (i64, u32, i64) {
        (first_ts + self.settings.reply_timeout_ns, slot, first_ts)
    }

    /// Forgets the deadline of an episode that was answered in time, when it is the
    /// latest one (a reply right after its request, the common case): expiring it would
    /// look its IP up for nothing. An identical entry left behind (another episode
    /// opened at the same time) does the same work at the same time.
    fn drop_deadline(&mut self, slot: u32, first_ts: i64) {
        if self.deadlines.back() == Some(&self.deadline(slot, first_ts)) {
            self.deadlines.pop_back();
        }
    }

    /// At the end: requests still waiting have waited until `end`.
    pub(super) fn close_episodes(&mut self, end: i64) {
        for state in &self.ip_states {
            if let Some(episode) = state.episode
                && let Some(index) = episode.record
            {
                let record = &mut self.model.records[index];
                record.longest_ns = record.longest_ns.max(end - episode.first_ts);
            }
        }
    }

    /// The MAC that last claimed `ip` on `vlan`, if any.
    pub(super) fn owner_of(&self, vlan: Option<Vlan>, ip: Ipv4Addr) -> Option<MacAddr> {
        let slot = *self.ips.get(&ip_key(vlan, ip))?;
        self.ip_states[slot as usize].owner
    }

    pub(super) fn handle_arp(&mut self, frame: &Frame<'_>) {
        self.model.counters.arp += 1;
        let repr = match ArpPacket::new_checked(frame.payload).and_then(|p| ArpRepr::parse(&p)) {
            Ok(repr) => repr,
            Err(err) => {
                let reason = match err {
                    Error::Truncated { .. } if frame.cut => "ARP: cut by the capture's snap length",
                    Error::Truncated { .. } => "ARP: frame too short for an ARP packet",
                    Error::Malformed(why) => why,
                    _ => "ARP: unreadable",
                };
                self.malformed(frame, reason, Severity::Warning);
                return;
            }
        };
        let kind = repr.kind();
        if let Some(bin) = self.model.bin(frame.ts_ns) {
            match kind {
                ArpKind::Request | ArpKind::Probe => bin.requests += 1,
                ArpKind::Reply => bin.replies += 1,
                _ => bin.gratuitous += 1,
            }
        }
        // A damaged frame (one failing station's bit errors) is not a claim.
        let mut damaged = false;
        if let Some(src) = frame.src
            && repr.sender_mac != src
        {
            let owner = (!repr.sender_ip.is_unspecified())
                .then(|| self.owner_of(frame.vlan, repr.sender_ip))
                .flatten();
            let station = damaged_station(src, &repr, owner, |mac| self.confirmed(frame.vlan, mac));
            self.sender_mismatch(frame, &repr, src, station);
            if let Some(station) = station {
                self.damaged_frame(frame, &repr, src, station, owner);
                damaged = true;
            }
        } else if self.corruption_confirmed {
            damaged = self.damaged_ip(frame, &repr);
        }
        match kind {
            ArpKind::Probe => self.probe(frame, &repr),
            ArpKind::Request => {
                self.storm(frame, &repr);
                self.request(frame, &repr);
            }
            // Checked with the claim below, in one lookup.
            ArpKind::Reply => {}
            ArpKind::Announcement | ArpKind::GratuitousRequest | ArpKind::GratuitousReply => {
                self.gratuitous(frame, &repr, kind)
            }
        }
        if !repr.sender_ip.is_unspecified() && !repr.sender_mac.is_zero() {
            let asked = self.claim(frame, &repr, kind.is_gratuitous(), damaged);
            if kind == ArpKind::Reply && !asked && !damaged {
                self.unexpected_reply(frame, &repr);
            }
        } else if kind == ArpKind::Reply {
            self.unexpected_reply(frame, &repr);
        }
    }

    fn sender_mismatch(
        &mut self,
        frame: &Frame<'_>,
        repr: &ArpRepr,
        src: MacAddr,
        station: Option<MacAddr>,
    ) {
        let masking = match (classify_mac(repr.sender_mac), classify_mac(src)) {
            (Some(NlbMac::UnicastCluster(a)), Some(NlbMac::MaskedHost { vip: b, .. })) => a == b,
            _ => false,
        };
        // nlb's own pattern: the cluster MAC in ARP, the host's real MAC as source, so
        // that no switch learns the cluster MAC.
        let cluster_sender = !masking
            && classify_mac(src).is_none()
            && classify_mac(repr.sender_mac).is_some()
            && self.cluster_member_for(repr.sender_ip, repr.sender_mac);
        let record = self.count(
            Kind::SenderMacMismatch,
            if cluster_sender {
                Severity::Info
            } else {
                Severity::Warning
            },
            frame,
            Some(repr.sender_ip),
            Subject::Mismatch {
                source: src,
                sender: repr.sender_mac,
            },
            &[src, repr.sender_mac],
        );
        // The wording follows the latest frame's pattern, and the severity with it (a
        // host's first ARP can come before its first heartbeat).
        if masking {
            record.evidence = Evidence::Mismatch(MismatchPattern::WindowsMasking);
            record.severity = Severity::Warning;
        } else if cluster_sender {
            record.evidence = Evidence::Mismatch(MismatchPattern::NlbClusterSender);
            record.severity = Severity::Info;
        } else if let Some(station) = station {
            record.evidence = Evidence::Damaged { station };
        }
    }

    /// The slot in `ip_states` of IP `key`, made on first sight unless the table is full.
    fn tracked(&mut self, key: u64) -> Option<u32> {
        // Slots are 32 bits: no memory holds 2^32 states anyway.
        let full = self.ips.len() >= self.settings.max_tracked.min(u32::MAX as usize);
        match self.ips.entry(key) {
            Entry::Occupied(entry) => Some(*entry.get()),
            Entry::Vacant(_) if full => {
                self.model.counters.untracked += 1;
                None
            }
            Entry::Vacant(entry) => {
                // Not full, so it fits.
                let slot = self.ip_states.len() as u32;
                self.ip_states.push(IpState {
                    key,
                    ..IpState::default()
                });
                Some(*entry.insert(slot))
            }
        }
    }

    fn storm(&mut self, frame: &Frame<'_>, repr: &ArpRepr) {
        let source = frame.src.unwrap_or(repr.sender_mac);
        let key = mac_key(frame.vlan, source);
        let full = self.storms.len() >= self.settings.max_tracked;
        let window = self.settings.storm_window_ns;
        let limit = self.settings.storm_requests as usize;
        let window_state = match self.storms.entry(key) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(_) if full => {
                self.model.counters.untracked += 1;
                return;
            }
            // Most sources never come near the limit: their window grows as needed.
            Entry::Vacant(entry) => entry.insert(StormWindow {
                last: i64::MIN,
                alone: false,
                recent: VecDeque::new(),
                record: None,
            }),
        };
        let expired = frame.ts_ns.saturating_sub(window_state.last) >= window;
        if expired && limit > 0 {
            window_state.last = frame.ts_ns;
            window_state.alone = true;
            return;
        }
        let recent = &mut window_state.recent;
        if std::mem::take(&mut window_state.alone) {
            recent.clear();
            recent.push_back(window_state.last);
        }
        if expired {
            // Everything in the window has expired: clear without reading the
            // timestamps (a cache miss per request on a busy segment).
            recent.clear();
        } else {
            while recent.front().is_some_and(|&t| t <= frame.ts_ns - window) {
                recent.pop_front();
            }
        }
        window_state.last = frame.ts_ns;
        recent.push_back(frame.ts_ns);
        if recent.len() > limit {
            recent.pop_front();
            // Keyed by the source MAC alone: one that rotates its sender IP is one storm.
            let index = self.model.record_kept(
                &mut window_state.record,
                Kind::RequestStorm,
                Severity::Warning,
                frame.vlan,
                None,
                Subject::Mac(source),
                frame.number,
                frame.ts_ns,
            );
            let record = self.count_at(index, &[source]);
            record.add_peer(repr.sender_ip, source);
        }
    }

    fn request(&mut self, frame: &Frame<'_>, repr: &ArpRepr) {
        let key = ip_key(frame.vlan, repr.target_ip);
        let Some(slot) = self.tracked(key) else {
            return;
        };
        let state = &mut self.ip_states[slot as usize];
        state.note_asker(repr.sender_ip, frame.ts_ns);
        let mut new_episode = false;
        match state.episode.as_mut() {
            Some(episode) => {
                episode.requests += 1;
                episode.last_frame = frame.number;
                episode.last_ts = frame.ts_ns;
            }
            None => {
                state.episode = Some(Episode {
                    first_ts: frame.ts_ns,
                    first_frame: frame.number,
                    last_frame: frame.number,
                    last_ts: frame.ts_ns,
                    requests: 1,
                    asker_ip: repr.sender_ip,
                    asker_mac: repr.sender_mac,
                    record: None,
                });
                new_episode = true;
            }
        }
        let open = state.episode.expect("just set");
        if new_episode {
            let entry = self.deadline(slot, frame.ts_ns);
            if self.deadlines.back().is_none_or(|last| last.0 <= entry.0) {
                self.deadlines.push_back(entry);
            } else {
                let at = self.deadlines.partition_point(|e| e.0 <= entry.0);
                self.deadlines.insert(at, entry);
            }
        } else if let Some(index) = open.record {
            let record = &mut self.model.records[index];
            record.count += 1;
            record.last_frame = frame.number;
            record.last_ts = frame.ts_ns;
            record.add_peer(repr.sender_ip, repr.sender_mac);
            record.add_mac(repr.sender_mac);
            record.longest_ns = record.longest_ns.max(frame.ts_ns - open.first_ts);
        }
    }

    fn unexpected_reply(&mut self, frame: &Frame<'_>, repr: &ArpRepr) {
        // The replier's state keeps the index of its latest MAC's record: a host that
        // replies unasked does so over and over, and its state is at hand (the claim just
        // read it), where finding the record by identity costs a lookup by a wide key.
        let mac = repr.sender_mac;
        let slot = self.ips.get(&ip_key(frame.vlan, repr.sender_ip));
        let state = slot.map(|&slot| &mut self.ip_states[slot as usize]);
        let mut kept = (state.as_ref().and_then(|state| state.unexpected))
            .filter(|&(owner, _)| owner == mac)
            .map(|(_, index)| index);
        let index = self.model.record_kept(
            &mut kept,
            Kind::UnexpectedReply,
            Severity::Warning,
            frame.vlan,
            Some(repr.sender_ip),
            Subject::Mac(mac),
            frame.number,
            frame.ts_ns,
        );
        if let Some(state) = state {
            state.unexpected = kept.map(|index| (mac, index));
        }
        let record = self.count_at(index, &[mac]);
        record.add_peer(repr.target_ip, repr.target_mac);
    }

    fn gratuitous(&mut self, frame: &Frame<'_>, repr: &ArpRepr, kind: ArpKind) {
        let class = match kind {
            ArpKind::Announcement => GratuitousClass::Announcement,
            ArpKind::GratuitousRequest => GratuitousClass::Request,
            _ if repr.is_strict_gratuitous_reply() => GratuitousClass::ReplyStrict,
            _ => GratuitousClass::Reply,
        };
        self.count(
            Kind::GratuitousArp,
            Severity::Info,
            frame,
            Some(repr.sender_ip),
            Subject::Gratuitous {
                mac: repr.sender_mac,
                class,
            },
            &[repr.sender_mac],
        );
    }

    fn probe(&mut self, frame: &Frame<'_>, repr: &ArpRepr) {
        self.count(
            Kind::ArpProbe,
            Severity::Info,
            frame,
            Some(repr.target_ip),
            Subject::None,
            &[repr.sender_mac],
        );
        // A probe asks "who has" too: a reply to it is expected (RFC 5227 §2.1.1).
        let key = ip_key(frame.vlan, repr.target_ip);
        let window = self.settings.duplicate_window_ns;
        let Some(slot) = self.tracked(key) else {
            return;
        };
        let state = &mut self.ip_states[slot as usize];
        state.note_asker(Ipv4Addr::UNSPECIFIED, frame.ts_ns);
        let in_use = state.owner.filter(|&owner| {
            owner != repr.sender_mac && frame.ts_ns - state.owner_last_ts <= window
        });
        let other_prober = state
            .last_probe
            .filter(|&(mac, ts)| mac != repr.sender_mac && frame.ts_ns - ts <= PROBE_LISTEN_NS)
            .map(|(mac, _)| mac);
        state.last_probe = Some((repr.sender_mac, frame.ts_ns));
        for (other, why) in [
            (in_use, Conflict::InUse),
            (other_prober, Conflict::TwoProbers),
        ] {
            if let Some(other) = other {
                self.probe_conflict(frame, repr.target_ip, repr.sender_mac, other, why);
            }
        }
    }

    /// Whether `mac` speaks for `ip` as part of an NLB cluster: a cluster MAC of that IP
    /// in any mode, or a host that sends NLB heartbeats while `ip` is a VIP. Every host of
    /// a cluster probes for and announces the VIP; that is not a conflict.
    fn cluster_member_for(&self, ip: Ipv4Addr, mac: MacAddr) -> bool {
        let [_, _, c, d] = ip.octets();
        match classify_mac(mac) {
            Some(NlbMac::UnicastCluster(vip) | NlbMac::MulticastCluster(vip)) => vip == ip,
            Some(NlbMac::IgmpCluster(group)) => group.octets()[2..] == [c, d],
            _ => self.cluster_hosts.contains(&mac) && self.is_cluster_ip(ip),
        }
    }

    fn probe_conflict(
        &mut self,
        frame: &Frame<'_>,
        ip: Ipv4Addr,
        prober: MacAddr,
        other: MacAddr,
        why: Conflict,
    ) {
        if self.cluster_member_for(ip, prober) && self.cluster_member_for(ip, other) {
            return;
        }
        let record = self.count(
            Kind::ProbeConflict,
            Severity::Error,
            frame,
            Some(ip),
            Subject::None,
            &[prober, other],
        );
        if record.evidence == Evidence::None {
            record.evidence = Evidence::Conflict(why);
        }
    }

    /// Records that `repr.sender_mac` claims `repr.sender_ip`, and returns whether
    /// someone had asked for that IP recently (so a reply was expected). A `damaged`
    /// frame answers the requests for the IP but claims nothing: it only refreshes the
    /// owner when the owner is one of its MACs.
    fn claim(
        &mut self,
        frame: &Frame<'_>,
        repr: &ArpRepr,
        gratuitous: bool,
        damaged: bool,
    ) -> bool {
        let key = ip_key(frame.vlan, repr.sender_ip);
        let window = self.settings.duplicate_window_ns;
        let memory = self.settings.request_memory_ns;
        let mac = repr.sender_mac;
        let ts = frame.ts_ns;
        let Some(slot) = self.tracked(key) else {
            return true;
        };
        let state = &mut self.ip_states[slot as usize];
        let asked = state.was_asked(repr, ts, memory);
        // Anything from the IP answers the requests for it (Linux updates an INCOMPLETE
        // entry from any ARP the owner sends).
        let answered = state.episode.take();
        let (probe_defended, duplicate_of, flap) = if damaged {
            if state.owner.is_some() && (state.owner == Some(mac) || state.owner == frame.src) {
                state.owner_last_ts = ts;
            }
            (None, None, None)
        } else {
            let probe_defended = state
                .last_probe
                .filter(|&(prober, at)| prober != mac && ts - at <= PROBE_LISTEN_NS)
                .map(|(prober, _)| prober);
            let mut duplicate_of = None;
            let mut flap = None;
            match state.owner {
                None => {
                    state.owner = Some(mac);
                }
                Some(owner) if owner == mac => {}
                Some(owner) => {
                    let recent = ts - state.owner_last_ts <= window;
                    if state.previous == Some(mac) && recent {
                        flap = Some(owner);
                    }
                    let returning = state.takeover && state.previous == Some(mac);
                    if recent && (!gratuitous || returning) {
                        duplicate_of = Some(owner);
                    }
                    state.takeover = gratuitous && !returning;
                    state.previous = Some(owner);
                    state.owner = Some(mac);
                }
            }
            state.owner_last_ts = ts;
            (probe_defended, duplicate_of, flap)
        };
        match answered {
            Some(Episode {
                record: Some(index),
                first_ts,
                ..
            }) => {
                let record = &mut self.model.records[index];
                record.longest_ns = record.longest_ns.max(ts - first_ts);
            }
            Some(Episode {
                record: None,
                first_ts,
                ..
            }) => self.drop_deadline(slot, first_ts),
            None => {}
        }
        if let Some(prober) = probe_defended {
            self.probe_conflict(frame, repr.sender_ip, prober, mac, Conflict::Defended);
        }
        if let Some(other) = duplicate_of {
            self.count(
                Kind::DuplicateIp,
                Severity::Error,
                frame,
                Some(repr.sender_ip),
                Subject::None,
                &[other, mac],
            );
        }
        if let Some(other) = flap {
            self.count(
                Kind::IpMacFlap,
                Severity::Error,
                frame,
                Some(repr.sender_ip),
                Subject::None,
                &[mac, other],
            );
        }
        asked
    }
}

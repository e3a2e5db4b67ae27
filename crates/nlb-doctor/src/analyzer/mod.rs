//! The analysis, sans-IO: frames in, findings out. It never looks at a clock; time is the
//! frames' own timestamps (a capture) or whatever the caller passes to
//! [`Analyzer::handle_timeout`] (live traffic), so a capture analyses the same on every
//! machine.
//!
//! The analyzer fills the `model` and nothing else; findings are put in words by
//! `explain` from the model alone, in [`Analyzer::poll_raised`] and
//! [`Analyzer::finish`], which the crate root defines where the pipeline is assembled
//! (so that the analyzer never imports what comes after it). One file per protocol:
//! `arp.rs` (claims, requests, probes, mismatches), `corruption.rs` (damaged frames: one
//! failing station, not many devices), `igmp.rs` (membership and IGMP-mode cluster
//! traffic), `clusters.rs` (nlb and Windows NLB heartbeats), `ownership.rs` (buckets
//! claimed twice in heartbeats, VIP flows answered from two MACs); `mod.rs` holds the
//! frame dispatch, time, malformed frames and the end of the analysis.
//!
//! Rules, by kind (RFC 826 for ARP, RFC 5227 for probes and announcements):
//! - a *claim* is an ARP frame whose sender IP is not 0.0.0.0: it says "IP is at MAC";
//! - `duplicate_ip`: a second MAC claims an IP within [`Settings::duplicate_window_ns`] of
//!   the first MAC's last claim. A takeover announced by a gratuitous ARP (failover) is not
//!   a duplicate unless the old MAC claims the IP again within the window;
//! - `unanswered_request`: no ARP from the requested IP within
//!   [`Settings::reply_timeout_ns`] (Linux's `retrans_time`, 1 s) of a request for it;
//! - `unexpected_reply`: a non-gratuitous reply whose sender was not asked by its target
//!   within [`Settings::request_memory_ns`];
//! - `request_storm`: more than [`Settings::storm_requests`] requests from one source MAC
//!   within [`Settings::storm_window_ns`] (Wireshark's defaults: 30 in 100 ms);
//! - `frame_corruption`: a station whose ARP frames carry damaged copies of its own MAC
//!   (one or two bytes differ) in one field, many times over or with malformed frames;
//!   such frames are not claims. The rule, and how it keeps real duplicates with
//!   sequential MACs and the Windows NLB masking pattern apart, is below;
//! - `probe_conflict`: a probe for an IP another MAC claimed within the duplicate window,
//!   a claim by another MAC within 2 s after a probe (RFC 5227 §2.1.1 defence), or two
//!   MACs probing for one IP within 2 s.
//! - `nlb_double_ownership`: a bucket in the owned sets of two senders of one nlb
//!   cluster at once: X's two heartbeats at most two periods apart and Y's latest in
//!   between all list it (release before claim forbids it; hand-offs, crashes and stale
//!   heartbeats after a pause do not show it). The rule in full is in `ownership.rs`;
//! - `double_answer`: one flow from a VIP (TCP or UDP, by VLAN, ports and client)
//!   answered from two MACs within 500 ms: two SYN-ACKs for one SYN (RFC 9293 §3.5), or
//!   answers alternating A, B, A; one change of MAC is a take-over. In `ownership.rs`.
//! - `nlb_forged_heartbeat`: with [`Settings::heartbeat_key`], an nlb heartbeat whose
//!   tag the key does not verify, that has none, or of format version 1 (whose tags a
//!   key of this release does not verify either);
//! - `nlb_replayed_heartbeat`: an nlb heartbeat whose (incarnation, sequence) is older
//!   than one already seen from its sender (cluster, host id, MAC), by the daemons' own
//!   anti-replay rule; the same pair again is a frame captured twice, counted in
//!   `duplicate_heartbeats`. Neither forged nor replayed nor repeated heartbeats go
//!   further: they make no host and claim no bucket, so they cannot make a dead host
//!   look alive or raise `nlb_double_ownership`. In `clusters.rs`.
//! - `nlb_heartbeat_gap`: an nlb host with no heartbeat for more than ten of its
//!   announced periods (two thirds of the default failure window, past scheduling
//!   jitter), in the middle of the capture or at its end (silent from its last
//!   heartbeat to the end), raised as it is seen (a sweep once a second of capture
//!   time, so `nlb watch` shows it live); the cluster summary marks it silent and judges
//!   convergence by the hosts still heard. In `clusters.rs`.
//!
//! ## Frame corruption: one failing station, not many devices
//!
//! The rule, frame by frame. Two MACs are *close* when they differ in one or two of
//! their six bytes; one is then a damaged copy of the other. An ARP frame is *damaged*
//! when its ARP sender MAC differs from its Ethernet source, neither is an NLB cluster
//! MAC (unicast `02:bf`, multicast `03:bf`, IGMP `01:00:5e:7f`), and either
//! 1. the two are close (one field of the frame is a damaged copy of the other), or
//! 2. one of them is the MAC that owns the sender IP (the one that dominates that
//!    address) and the other is close to it, or both are close to it. Once the owner's
//!    corruption is confirmed (below), copies three bytes off count as close to it too.
//!
//! The *station* of a damaged frame is the owner of its sender IP when rule 2 applies,
//! else the one of its two MACs whose corruption is already confirmed, else its
//! Ethernet source. A damaged frame is never a claim: it refreshes the owner if the
//! owner is one of its MACs and otherwise leaves the address alone, so it makes no
//! `duplicate_ip`, no `ip_mac_flap` and no `unexpected_reply`; it still answers the
//! requests for its sender IP.
//!
//! What stays apart:
//! - **real duplicates**: two devices with sequential MACs (`00:16:3e:00:00:aa` and
//!   `:bb`) that both answer for one address each send frames whose Ethernet source
//!   *equals* their ARP sender MAC. Such a frame is consistent, however close its MAC is
//!   to another, so it is a claim and the duplicate is reported;
//! - **the Windows NLB masking pattern** (`02:bf:<ip>` sender behind `02:<host id>:<ip>`
//!   sources, one byte apart) and nlb's cluster sender: a frame with a cluster MAC in
//!   either field is never damaged; it stays a `sender_mac_mismatch` with its pattern
//!   named. (Any other `02:` MAC is an ordinary address here: a flipped first byte makes
//!   one);
//! - **a deliberate mismatch** (a proxy, a bond) repeats one (source, sender) pair.
//!
//! A station's corruption is *confirmed* once its frames showed at least 3 distinct
//! damaged copies of its MAC, or one copy and at least 2 malformed frames from its MAC.
//! Bit errors make many different copies; a misconfiguration makes one. Only then is `frame_corruption` raised (an
//! error naming the station, counting its damaged and malformed frames), the
//! `sender_mac_mismatch` findings made of its damaged copies are folded into it, and
//! consistent frames from the station whose sender IP is close to its own address (one
//! or two bytes differ) count as damaged IPs and are not claims either. An unconfirmed
//! damaged frame stays a `sender_mac_mismatch` as before. At most 4,096 stations (by
//! VLAN and MAC) are tracked, with 16 damaged copies each.
//!
//! Memory is bounded: per-IP and per-source tables stop growing at
//! [`Settings::max_tracked`] entries (further addresses are counted, not tracked), and the
//! timeline keeps one bin per second of capture.

mod arp;
mod clusters;
mod corruption;
mod igmp;
mod ownership;
#[cfg(test)]
mod tests;

use crate::finding::{Kind, Severity};
use crate::link::{Frame, LinkProblem, Vlan};
use crate::model::{Evidence, Model, Record, Subject};
use arp::{IpState, StormWindow};
use corruption::Station;
use foldhash::{HashMap, HashSet};
use igmp::Traffic;
use nlb_wire::MacAddr;
use nlb_wire::addressing::{NlbMac, classify_mac};
use nlb_wire::ethernet::{
    ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_MS_NLB, ETHERTYPE_NLB_HEARTBEAT,
};
use nlb_wire::heartbeat::{AntiReplay, HeartbeatKey};
use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;

pub use crate::model::{Bin, Counters};

const SECOND: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;

/// Thresholds. The defaults follow Linux and Wireshark; see the module docs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// IPs known to be cluster VIPs: problems with them are errors.
    pub vips: Vec<Ipv4Addr>,
    /// More requests than this from one source within `storm_window_ns` is a storm.
    pub storm_requests: u32,
    /// The storm window.
    pub storm_window_ns: i64,
    /// Two MACs claiming one IP this close together are a duplicate.
    pub duplicate_window_ns: i64,
    /// A request not answered within this is unanswered.
    pub reply_timeout_ns: i64,
    /// How long a request makes a reply expected.
    pub request_memory_ns: i64,
    /// The most IPs and sources tracked at once.
    pub max_tracked: usize,
    /// The cluster key (`cluster.key_file`): with it, nlb heartbeats whose tag it does
    /// not verify are `nlb_forged_heartbeat` and take no part in the analysis.
    pub heartbeat_key: Option<HeartbeatKey>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            vips: Vec::new(),
            storm_requests: 30,
            storm_window_ns: 100 * MS,
            duplicate_window_ns: 60 * SECOND,
            reply_timeout_ns: SECOND,
            request_memory_ns: 5 * SECOND,
            max_tracked: 1 << 20,
            heartbeat_key: None,
        }
    }
}

/// The analysis state of one capture or live session.
pub struct Analyzer {
    settings: Settings,
    /// What the findings are made of.
    model: Model,
    raised: usize,
    /// Each tracked IP's slot in `ip_states`, by [`ip_key`]. The map's entries are small,
    /// so it stays in cache with tens of thousands of addresses; the states sit in the
    /// order they were first seen, so the addresses of a sweep (a scan, a storm) are
    /// neighbours in memory. Both hold at most [`Settings::max_tracked`] entries.
    ips: HashMap<u64, u32>,
    ip_states: Vec<IpState>,
    /// Reply deadlines (deadline, IP slot, episode start), kept sorted, earliest first, so
    /// that one frame with a wild timestamp cannot hold the others back. Time nearly
    /// always moves forward, so nearly every deadline goes at the back, and a reply that
    /// follows its request takes its deadline off the back again. Due deadlines are
    /// expired together, each without a lookup.
    deadlines: VecDeque<(i64, u32, i64)>,
    storms: HashMap<u128, StormWindow>,
    igmp_traffic: BTreeMap<(Option<Vlan>, MacAddr), Traffic>,
    igmp_reported: HashSet<(Option<Vlan>, Ipv4Addr)>,
    /// Source MACs of NLB heartbeats: hosts of some cluster.
    cluster_hosts: HashSet<MacAddr>,
    /// The newest heartbeat of each nlb sender (cluster, host id, MAC), for replays.
    heartbeat_senders: HashMap<clusters::Sender, AntiReplay>,
    /// When to look next for nlb hosts gone silent (once a second of capture time).
    next_silence_sweep: i64,
    /// Stations seen sending damaged or malformed frames, by VLAN and MAC.
    stations: HashMap<(Option<Vlan>, MacAddr), Station>,
    /// Whether some station's corruption is confirmed.
    corruption_confirmed: bool,
    /// Heartbeat claims, VIP flows and learned VIPs (`ownership.rs`).
    ownership: ownership::Ownership,
    /// The VLAN stacks in `model.vlans`: single tags by bit (one test a frame), QinQ
    /// stacks in a set.
    single_vlans: [u64; 64],
    stacked_vlans: HashSet<Vlan>,
}

/// A record without a link layer, as a frame for counting it.
fn no_link(number: u64, ts_ns: i64) -> Frame<'static> {
    Frame {
        number,
        ts_ns,
        vlan: None,
        src: None,
        dst: None,
        ethertype: 0,
        payload: &[],
        cut: false,
    }
}

/// The VLAN stack in 32 bits, for keys: outer id, inner id (`0xffff` for none); all ones
/// for an untagged frame. VLAN ids have 12 bits, so no stack is all ones.
fn vlan_code(vlan: Option<Vlan>) -> u32 {
    vlan.map_or(u32::MAX, |v| {
        (u32::from(v.outer) << 16) | u32::from(v.inner.unwrap_or(u16::MAX))
    })
}

/// The inverse of [`vlan_code`].
fn vlan_of_code(code: u32) -> Option<Vlan> {
    (code != u32::MAX).then(|| Vlan {
        outer: (code >> 16) as u16,
        inner: Some(code as u16).filter(|&inner| inner != u16::MAX),
    })
}

fn ip_key(vlan: Option<Vlan>, ip: Ipv4Addr) -> u64 {
    (u64::from(vlan_code(vlan)) << 32) | u64::from(u32::from(ip))
}

/// The VLAN stack and IP of an [`ip_key`].
fn ip_of_key(key: u64) -> (Option<Vlan>, Ipv4Addr) {
    (vlan_of_code((key >> 32) as u32), Ipv4Addr::from(key as u32))
}

/// A MAC on a VLAN stack: 48 bits of MAC above the 32 of the stack.
fn mac_key(vlan: Option<Vlan>, mac: MacAddr) -> u128 {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&mac.0);
    (u128::from_le_bytes(bytes) << 32) | u128::from(vlan_code(vlan))
}

impl Analyzer {
    /// A fresh analysis.
    pub fn new(settings: Settings) -> Analyzer {
        Analyzer {
            model: Model::new(&settings.vips),
            settings,
            raised: 0,
            ips: HashMap::default(),
            ip_states: Vec::new(),
            deadlines: VecDeque::new(),
            storms: HashMap::default(),
            igmp_traffic: BTreeMap::new(),
            igmp_reported: HashSet::default(),
            cluster_hosts: HashSet::default(),
            stations: HashMap::default(),
            corruption_confirmed: false,
            ownership: ownership::Ownership::default(),
            heartbeat_senders: HashMap::default(),
            next_silence_sweep: i64::MIN,
            single_vlans: [0; 64],
            stacked_vlans: HashSet::default(),
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.model.counters
    }

    /// Capture time of the first frame, ns since the epoch.
    pub fn start_ts(&self) -> Option<i64> {
        self.model.start_ts
    }

    /// Capture time of the latest frame or timeout.
    pub fn last_ts(&self) -> i64 {
        self.model.last_ts
    }

    /// VLANs seen (outer tags), in order of appearance.
    pub fn vlans(&self) -> Vec<u16> {
        let mut outer: Vec<u16> = Vec::new();
        for vlan in &self.model.vlans {
            if !outer.contains(&vlan.outer) {
                outer.push(vlan.outer);
            }
        }
        outer
    }

    /// The QinQ stacks seen (`outer.inner`), in order of appearance.
    pub fn vlan_stacks(&self) -> Vec<String> {
        let stacked = self.model.vlans.iter().filter(|v| v.inner.is_some());
        stacked.map(ToString::to_string).collect()
    }

    /// ARP activity per second since the first frame.
    pub fn timeline(&self) -> &[Bin] {
        &self.model.bins
    }

    /// Advances time to `now` (ns) and raises what has become due: requests that have
    /// waited longer than the reply timeout. Frames call this themselves.
    pub fn handle_timeout(&mut self, now: i64) {
        self.model.last_ts = self.model.last_ts.max(now);
        self.expire_requests(now);
        if now >= self.next_silence_sweep {
            self.next_silence_sweep = now.saturating_add(SECOND);
            self.sweep_silent_hosts(now);
        }
    }

    /// The next record not yet handed out by [`poll_raised`](Self::poll_raised), with
    /// the model to explain it by; it counts as handed out.
    pub(crate) fn next_raised(&mut self) -> Option<(&Record, &Model)> {
        let record = self.model.records.get(self.raised)?;
        self.raised += 1;
        Some((record, &self.model))
    }

    /// Counts one more frame of a finding (made on first sight) and adds `macs` to it.
    fn count(
        &mut self,
        kind: Kind,
        severity: Severity,
        frame: &Frame<'_>,
        ip: Option<Ipv4Addr>,
        subject: Subject,
        macs: &[MacAddr],
    ) -> &mut Record {
        let index = self.model.record(
            kind,
            severity,
            frame.vlan,
            ip,
            subject,
            frame.number,
            frame.ts_ns,
        );
        self.count_at(index, macs)
    }

    /// [`count`](Self::count) for a record found already (and touched).
    fn count_at(&mut self, index: usize, macs: &[MacAddr]) -> &mut Record {
        let record = &mut self.model.records[index];
        record.count += 1;
        for &mac in macs {
            record.add_mac(mac);
        }
        record
    }

    /// Counts a malformed frame under `reason`.
    fn malformed(&mut self, frame: &Frame<'_>, reason: &'static str, severity: Severity) {
        self.model.counters.malformed += 1;
        let record = self.count(
            Kind::Malformed,
            severity,
            frame,
            None,
            Subject::Malformed(reason),
            &[],
        );
        if let Some(src) = frame.src {
            record.add_mac(src);
            self.malformed_from(frame, src);
        }
        if let Some(bin) = self.model.bin(frame.ts_ns) {
            bin.malformed += 1;
        }
    }

    /// Analyses one whole Ethernet frame as received live (no capture header): what
    /// `nlb watch` and the lab feed in from an AF_PACKET socket.
    pub fn handle_ethernet(&mut self, number: u64, ts_ns: i64, bytes: &[u8]) {
        let record = crate::capture::Record {
            number,
            ts_ns: ts_ns.clamp(0, crate::capture::MAX_TS_NS),
            link: crate::capture::LinkType::Ethernet,
            data: bytes,
            orig_len: bytes.len() as u32,
        };
        match crate::link::decode(&record) {
            Ok(frame) => self.handle_frame(&frame),
            Err(problem) => self.handle_link_problem(number, record.ts_ns, problem),
        }
    }

    /// A record whose link layer could not be decoded.
    pub fn handle_link_problem(&mut self, number: u64, ts_ns: i64, problem: LinkProblem) {
        self.note_time(ts_ns);
        self.model.counters.frames += 1;
        let frame = no_link(number, ts_ns);
        match problem {
            LinkProblem::Truncated => self.malformed(
                &frame,
                "link: shorter than its link-layer header",
                Severity::Warning,
            ),
            LinkProblem::Malformed(why) => self.malformed(&frame, why, Severity::Warning),
            LinkProblem::Unsupported => self.model.counters.unsupported_link += 1,
        }
    }

    /// The end of a capture file that was cut inside a record or is corrupt.
    pub fn handle_capture_end_problem(&mut self, reason: &'static str) {
        // The record after the last whole frame: not a frame, so not in the frame count.
        let frame = no_link(self.model.counters.frames + 1, self.model.last_ts);
        self.malformed(&frame, reason, Severity::Warning);
        self.model.counters.malformed -= 1;
    }

    fn note_time(&mut self, ts: i64) {
        if self.model.start_ts.is_none() {
            self.model.start_ts = Some(ts);
        }
        self.handle_timeout(ts);
    }

    /// Analyses one frame.
    pub fn handle_frame(&mut self, frame: &Frame<'_>) {
        self.note_time(frame.ts_ns);
        self.model.counters.frames += 1;
        if frame.cut {
            self.model.counters.cut += 1;
        }
        if let Some(vlan) = frame.vlan {
            self.note_vlan(vlan);
        }
        if let Some(src) = frame.src {
            self.check_source(frame, src);
        }
        if let Some(dst) = frame.dst
            && dst.0[..4] == [0x01, 0x00, 0x5e, 0x7f]
        {
            self.note_igmp_cluster_traffic(frame, dst);
        }
        match frame.ethertype {
            ETHERTYPE_ARP => self.handle_arp(frame),
            ETHERTYPE_IPV4 => {
                self.handle_ipv4(frame);
                self.handle_vip_traffic(frame);
            }
            ETHERTYPE_NLB_HEARTBEAT => self.handle_nlb_heartbeat(frame),
            ETHERTYPE_MS_NLB => self.handle_msnlb(frame),
            _ => {}
        }
    }

    /// Adds `vlan` to the VLANs seen (at most 4,096), in order of appearance.
    fn note_vlan(&mut self, vlan: Vlan) {
        let seen = match vlan.inner {
            None => {
                let (word, bit) = (usize::from(vlan.outer) / 64 % 64, vlan.outer % 64);
                self.single_vlans[word] & (1 << bit) != 0
            }
            Some(_) => self.stacked_vlans.contains(&vlan),
        };
        if seen || self.model.vlans.len() >= 4096 {
            return;
        }
        match vlan.inner {
            None => {
                let (word, bit) = (usize::from(vlan.outer) / 64 % 64, vlan.outer % 64);
                self.single_vlans[word] |= 1 << bit;
            }
            Some(_) => {
                self.stacked_vlans.insert(vlan);
            }
        }
        self.model.vlans.push(vlan);
    }

    fn check_source(&mut self, frame: &Frame<'_>, src: MacAddr) {
        // Cheap test first: both cluster patterns have 0xbf in the second byte.
        if src.0[1] != 0xbf {
            return;
        }
        let vip = match classify_mac(src) {
            Some(NlbMac::UnicastCluster(vip) | NlbMac::MulticastCluster(vip)) => vip,
            _ => return,
        };
        self.count(
            Kind::ClusterMacAsSource,
            Severity::Error,
            frame,
            Some(vip),
            Subject::Mac(src),
            &[src],
        );
    }

    /// Ends the analysis: requests still unanswered at the latest time seen (the
    /// capture's last frame, or now) are raised, IGMP and clusters are summarised, and
    /// the model is complete for [`finish`](Self::finish) to put in words.
    pub(crate) fn close(&mut self) -> &Model {
        // Requests whose reply timeout passed before the end of the capture.
        let end = self.model.last_ts;
        self.handle_timeout(end);
        self.close_episodes(end);
        self.summarise_igmp();
        self.fill_cluster_ips();
        self.raise_heartbeat_gaps();
        self.absorb_damaged_mismatches();
        self.absorb_scans();
        &self.model
    }

    /// A storming source's unanswered requests are part of its storm (a scan), not one
    /// finding per address it tried.
    fn absorb_scans(&mut self) {
        let window = self.settings.storm_window_ns;
        // Storms by VLAN and source, each source's in record order.
        type Spans = Vec<(usize, i64, i64)>;
        let mut stormers: HashMap<(Option<Vlan>, MacAddr), Spans> = HashMap::default();
        for (index, r) in self.model.records.iter().enumerate() {
            if r.kind == Kind::RequestStorm
                && let Some(&mac) = r.macs.first()
            {
                // From a window before the storm was seen to a window after it ended.
                let span = (index, r.first_ts - window, r.last_ts + window);
                stormers.entry((r.vlan, mac)).or_default().push(span);
            }
        }
        let mut absorbed: HashMap<usize, u64> = HashMap::default();
        for record in &mut self.model.records {
            // Every asker is the one source, so the first one names it.
            if record.kind == Kind::UnansweredRequest
                && record.severity != Severity::Error
                && let Some(&(_, mac, _)) = record.peers.first()
                && record.peers.iter().all(|p| p.1 == mac)
                && let Some(&(storm, ..)) = stormers.get(&(record.vlan, mac)).and_then(|spans| {
                    spans
                        .iter()
                        .find(|s| (s.1..=s.2).contains(&record.first_ts))
                })
            {
                record.absorbed = true;
                *absorbed.entry(storm).or_default() += 1;
            }
        }
        for (storm, unanswered) in absorbed {
            self.model.records[storm].evidence = Evidence::Storm { unanswered };
        }
    }
}

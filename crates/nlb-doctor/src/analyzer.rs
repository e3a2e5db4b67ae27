//! The analysis, sans-IO: frames in, findings out. It never looks at a clock; time is the
//! frames' own timestamps (a capture) or whatever the caller passes to
//! [`Analyzer::handle_timeout`] (live traffic), so a capture analyses the same on every
//! machine.
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
//! - `probe_conflict`: a probe for an IP another MAC claimed within the duplicate window,
//!   a claim by another MAC within 2 s after a probe (RFC 5227 §2.1.1 defence), or two
//!   MACs probing for one IP within 2 s.
//!
//! Memory is bounded: per-IP and per-source tables stop growing at
//! [`Settings::max_tracked`] entries (further addresses are counted, not tracked), and the
//! timeline keeps one bin per second of capture.

use crate::finding::{Finding, Kind, Severity};
use crate::link::{Frame, LinkProblem};
use foldhash::{HashMap, HashSet};
use nlb_wire::addressing::{NlbMac, classify_mac};
use nlb_wire::arp::{ArpKind, ArpPacket, ArpRepr};
use nlb_wire::ethernet::{
    ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_MS_NLB, ETHERTYPE_NLB_HEARTBEAT,
};
use nlb_wire::heartbeat::{HeartbeatPacket, HeartbeatRepr};
use nlb_wire::igmp::{IgmpCarrier, IgmpDatagram, IgmpRepr, IgmpV3Report, TYPE_REPORT_V3};
use nlb_wire::msnlb::MsNlbHeartbeat;
use nlb_wire::{Error, MacAddr};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;

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
        }
    }
}

/// Askers remembered per requested IP, for matching replies.
const ASKER_SLOTS: usize = 8;

/// RFC 5227 §1.1: PROBE_WAIT + PROBE_NUM × PROBE_MAX, about the time a prober listens.
const PROBE_LISTEN_NS: i64 = 2 * SECOND;
/// MACs listed per finding at most.
const MAX_MACS: usize = 16;
/// Peers (askers) listed per finding at most.
const MAX_PEERS: usize = 16;
/// Clusters, and IGMP cluster MACs, tracked at most.
const MAX_CLUSTERS: usize = 1024;
/// Hosts tracked per cluster at most.
const MAX_HOSTS: usize = 256;
/// Findings kept one by one at most; beyond, each kind's further findings are counted in
/// one catch-all finding, so memory stays bounded on hostile traffic.
const MAX_FINDINGS: usize = 100_000;
/// `Acc::extra` of a kind's catch-all finding.
pub(crate) const OVERFLOW: u64 = u64::MAX;

/// Counts for the capture summary.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counters {
    /// Frames seen.
    pub frames: u64,
    /// ARP frames.
    pub arp: u64,
    /// IGMP messages.
    pub igmp: u64,
    /// nlb heartbeats.
    pub nlb_heartbeats: u64,
    /// Windows NLB heartbeats.
    pub msnlb_heartbeats: u64,
    /// Frames the capture cut short (snap length).
    pub cut: u64,
    /// Frames counted under `malformed`.
    pub malformed: u64,
    /// Frames of link types the doctor does not read.
    pub unsupported_link: u64,
    /// Addresses not tracked because the tables were full.
    pub untracked: u64,
}

/// ARP activity per second, for the timeline.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Bin {
    /// Requests (including probes).
    pub requests: u32,
    /// Replies.
    pub replies: u32,
    /// Announcements and gratuitous ARP.
    pub gratuitous: u32,
    /// Malformed frames.
    pub malformed: u32,
}

const MAX_BINS: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AccKey {
    kind: Kind,
    vlan: u16,
    ip: u32,
    extra: u64,
}

/// Sub-classifications carried in `Acc::flavour`.
pub(crate) const FLAVOUR_MASKING: u8 = 1;
pub(crate) const FLAVOUR_CLUSTER_SENDER: u8 = 2;

#[derive(Debug, Clone)]
struct Acc {
    kind: Kind,
    severity: Severity,
    vlan: Option<u16>,
    ip: Option<Ipv4Addr>,
    macs: Vec<MacAddr>,
    count: u64,
    first_frame: u64,
    last_frame: u64,
    first_ts: i64,
    last_ts: i64,
    peers: Vec<(Ipv4Addr, MacAddr, u64)>,
    longest_ns: i64,
    flavour: u8,
    text: &'static str,
    extra: u64,
}

impl Acc {
    fn add_mac(&mut self, mac: MacAddr) {
        if self.macs.len() < MAX_MACS && !self.macs.contains(&mac) {
            self.macs.push(mac);
        }
    }

    fn add_peer(&mut self, ip: Ipv4Addr, mac: MacAddr) {
        if let Some(peer) = self.peers.iter_mut().find(|p| p.0 == ip && p.1 == mac) {
            peer.2 += 1;
        } else if self.peers.len() < MAX_PEERS {
            self.peers.push((ip, mac, 1));
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Episode {
    first_ts: i64,
    first_frame: u64,
    last_frame: u64,
    last_ts: i64,
    requests: u32,
    asker_ip: Ipv4Addr,
    asker_mac: MacAddr,
    acc: Option<usize>,
}

#[derive(Debug, Clone, Default)]
struct IpState {
    owner: Option<MacAddr>,
    owner_last_ts: i64,
    /// The MAC before `owner`, for A → B → A.
    previous: Option<MacAddr>,
    /// `owner` took the IP over with a gratuitous ARP: not a duplicate unless `previous`
    /// claims it again.
    takeover: bool,
    /// Recent requests for this IP: (asker IP, time), one slot per asker; the first
    /// `asker_len` slots are in use.
    askers: [(u32, i64); ASKER_SLOTS],
    asker_next: u8,
    asker_len: u8,
    episode: Option<Episode>,
    last_probe: Option<(MacAddr, i64)>,
}

impl IpState {
    /// Remembers that `asker` asked for this IP at `ts`: its own slot if it has one,
    /// else a free one, else the oldest.
    fn note_asker(&mut self, asker: Ipv4Addr, ts: i64) {
        let asker = u32::from(asker);
        let used = usize::from(self.asker_len);
        if let Some(slot) = self.askers[..used].iter_mut().find(|(ip, _)| *ip == asker) {
            slot.1 = ts;
        } else if used < ASKER_SLOTS {
            self.askers[used] = (asker, ts);
            self.asker_len += 1;
        } else {
            let slot = usize::from(self.asker_next) % ASKER_SLOTS;
            self.askers[slot] = (asker, ts);
            self.asker_next = self.asker_next.wrapping_add(1);
        }
    }
}

/// What the heartbeats of one cluster host said.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostSeen {
    macs: Vec<MacAddr>,
    dedicated_ip: Option<Ipv4Addr>,
    heartbeats: u64,
    first_ts: i64,
    last_ts: i64,
    state: Option<String>,
    rule_codes: Option<Vec<u32>>,
    rule_count: Option<u16>,
    convergence_state: Option<u16>,
    fingerprint: Option<u64>,
    field_digests: Option<Vec<u8>>,
    view: Option<(u32, u64)>,
    owned_equals_target: bool,
    owned_buckets: usize,
    heartbeat_ms: Option<u16>,
    incarnation: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum ClusterKey {
    Windows { vlan: u16, cluster_ip: u32 },
    Nlb { vlan: u16, cluster_id: u32 },
}

#[derive(Debug, Clone, Default)]
struct ClusterSeen {
    cluster_ip: Option<Ipv4Addr>,
    dst_macs: Vec<MacAddr>,
    masked_sources: bool,
    hosts: BTreeMap<u32, HostSeen>,
    frames: u64,
    first_frame: u64,
    last_frame: u64,
    first_ts: i64,
    last_ts: i64,
    truncated: bool,
    version: Option<(u8, u8)>,
}

/// One source's requests within the storm window.
#[derive(Debug, Clone)]
struct StormWindow {
    /// Time of the source's latest request.
    last: i64,
    /// Times of its requests within the window, oldest first.
    recent: VecDeque<i64>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Traffic {
    frames: u64,
    first_frame: u64,
    last_frame: u64,
    first_ts: i64,
    last_ts: i64,
}

/// The analysis state of one capture or live session.
pub struct Analyzer {
    settings: Settings,
    vips: HashSet<Ipv4Addr>,
    counters: Counters,
    start_ts: Option<i64>,
    last_ts: i64,
    accs: Vec<Acc>,
    acc_index: HashMap<AccKey, usize>,
    raised: usize,
    ips: HashMap<u64, IpState>,
    /// Reply deadlines (deadline, IP key, episode start), kept sorted, earliest first, so
    /// that one frame with a wild timestamp cannot hold the others back. Time nearly
    /// always moves forward, so nearly every deadline goes at the back.
    deadlines: VecDeque<(i64, u64, i64)>,
    storms: HashMap<u64, StormWindow>,
    clusters: BTreeMap<ClusterKey, ClusterSeen>,
    igmp_traffic: BTreeMap<(u16, MacAddr), Traffic>,
    igmp_reported: HashSet<(u16, Ipv4Addr)>,
    /// Source MACs of NLB heartbeats: hosts of some cluster.
    cluster_hosts: HashSet<MacAddr>,
    vlans: Vec<u16>,
    bins: Vec<Bin>,
}

fn vlan_code(vlan: Option<u16>) -> u16 {
    vlan.unwrap_or(u16::MAX)
}

fn ip_key(vlan: Option<u16>, ip: Ipv4Addr) -> u64 {
    (u64::from(vlan_code(vlan)) << 32) | u64::from(u32::from(ip))
}

fn mac_key(vlan: Option<u16>, mac: MacAddr) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[..6].copy_from_slice(&mac.0);
    (u64::from_le_bytes(bytes) << 16) ^ u64::from(vlan_code(vlan))
}

fn mac_u64(mac: MacAddr) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[2..].copy_from_slice(&mac.0);
    u64::from_be_bytes(bytes)
}

impl Analyzer {
    /// A fresh analysis.
    pub fn new(settings: Settings) -> Analyzer {
        Analyzer {
            vips: settings.vips.iter().copied().collect(),
            settings,
            counters: Counters::default(),
            start_ts: None,
            last_ts: 0,
            accs: Vec::new(),
            acc_index: HashMap::default(),
            raised: 0,
            ips: HashMap::default(),
            deadlines: VecDeque::new(),
            storms: HashMap::default(),
            clusters: BTreeMap::new(),
            igmp_traffic: BTreeMap::new(),
            igmp_reported: HashSet::default(),
            cluster_hosts: HashSet::default(),
            vlans: Vec::new(),
            bins: Vec::new(),
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Capture time of the first frame, ns since the epoch.
    pub fn start_ts(&self) -> Option<i64> {
        self.start_ts
    }

    /// Capture time of the latest frame or timeout.
    pub fn last_ts(&self) -> i64 {
        self.last_ts
    }

    /// VLANs seen, in order of appearance.
    pub fn vlans(&self) -> &[u16] {
        &self.vlans
    }

    /// ARP activity per second since the first frame.
    pub fn timeline(&self) -> &[Bin] {
        &self.bins
    }

    fn bin(&mut self, ts: i64) -> Option<&mut Bin> {
        let start = self.start_ts?;
        let index = usize::try_from((ts - start).max(0) / SECOND).ok()?;
        if index >= MAX_BINS {
            return None;
        }
        if self.bins.len() <= index {
            self.bins.resize(index + 1, Bin::default());
        }
        self.bins.get_mut(index)
    }

    /// Advances time to `now` (ns) and raises what has become due: requests that have
    /// waited longer than the reply timeout. Frames call this themselves.
    pub fn handle_timeout(&mut self, now: i64) {
        self.last_ts = self.last_ts.max(now);
        // A reply exactly at the deadline is in time ("within"), hence `>=`.
        while let Some(&(deadline, key, first_ts)) = self.deadlines.front() {
            if deadline >= now {
                break;
            }
            self.deadlines.pop_front();
            let Some(episode) = self
                .ips
                .get(&key)
                .and_then(|state| state.episode)
                .filter(|e| e.first_ts == first_ts && e.acc.is_none())
            else {
                continue;
            };
            let vlan = match (key >> 32) as u16 {
                u16::MAX => None,
                vlan => Some(vlan),
            };
            let ip = Ipv4Addr::from(key as u32);
            let severity = if self.vips.contains(&ip) {
                Severity::Error
            } else {
                Severity::Warning
            };
            let index = self.acc(
                Kind::UnansweredRequest,
                severity,
                vlan,
                Some(ip),
                0,
                episode.first_frame,
                episode.first_ts,
            );
            let acc = &mut self.accs[index];
            acc.count += u64::from(episode.requests);
            acc.last_frame = acc.last_frame.max(episode.last_frame);
            acc.last_ts = acc.last_ts.max(episode.last_ts);
            acc.add_peer(episode.asker_ip, episode.asker_mac);
            acc.add_mac(episode.asker_mac);
            acc.longest_ns = acc.longest_ns.max(now - episode.first_ts);
            if let Some(state) = self.ips.get_mut(&key)
                && let Some(open) = state.episode.as_mut()
            {
                open.acc = Some(index);
            }
        }
    }

    /// Findings raised since the last call, each once, as they first appear (for `nlb
    /// watch`). Their counts keep growing afterwards; [`finish`](Self::finish) has the
    /// totals.
    pub fn poll_raised(&mut self) -> Option<Finding> {
        let index = self.raised;
        if index >= self.accs.len() {
            return None;
        }
        self.raised += 1;
        Some(self.render(&self.accs[index]))
    }

    #[allow(clippy::too_many_arguments)]
    fn acc(
        &mut self,
        kind: Kind,
        severity: Severity,
        vlan: Option<u16>,
        ip: Option<Ipv4Addr>,
        extra: u64,
        frame: u64,
        ts: i64,
    ) -> usize {
        let mut key = AccKey {
            kind,
            vlan: vlan_code(vlan),
            ip: ip.map_or(0, u32::from),
            extra,
        };
        let (mut vlan, mut ip, mut extra) = (vlan, ip, extra);
        if self.accs.len() >= MAX_FINDINGS && !self.acc_index.contains_key(&key) {
            // Full: the kind's catch-all finding counts the rest.
            key = AccKey {
                kind,
                vlan: u16::MAX,
                ip: 0,
                extra: OVERFLOW,
            };
            (vlan, ip, extra) = (None, None, OVERFLOW);
        }
        if let Some(&index) = self.acc_index.get(&key) {
            let acc = &mut self.accs[index];
            acc.last_frame = acc.last_frame.max(frame);
            acc.last_ts = acc.last_ts.max(ts);
            return index;
        }
        let index = self.accs.len();
        self.accs.push(Acc {
            kind,
            severity,
            vlan,
            ip,
            macs: Vec::new(),
            count: 0,
            first_frame: frame,
            last_frame: frame,
            first_ts: ts,
            last_ts: ts,
            peers: Vec::new(),
            longest_ns: 0,
            flavour: 0,
            text: "",
            extra,
        });
        self.acc_index.insert(key, index);
        index
    }

    /// Counts one more frame of a finding (made on first sight) and adds `macs` to it.
    fn count(
        &mut self,
        kind: Kind,
        severity: Severity,
        frame: &Frame<'_>,
        ip: Option<Ipv4Addr>,
        extra: u64,
        macs: &[MacAddr],
    ) -> &mut Acc {
        let index = self.acc(
            kind,
            severity,
            frame.vlan,
            ip,
            extra,
            frame.number,
            frame.ts_ns,
        );
        let acc = &mut self.accs[index];
        acc.count += 1;
        for &mac in macs {
            acc.add_mac(mac);
        }
        acc
    }

    /// Counts a malformed frame under `reason`.
    fn malformed(&mut self, frame: &Frame<'_>, reason: &'static str, severity: Severity) {
        self.counters.malformed += 1;
        let extra = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::hash::DefaultHasher::new();
            reason.hash(&mut hasher);
            hasher.finish()
        };
        let acc = self.count(Kind::Malformed, severity, frame, None, extra, &[]);
        acc.text = reason;
        if let Some(src) = frame.src {
            acc.add_mac(src);
        }
        if let Some(bin) = self.bin(frame.ts_ns) {
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
        self.counters.frames += 1;
        let frame = Frame {
            number,
            ts_ns,
            vlan: None,
            src: None,
            dst: None,
            ethertype: 0,
            payload: &[],
            cut: false,
        };
        match problem {
            LinkProblem::Truncated => self.malformed(
                &frame,
                "link: shorter than its link-layer header",
                Severity::Warning,
            ),
            LinkProblem::Malformed(why) => self.malformed(&frame, why, Severity::Warning),
            LinkProblem::Unsupported => self.counters.unsupported_link += 1,
        }
    }

    /// The end of a capture file that was cut inside a record or is corrupt.
    pub fn handle_capture_end_problem(&mut self, reason: &'static str) {
        // The record after the last whole frame: not a frame, so not in the frame count.
        let frame = Frame {
            number: self.counters.frames + 1,
            ts_ns: self.last_ts,
            vlan: None,
            src: None,
            dst: None,
            ethertype: 0,
            payload: &[],
            cut: false,
        };
        self.malformed(&frame, reason, Severity::Warning);
        self.counters.malformed -= 1;
    }

    fn note_time(&mut self, ts: i64) {
        if self.start_ts.is_none() {
            self.start_ts = Some(ts);
        }
        self.handle_timeout(ts);
    }

    /// Analyses one frame.
    pub fn handle_frame(&mut self, frame: &Frame<'_>) {
        self.note_time(frame.ts_ns);
        self.counters.frames += 1;
        if frame.cut {
            self.counters.cut += 1;
        }
        if let Some(vlan) = frame.vlan
            && !self.vlans.contains(&vlan)
            && self.vlans.len() < 4096
        {
            self.vlans.push(vlan);
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
            ETHERTYPE_IPV4 => self.handle_ipv4(frame),
            ETHERTYPE_NLB_HEARTBEAT => self.handle_nlb_heartbeat(frame),
            ETHERTYPE_MS_NLB => self.handle_msnlb(frame),
            _ => {}
        }
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
            mac_u64(src),
            &[src],
        );
    }

    fn note_igmp_cluster_traffic(&mut self, frame: &Frame<'_>, dst: MacAddr) {
        // Cluster traffic is a unicast IPv4 packet (for the VIP) inside the multicast
        // MAC, or a heartbeat. Ordinary multicast that shares the MAC prefix (SSDP to
        // 239.255.255.250, say) and IGMP reports themselves are not.
        let cluster_traffic = match frame.ethertype {
            ETHERTYPE_IPV4 => frame
                .payload
                .get(16..20)
                .is_some_and(|d| !Ipv4Addr::new(d[0], d[1], d[2], d[3]).is_multicast()),
            ETHERTYPE_NLB_HEARTBEAT | ETHERTYPE_MS_NLB => true,
            _ => false,
        };
        if !cluster_traffic || self.igmp_traffic.len() >= MAX_CLUSTERS {
            return;
        }
        let traffic = self
            .igmp_traffic
            .entry((vlan_code(frame.vlan), dst))
            .or_insert(Traffic {
                first_frame: frame.number,
                first_ts: frame.ts_ns,
                ..Traffic::default()
            });
        traffic.frames += 1;
        traffic.last_frame = frame.number;
        traffic.last_ts = frame.ts_ns;
    }

    fn handle_ipv4(&mut self, frame: &Frame<'_>) {
        if frame.payload.get(9) != Some(&2) {
            return;
        }
        let Ok(carrier) = IgmpCarrier::parse(frame.payload) else {
            if !frame.cut {
                self.malformed(frame, "IGMP: bad IPv4 header", Severity::Warning);
            }
            return;
        };
        self.counters.igmp += 1;
        if carrier.msg_type() == Some(TYPE_REPORT_V3) {
            match IgmpV3Report::new_checked(carrier.message) {
                Ok(report) => {
                    for record in report.records().filter(|r| r.is_membership()) {
                        if self.igmp_reported.len() < self.settings.max_tracked {
                            self.igmp_reported
                                .insert((vlan_code(frame.vlan), record.group));
                        }
                    }
                }
                Err(err) if !frame.cut => {
                    self.malformed(frame, igmp_reason(&err), Severity::Warning)
                }
                Err(_) => {}
            }
            return;
        }
        match IgmpDatagram::parse(frame.payload) {
            Ok(datagram) => {
                if let IgmpRepr::MembershipReportV1 { group }
                | IgmpRepr::MembershipReportV2 { group } = datagram.igmp
                    && self.igmp_reported.len() < self.settings.max_tracked
                {
                    self.igmp_reported.insert((vlan_code(frame.vlan), group));
                }
            }
            Err(err) if !frame.cut => self.malformed(frame, igmp_reason(&err), Severity::Warning),
            Err(_) => {}
        }
    }

    fn handle_arp(&mut self, frame: &Frame<'_>) {
        self.counters.arp += 1;
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
        if let Some(bin) = self.bin(frame.ts_ns) {
            match kind {
                ArpKind::Request | ArpKind::Probe => bin.requests += 1,
                ArpKind::Reply => bin.replies += 1,
                _ => bin.gratuitous += 1,
            }
        }
        if let Some(src) = frame.src
            && repr.sender_mac != src
        {
            self.sender_mismatch(frame, &repr, src);
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
            let asked = self.claim(frame, &repr, kind.is_gratuitous());
            if kind == ArpKind::Reply && !asked {
                self.unexpected_reply(frame, &repr);
            }
        } else if kind == ArpKind::Reply {
            self.unexpected_reply(frame, &repr);
        }
    }

    fn sender_mismatch(&mut self, frame: &Frame<'_>, repr: &ArpRepr, src: MacAddr) {
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
        let acc = self.count(
            Kind::SenderMacMismatch,
            if cluster_sender {
                Severity::Info
            } else {
                Severity::Warning
            },
            frame,
            Some(repr.sender_ip),
            mac_u64(src) ^ mac_u64(repr.sender_mac).rotate_left(17),
            &[src, repr.sender_mac],
        );
        // The wording follows the latest frame's pattern, and the severity with it (a
        // host's first ARP can come before its first heartbeat).
        if masking {
            acc.flavour = FLAVOUR_MASKING;
            acc.severity = Severity::Warning;
        } else if cluster_sender {
            acc.flavour = FLAVOUR_CLUSTER_SENDER;
            acc.severity = Severity::Info;
        }
    }

    fn tracked(&mut self, key: u64) -> Option<&mut IpState> {
        let full = self.ips.len() >= self.settings.max_tracked;
        match self.ips.entry(key) {
            Entry::Occupied(entry) => Some(entry.into_mut()),
            Entry::Vacant(_) if full => {
                self.counters.untracked += 1;
                None
            }
            Entry::Vacant(entry) => Some(entry.insert(IpState::default())),
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
                self.counters.untracked += 1;
                return;
            }
            Entry::Vacant(entry) => entry.insert(StormWindow {
                last: i64::MIN,
                recent: VecDeque::with_capacity((limit + 1).min(64)),
            }),
        };
        let recent = &mut window_state.recent;
        if frame.ts_ns.saturating_sub(window_state.last) >= window {
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
            let acc = self.count(
                Kind::RequestStorm,
                Severity::Warning,
                frame,
                None,
                mac_u64(source),
                &[source],
            );
            acc.add_peer(repr.sender_ip, source);
        }
    }

    fn request(&mut self, frame: &Frame<'_>, repr: &ArpRepr) {
        let key = ip_key(frame.vlan, repr.target_ip);
        let timeout = self.settings.reply_timeout_ns;
        let Some(state) = self.tracked(key) else {
            return;
        };
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
                    acc: None,
                });
                new_episode = true;
            }
        }
        let open = state.episode.expect("just set");
        if new_episode {
            let entry = (frame.ts_ns + timeout, key, frame.ts_ns);
            if self.deadlines.back().is_none_or(|last| last.0 <= entry.0) {
                self.deadlines.push_back(entry);
            } else {
                let at = self.deadlines.partition_point(|e| e.0 <= entry.0);
                self.deadlines.insert(at, entry);
            }
        } else if let Some(index) = open.acc {
            let acc = &mut self.accs[index];
            acc.count += 1;
            acc.last_frame = frame.number;
            acc.last_ts = frame.ts_ns;
            acc.add_peer(repr.sender_ip, repr.sender_mac);
            acc.add_mac(repr.sender_mac);
            acc.longest_ns = acc.longest_ns.max(frame.ts_ns - open.first_ts);
        }
    }

    /// Whether someone asked for `repr.sender_ip` (the replier) recently: the reply's
    /// target IP among the askers remembered in `state`.
    fn was_asked(state: &IpState, repr: &ArpRepr, now: i64, memory: i64) -> bool {
        state.askers[..usize::from(state.asker_len)]
            .iter()
            .any(|&(asker, ts)| asker == u32::from(repr.target_ip) && now - ts <= memory)
    }

    fn unexpected_reply(&mut self, frame: &Frame<'_>, repr: &ArpRepr) {
        let acc = self.count(
            Kind::UnexpectedReply,
            Severity::Warning,
            frame,
            Some(repr.sender_ip),
            mac_u64(repr.sender_mac),
            &[repr.sender_mac],
        );
        acc.add_peer(repr.target_ip, repr.target_mac);
    }

    fn gratuitous(&mut self, frame: &Frame<'_>, repr: &ArpRepr, kind: ArpKind) {
        let flavour = match kind {
            ArpKind::Announcement => 0,
            ArpKind::GratuitousRequest => 1,
            _ if repr.is_strict_gratuitous_reply() => 2,
            _ => 3,
        };
        let acc = self.count(
            Kind::GratuitousArp,
            Severity::Info,
            frame,
            Some(repr.sender_ip),
            (mac_u64(repr.sender_mac) << 2) | flavour,
            &[repr.sender_mac],
        );
        acc.flavour = flavour as u8;
    }

    fn probe(&mut self, frame: &Frame<'_>, repr: &ArpRepr) {
        self.count(
            Kind::ArpProbe,
            Severity::Info,
            frame,
            Some(repr.target_ip),
            0,
            &[repr.sender_mac],
        );
        // A probe asks "who has" too: a reply to it is expected (RFC 5227 §2.1.1).
        let key = ip_key(frame.vlan, repr.target_ip);
        let window = self.settings.duplicate_window_ns;
        let Some(state) = self.tracked(key) else {
            return;
        };
        state.note_asker(Ipv4Addr::UNSPECIFIED, frame.ts_ns);
        let in_use = state.owner.filter(|&owner| {
            owner != repr.sender_mac && frame.ts_ns - state.owner_last_ts <= window
        });
        let other_prober = state
            .last_probe
            .filter(|&(mac, ts)| mac != repr.sender_mac && frame.ts_ns - ts <= PROBE_LISTEN_NS)
            .map(|(mac, _)| mac);
        state.last_probe = Some((repr.sender_mac, frame.ts_ns));
        for (other, text) in [(in_use, "in use"), (other_prober, "two probers")] {
            if let Some(other) = other {
                self.probe_conflict(frame, repr.target_ip, repr.sender_mac, other, text);
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

    /// Whether `ip` is a VIP given with `--vip`, or the IP of a cluster seen in the
    /// heartbeats (for an IGMP-mode cluster, whose MAC names only the VIP's last two
    /// bytes: one whose cluster MAC ends in them).
    fn is_cluster_ip(&self, ip: Ipv4Addr) -> bool {
        let [_, _, c, d] = ip.octets();
        self.vips.contains(&ip)
            || self.clusters.values().any(|cluster| {
                cluster.cluster_ip == Some(ip)
                    || cluster.dst_macs.iter().any(|mac| {
                        matches!(classify_mac(*mac), Some(NlbMac::IgmpCluster(_)))
                            && mac.0[4..] == [c, d]
                    })
            })
    }

    fn probe_conflict(
        &mut self,
        frame: &Frame<'_>,
        ip: Ipv4Addr,
        prober: MacAddr,
        other: MacAddr,
        text: &'static str,
    ) {
        if self.cluster_member_for(ip, prober) && self.cluster_member_for(ip, other) {
            return;
        }
        let acc = self.count(
            Kind::ProbeConflict,
            Severity::Error,
            frame,
            Some(ip),
            0,
            &[prober, other],
        );
        if acc.text.is_empty() {
            acc.text = text;
        }
    }

    /// Records that `repr.sender_mac` claims `repr.sender_ip`, and returns whether
    /// someone had asked for that IP recently (so a reply was expected).
    fn claim(&mut self, frame: &Frame<'_>, repr: &ArpRepr, gratuitous: bool) -> bool {
        let key = ip_key(frame.vlan, repr.sender_ip);
        let window = self.settings.duplicate_window_ns;
        let memory = self.settings.request_memory_ns;
        let mac = repr.sender_mac;
        let ts = frame.ts_ns;
        let Some(state) = self.tracked(key) else {
            return true;
        };
        let asked = Self::was_asked(state, repr, ts, memory);
        // Anything from the IP answers the requests for it (Linux updates an INCOMPLETE
        // entry from any ARP the owner sends).
        let answered = state.episode.take();
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
        if let Some(episode) = answered
            && let Some(index) = episode.acc
        {
            let acc = &mut self.accs[index];
            acc.longest_ns = acc.longest_ns.max(ts - episode.first_ts);
        }
        if let Some(prober) = probe_defended {
            self.probe_conflict(frame, repr.sender_ip, prober, mac, "defended");
        }
        if let Some(other) = duplicate_of {
            self.count(
                Kind::DuplicateIp,
                Severity::Error,
                frame,
                Some(repr.sender_ip),
                0,
                &[other, mac],
            );
        }
        if let Some(other) = flap {
            self.count(
                Kind::IpMacFlap,
                Severity::Error,
                frame,
                Some(repr.sender_ip),
                0,
                &[mac, other],
            );
        }
        asked
    }

    /// The cluster's record, made on first sight; `None` once [`MAX_CLUSTERS`] are
    /// tracked and this is another one.
    fn cluster_entry(&mut self, key: ClusterKey, frame: &Frame<'_>) -> Option<&mut ClusterSeen> {
        if self.clusters.len() >= MAX_CLUSTERS && !self.clusters.contains_key(&key) {
            self.counters.untracked += 1;
            return None;
        }
        if let Some(src) = frame.src
            && self.cluster_hosts.len() < self.settings.max_tracked
        {
            self.cluster_hosts.insert(src);
        }
        let cluster = self.clusters.entry(key).or_insert_with(|| ClusterSeen {
            first_frame: frame.number,
            first_ts: frame.ts_ns,
            ..ClusterSeen::default()
        });
        cluster.frames += 1;
        cluster.last_frame = frame.number;
        cluster.last_ts = frame.ts_ns;
        if let Some(dst) = frame.dst
            && !cluster.dst_macs.contains(&dst)
            && cluster.dst_macs.len() < MAX_MACS
        {
            cluster.dst_macs.push(dst);
        }
        Some(cluster)
    }

    fn handle_msnlb(&mut self, frame: &Frame<'_>) {
        let heartbeat = match MsNlbHeartbeat::decode(frame.payload) {
            Ok(heartbeat) => heartbeat,
            Err(_) if frame.cut => {
                self.malformed(
                    frame,
                    "Windows NLB heartbeat: cut by the capture's snap length before its header ends",
                    Severity::Info,
                );
                return;
            }
            Err(_) => {
                self.malformed(frame, "Windows NLB heartbeat: malformed", Severity::Warning);
                return;
            }
        };
        self.counters.msnlb_heartbeats += 1;
        let key = ClusterKey::Windows {
            vlan: vlan_code(frame.vlan),
            cluster_ip: u32::from(heartbeat.cluster_ip),
        };
        let src = frame.src;
        let Some(cluster) = self.cluster_entry(key, frame) else {
            return;
        };
        cluster.cluster_ip = Some(heartbeat.cluster_ip);
        cluster.version = Some(heartbeat.version);
        cluster.truncated |= heartbeat.truncation.is_some();
        if let Some(src) = src
            && classify_mac(src)
                == Some(NlbMac::MaskedHost {
                    host_id: heartbeat.host_id as u8,
                    vip: heartbeat.cluster_ip,
                })
        {
            cluster.masked_sources = true;
        }
        let Some(host) = self.heard_host(key, frame, heartbeat.host_id) else {
            return;
        };
        host.dedicated_ip = Some(heartbeat.dedicated_ip);
        if let Some(body) = &heartbeat.membership {
            host.convergence_state = body.convergence_state.or(host.convergence_state);
            host.rule_count = body.port_rule_count.or(host.rule_count);
            if let Some(count) = body.port_rule_count
                && body.port_rule_codes.len() >= usize::from(count)
            {
                host.rule_codes = Some(body.port_rule_codes[..usize::from(count)].to_vec());
            }
        }
        self.check_cluster(frame, key, heartbeat.host_id);
    }

    fn handle_nlb_heartbeat(&mut self, frame: &Frame<'_>) {
        let parsed = HeartbeatPacket::new_checked(frame.payload)
            .and_then(|packet| HeartbeatRepr::parse(&packet, None));
        let heartbeat = match parsed {
            Ok(heartbeat) => heartbeat,
            Err(Error::Truncated { .. }) if frame.cut => {
                self.malformed(
                    frame,
                    "nlb heartbeat: cut by the capture's snap length",
                    Severity::Info,
                );
                return;
            }
            Err(_) => {
                self.malformed(frame, "nlb heartbeat: malformed", Severity::Warning);
                return;
            }
        };
        self.counters.nlb_heartbeats += 1;
        let key = ClusterKey::Nlb {
            vlan: vlan_code(frame.vlan),
            cluster_id: heartbeat.cluster_id,
        };
        let Some(cluster) = self.cluster_entry(key, frame) else {
            return;
        };
        if cluster.cluster_ip.is_none() {
            cluster.cluster_ip = frame.dst.and_then(|dst| match classify_mac(dst) {
                Some(NlbMac::UnicastCluster(vip) | NlbMac::MulticastCluster(vip)) => Some(vip),
                _ => None,
            });
        }
        let host_id = u32::from(heartbeat.host_id);
        let Some(host) = self.heard_host(key, frame, host_id) else {
            return;
        };
        host.state = Some(heartbeat.state.name().to_owned());
        host.fingerprint = Some(heartbeat.config_fingerprint);
        host.field_digests = Some(heartbeat.field_digests.to_vec());
        host.view = Some((heartbeat.view_epoch, heartbeat.view_members.0));
        host.heartbeat_ms = Some(heartbeat.heartbeat_ms);
        host.incarnation = Some(heartbeat.incarnation);
        host.owned_equals_target = heartbeat.rules.iter().all(|r| r.owned == r.target);
        host.owned_buckets = heartbeat.rules.iter().map(|r| r.owned.len()).sum();
        self.check_cluster(frame, key, host_id);
    }

    /// The record of host `host_id` of cluster `key`, counting this heartbeat; `None`
    /// once the cluster has [`MAX_HOSTS`] and this is another.
    fn heard_host(
        &mut self,
        key: ClusterKey,
        frame: &Frame<'_>,
        host_id: u32,
    ) -> Option<&mut HostSeen> {
        let cluster = self.clusters.get_mut(&key)?;
        if cluster.hosts.len() >= MAX_HOSTS && !cluster.hosts.contains_key(&host_id) {
            return None;
        }
        let host = cluster.hosts.entry(host_id).or_insert_with(|| HostSeen {
            first_ts: frame.ts_ns,
            ..HostSeen::default()
        });
        host.heartbeats += 1;
        host.last_ts = frame.ts_ns;
        Some(host)
    }

    /// After a heartbeat's facts are recorded: a second source MAC for one host id is a
    /// duplicate id, and the hosts' configurations must agree.
    fn check_cluster(&mut self, frame: &Frame<'_>, key: ClusterKey, host_id: u32) {
        let Some(host) = self
            .clusters
            .get_mut(&key)
            .and_then(|cluster| cluster.hosts.get_mut(&host_id))
        else {
            return;
        };
        let new_mac = frame.src.filter(|mac| !host.macs.contains(mac));
        let duplicate = new_mac.is_some() && !host.macs.is_empty();
        if let Some(mac) = new_mac
            && host.macs.len() < MAX_MACS
        {
            host.macs.push(mac);
        }
        let macs = host.macs.clone();
        let inconsistent = self.rules_disagree(key);
        self.cluster_problems(frame, key, host_id, duplicate, &macs, inconsistent);
    }

    /// Whether the latest heartbeats of a cluster's hosts disagree on configuration.
    fn rules_disagree(&self, key: ClusterKey) -> bool {
        let Some(cluster) = self.clusters.get(&key) else {
            return false;
        };
        let mut fingerprints = cluster.hosts.values().filter_map(|h| h.fingerprint);
        let mut codes = cluster.hosts.values().filter_map(|h| h.rule_codes.as_ref());
        let first_fingerprint = fingerprints.next();
        let first_codes = codes.next();
        fingerprints.any(|f| Some(f) != first_fingerprint) || codes.any(|c| Some(c) != first_codes)
    }

    #[allow(clippy::too_many_arguments)]
    fn cluster_problems(
        &mut self,
        frame: &Frame<'_>,
        key: ClusterKey,
        host_id: u32,
        duplicate: bool,
        macs: &[MacAddr],
        inconsistent: bool,
    ) {
        // Keyed by the cluster, not its IP, which may be learnt only later (IGMP mode);
        // render() fills the IP in. Bits 48..60 of the code are free for the host id.
        let cluster_code = cluster_code(key);
        if duplicate {
            self.count(
                Kind::NlbDuplicateHostId,
                Severity::Error,
                frame,
                None,
                cluster_code | (u64::from(host_id.min(0xfff)) << 48),
                macs,
            );
        }
        if inconsistent {
            self.count(
                Kind::NlbInconsistentRules,
                Severity::Error,
                frame,
                None,
                cluster_code,
                &[],
            );
        }
    }

    /// Ends the analysis: requests still unanswered at `end_ts` (the capture's last frame,
    /// or now) are raised, clusters and IGMP are summarised, and every finding is rendered,
    /// most severe first.
    pub fn finish(&mut self) -> Vec<Finding> {
        // Requests whose reply timeout passed before the end of the capture.
        let end = self.last_ts;
        self.handle_timeout(end);
        for state in self.ips.values() {
            if let Some(episode) = state.episode
                && let Some(index) = episode.acc
            {
                let acc = &mut self.accs[index];
                acc.longest_ns = acc.longest_ns.max(end - episode.first_ts);
            }
        }
        self.summarise_igmp();
        self.fill_cluster_ips();
        // A storming source's unanswered requests are part of its storm (a scan), not one
        // finding per address it tried.
        let window = self.settings.storm_window_ns;
        let stormers: Vec<(Option<u16>, MacAddr, i64, i64)> = self
            .accs
            .iter()
            .filter(|a| a.kind == Kind::RequestStorm)
            .filter_map(|a| {
                let mac = *a.macs.first()?;
                // From a window before the storm was seen to a window after it ended.
                Some((a.vlan, mac, a.first_ts - window, a.last_ts + window))
            })
            .collect();
        let mut absorbed: HashMap<(Option<u16>, MacAddr), u64> = HashMap::default();
        let mut findings: Vec<Finding> = Vec::new();
        for acc in &self.accs {
            if acc.kind == Kind::UnansweredRequest
                && acc.severity != Severity::Error
                && !acc.peers.is_empty()
                && let Some(&(vlan, mac, _, _)) = stormers.iter().find(|&&(vlan, mac, from, to)| {
                    vlan == acc.vlan
                        && (from..=to).contains(&acc.first_ts)
                        && acc.peers.iter().all(|p| p.1 == mac)
                })
            {
                *absorbed.entry((vlan, mac)).or_default() += 1;
                continue;
            }
            findings.push(self.render(acc));
        }
        for finding in &mut findings {
            if finding.kind == Kind::RequestStorm
                && let Some(n) = finding
                    .macs
                    .first()
                    .and_then(|m| absorbed.get(&(finding.vlan, *m)))
            {
                finding.message.push_str(&format!(
                    " {n} of the addresses it asked for never answered (not listed separately)."
                ));
                finding.details = serde_json::json!({"unanswered_addresses": n});
            }
        }
        findings.extend(self.cluster_findings());
        findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(b.count.cmp(&a.count))
                .then(a.first_frame.cmp(&b.first_frame))
        });
        findings
    }

    /// An IGMP-mode cluster MAC does not name the VIP; ARP does: the IP that the
    /// cluster MAC claims.
    fn fill_cluster_ips(&mut self) {
        let owners: HashMap<MacAddr, Ipv4Addr> = self
            .ips
            .iter()
            .filter_map(|(key, state)| {
                let mac = state.owner?;
                matches!(classify_mac(mac), Some(NlbMac::IgmpCluster(_)))
                    .then(|| (mac, Ipv4Addr::from(*key as u32)))
            })
            .collect();
        for cluster in self.clusters.values_mut() {
            if cluster.cluster_ip.is_none() {
                cluster.cluster_ip = cluster.dst_macs.iter().find_map(|m| owners.get(m).copied());
            }
        }
    }

    fn summarise_igmp(&mut self) {
        let missing: Vec<((u16, MacAddr), Traffic)> = self
            .igmp_traffic
            .iter()
            .filter(|((vlan, mac), _)| {
                let group = Ipv4Addr::new(239, 255, mac.0[4], mac.0[5]);
                !self.igmp_reported.contains(&(*vlan, group))
            })
            .map(|(k, t)| (*k, *t))
            .collect();
        for ((vlan, mac), traffic) in missing {
            let vlan = (vlan != u16::MAX).then_some(vlan);
            let group = Ipv4Addr::new(239, 255, mac.0[4], mac.0[5]);
            let index = self.acc(
                Kind::IgmpMissing,
                Severity::Error,
                vlan,
                Some(group),
                mac_u64(mac),
                traffic.first_frame,
                traffic.first_ts,
            );
            let acc = &mut self.accs[index];
            acc.count = traffic.frames;
            acc.last_frame = traffic.last_frame;
            acc.last_ts = traffic.last_ts;
            acc.add_mac(mac);
        }
    }

    fn seconds(&self, ts: i64) -> f64 {
        (ts - self.start_ts.unwrap_or(ts)) as f64 / 1e9
    }

    fn render(&self, acc: &Acc) -> Finding {
        let mut view = acc_view(acc);
        if matches!(
            acc.kind,
            Kind::NlbDuplicateHostId | Kind::NlbInconsistentRules
        ) && acc.extra != OVERFLOW
        {
            view.ip = self
                .cluster_by_code(cluster_code_of(acc.extra))
                .and_then(|cluster| cluster.cluster_ip);
        }
        let ip = view.ip;
        let (message, advice, details) = crate::explain::explain(view, self);
        Finding {
            kind: acc.kind,
            severity: acc.severity,
            first_frame: acc.first_frame,
            last_frame: acc.last_frame,
            count: acc.count,
            ip,
            macs: acc.macs.clone(),
            vlan: acc.vlan,
            message,
            advice,
            first_seen_s: self.seconds(acc.first_ts),
            last_seen_s: self.seconds(acc.last_ts),
            details,
        }
    }

    fn cluster_findings(&self) -> Vec<Finding> {
        self.clusters
            .iter()
            .map(|(key, cluster)| {
                let (message, advice, details) =
                    crate::explain::cluster(cluster_view(*key, cluster, self));
                let mut macs: Vec<MacAddr> = Vec::new();
                for host in cluster.hosts.values() {
                    for mac in &host.macs {
                        if !macs.contains(mac) && macs.len() < MAX_MACS {
                            macs.push(*mac);
                        }
                    }
                }
                Finding {
                    kind: Kind::NlbCluster,
                    severity: Severity::Info,
                    first_frame: cluster.first_frame,
                    last_frame: cluster.last_frame,
                    count: cluster.frames,
                    ip: cluster.cluster_ip,
                    macs,
                    vlan: match key {
                        ClusterKey::Windows { vlan, .. } | ClusterKey::Nlb { vlan, .. } => {
                            (*vlan != u16::MAX).then_some(*vlan)
                        }
                    },
                    message,
                    advice,
                    first_seen_s: self.seconds(cluster.first_ts),
                    last_seen_s: self.seconds(cluster.last_ts),
                    details,
                }
            })
            .collect()
    }

    /// The MAC that last claimed `ip` on `vlan`, if any.
    pub(crate) fn owner_of(&self, vlan: Option<u16>, ip: Ipv4Addr) -> Option<MacAddr> {
        self.ips.get(&ip_key(vlan, ip)).and_then(|s| s.owner)
    }

    pub(crate) fn cluster_by_code(&self, code: u64) -> Option<ClusterView<'_>> {
        self.clusters
            .iter()
            .find(|(key, _)| cluster_code(**key) == code)
            .map(|(key, cluster)| cluster_view(*key, cluster, self))
    }

    pub(crate) fn is_vip(&self, ip: Ipv4Addr) -> bool {
        self.vips.contains(&ip)
    }
}

fn igmp_reason(err: &Error) -> &'static str {
    match err {
        Error::BadChecksum => "IGMP: bad checksum",
        Error::Truncated { .. } => "IGMP: truncated message",
        _ => "IGMP: malformed message",
    }
}

/// The cluster code in an `Acc::extra` that may carry a host id in bits 48..60.
pub(crate) fn cluster_code_of(extra: u64) -> u64 {
    extra & !(0xfff << 48)
}

fn cluster_code(key: ClusterKey) -> u64 {
    match key {
        ClusterKey::Windows { vlan, cluster_ip } => {
            (1 << 60) | (u64::from(vlan) << 32) | u64::from(cluster_ip)
        }
        ClusterKey::Nlb { vlan, cluster_id } => {
            (2 << 60) | (u64::from(vlan) << 32) | u64::from(cluster_id)
        }
    }
}

/// A read-only view of an accumulated finding, for [`crate::explain`].
pub(crate) struct AccView<'a> {
    pub(crate) kind: Kind,
    pub(crate) vlan: Option<u16>,
    pub(crate) ip: Option<Ipv4Addr>,
    pub(crate) macs: &'a [MacAddr],
    pub(crate) count: u64,
    pub(crate) peers: &'a [(Ipv4Addr, MacAddr, u64)],
    pub(crate) longest_ns: i64,
    pub(crate) flavour: u8,
    pub(crate) text: &'static str,
    pub(crate) extra: u64,
    pub(crate) first_frame: u64,
}

fn acc_view(acc: &Acc) -> AccView<'_> {
    AccView {
        kind: acc.kind,
        vlan: acc.vlan,
        ip: acc.ip,
        macs: &acc.macs,
        count: acc.count,
        peers: &acc.peers,
        longest_ns: acc.longest_ns,
        flavour: acc.flavour,
        text: acc.text,
        extra: acc.extra,
        first_frame: acc.first_frame,
    }
}

/// A read-only view of one cluster, for [`crate::explain`].
pub(crate) struct ClusterView<'a> {
    pub(crate) windows: bool,
    pub(crate) vlan: Option<u16>,
    pub(crate) cluster_id: Option<u32>,
    pub(crate) cluster_ip: Option<Ipv4Addr>,
    pub(crate) mode: &'static str,
    pub(crate) hosts: Vec<(u32, &'a HostSeen)>,
    pub(crate) truncated: bool,
    pub(crate) version: Option<(u8, u8)>,
}

impl HostSeen {
    pub(crate) fn period_ms(&self) -> Option<f64> {
        if let Some(ms) = self.heartbeat_ms {
            return Some(f64::from(ms));
        }
        (self.heartbeats > 1)
            .then(|| (self.last_ts - self.first_ts) as f64 / 1e6 / (self.heartbeats - 1) as f64)
    }
    pub(crate) fn macs(&self) -> &[MacAddr] {
        &self.macs
    }
    pub(crate) fn dedicated_ip(&self) -> Option<Ipv4Addr> {
        self.dedicated_ip
    }
    pub(crate) fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }
    pub(crate) fn convergence_state(&self) -> Option<u16> {
        self.convergence_state
    }
    pub(crate) fn rule_count(&self) -> Option<u16> {
        self.rule_count
    }
    pub(crate) fn rule_codes(&self) -> Option<&[u32]> {
        self.rule_codes.as_deref()
    }
    pub(crate) fn fingerprint(&self) -> Option<u64> {
        self.fingerprint
    }
    pub(crate) fn field_digests(&self) -> Option<&[u8]> {
        self.field_digests.as_deref()
    }
    pub(crate) fn view(&self) -> Option<(u32, u64)> {
        self.view
    }
    pub(crate) fn settled(&self) -> bool {
        self.owned_equals_target
    }
    pub(crate) fn owned_buckets(&self) -> usize {
        self.owned_buckets
    }
    pub(crate) fn heartbeats(&self) -> u64 {
        self.heartbeats
    }
}

fn cluster_view<'a>(
    key: ClusterKey,
    cluster: &'a ClusterSeen,
    analyzer: &Analyzer,
) -> ClusterView<'a> {
    let (windows, vlan, cluster_id) = match key {
        ClusterKey::Windows { vlan, .. } => (true, vlan, None),
        ClusterKey::Nlb { vlan, cluster_id } => (false, vlan, Some(cluster_id)),
    };
    let vlan = (vlan != u16::MAX).then_some(vlan);
    // The mode: from the heartbeats' addresses first, then from ARP for the cluster IP.
    let arp_mac = cluster
        .cluster_ip
        .and_then(|ip| analyzer.owner_of(vlan, ip));
    let evidence = cluster
        .dst_macs
        .iter()
        .copied()
        .chain(arp_mac)
        .filter_map(classify_mac)
        .find(|m| !matches!(m, NlbMac::MaskedHost { .. }));
    let mode = match evidence {
        _ if cluster.masked_sources => "unicast with masking",
        Some(NlbMac::UnicastCluster(_)) => "unicast",
        Some(NlbMac::MulticastCluster(_)) => "multicast",
        Some(NlbMac::IgmpCluster(_)) => "igmp multicast",
        _ => "unknown",
    };
    ClusterView {
        windows,
        vlan,
        cluster_id,
        cluster_ip: cluster.cluster_ip,
        mode,
        hosts: cluster.hosts.iter().map(|(id, h)| (*id, h)).collect(),
        truncated: cluster.truncated,
        version: cluster.version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlb_wire::ethernet::EthernetRepr;

    const S: i64 = SECOND;

    fn mac(last: u8) -> MacAddr {
        MacAddr([0x52, 0x54, 0, 0, 0, last])
    }

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, last)
    }

    /// Feeds frames (time, bytes) and returns the findings.
    fn analyse(settings: Settings, frames: &[(i64, Vec<u8>)]) -> Vec<Finding> {
        let mut analyzer = Analyzer::new(settings);
        for (number, (ts, bytes)) in frames.iter().enumerate() {
            analyzer.handle_ethernet(number as u64 + 1, *ts, bytes);
        }
        analyzer.finish()
    }

    fn of(findings: &[Finding], kind: Kind) -> Vec<&Finding> {
        findings.iter().filter(|f| f.kind == kind).collect()
    }

    fn request(from: u8, target: Ipv4Addr) -> Vec<u8> {
        ArpRepr::request(mac(from), ip(from), target).to_frame(mac(from), None)
    }

    #[test]
    fn a_wild_timestamp_does_not_stop_unanswered_detection() {
        let frames = vec![
            (1 << 61, request(1, ip(50))),
            (10 * S, request(2, ip(51))),
            (12 * S, request(3, ip(52))),
            (15 * S, request(4, ip(60))),
        ];
        let findings = analyse(Settings::default(), &frames);
        let ips: Vec<Option<Ipv4Addr>> = of(&findings, Kind::UnansweredRequest)
            .iter()
            .map(|f| f.ip)
            .collect();
        assert!(ips.contains(&Some(ip(51))), "{ips:?}");
        assert!(ips.contains(&Some(ip(52))), "{ips:?}");
    }

    #[test]
    fn a_reply_exactly_at_the_deadline_is_in_time() {
        let asked = ArpRepr::request(mac(1), ip(1), ip(2));
        let reply = ArpRepr::reply_to(&asked, mac(2), ip(2));
        let frames = vec![
            (S, asked.to_frame(mac(1), None)),
            (2 * S, reply.to_frame(mac(2), None)),
            (9 * S, request(3, ip(3))),
        ];
        let findings = analyse(Settings::default(), &frames);
        assert!(
            of(&findings, Kind::UnansweredRequest)
                .iter()
                .all(|f| f.ip != Some(ip(2)))
        );
    }

    #[test]
    fn ssdp_multicast_is_not_igmp_cluster_traffic() {
        // UDP to 239.255.255.250 (SSDP) shares the 01:00:5e:7f prefix with IGMP clusters.
        let mut ipv4 = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 1, 17, 0, 0];
        ipv4.extend_from_slice(&ip(7).octets());
        ipv4.extend_from_slice(&[239, 255, 255, 250]);
        ipv4.extend_from_slice(&[0x07, 0x6c, 0x07, 0x6c, 0, 8, 0, 0]);
        let frame = EthernetRepr {
            dst: MacAddr([0x01, 0x00, 0x5e, 0x7f, 0xff, 0xfa]),
            src: mac(7),
            vlan: None,
            ethertype: ETHERTYPE_IPV4,
        }
        .frame(&ipv4);
        let frames: Vec<(i64, Vec<u8>)> = (0..5).map(|i| (i * S, frame.clone())).collect();
        assert!(of(&analyse(Settings::default(), &frames), Kind::IgmpMissing).is_empty());
    }

    #[test]
    fn a_probe_defended_on_a_vip_is_still_a_conflict() {
        let vip = ip(100);
        let frames = vec![
            (0, ArpRepr::announcement(mac(1), vip).to_frame(mac(1), None)),
            (S, ArpRepr::probe(mac(9), vip).to_frame(mac(9), None)),
        ];
        let settings = Settings {
            vips: vec![vip],
            ..Settings::default()
        };
        let conflicts = of(&analyse(settings, &frames), Kind::ProbeConflict).len();
        assert_eq!(conflicts, 1);
    }

    #[test]
    fn a_storm_does_not_swallow_a_later_unanswered_vip() {
        let vip = ip(100);
        let mut frames: Vec<(i64, Vec<u8>)> = (0..40)
            .map(|k| (k * MS, request(1, Ipv4Addr::new(198, 18, 1, k as u8))))
            .collect();
        for k in 0..3 {
            frames.push((3600 * S + k * S, request(1, vip)));
        }
        frames.push((3610 * S, request(2, ip(2))));
        let settings = Settings {
            vips: vec![vip],
            ..Settings::default()
        };
        let findings = analyse(settings, &frames);
        assert_eq!(of(&findings, Kind::RequestStorm).len(), 1);
        let unanswered = of(&findings, Kind::UnansweredRequest);
        let on_vip: Vec<&&Finding> = unanswered.iter().filter(|f| f.ip == Some(vip)).collect();
        assert_eq!(on_vip.len(), 1, "{findings:#?}");
        assert_eq!(on_vip[0].severity, Severity::Error);
    }

    #[test]
    fn priority_tags_are_untagged_traffic() {
        let asked = ArpRepr::request(mac(1), ip(1), ip(2));
        let reply = ArpRepr::reply_to(&asked, mac(2), ip(2));
        let frames = vec![
            (S, asked.to_frame(mac(1), None)),
            (S + MS, reply.to_frame(mac(2), Some(0))),
            (9 * S, request(3, ip(3))),
        ];
        let findings = analyse(Settings::default(), &frames);
        assert!(
            of(&findings, Kind::UnexpectedReply).is_empty(),
            "{findings:#?}"
        );
        assert!(
            of(&findings, Kind::UnansweredRequest)
                .iter()
                .all(|f| f.ip != Some(ip(2)))
        );
    }

    #[test]
    fn many_askers_at_once_all_expect_their_reply() {
        // Eight hosts ask for the gateway at once (times from 0, as in a capture whose
        // clock starts at zero), then it answers each.
        let gateway = ip(254);
        let mut frames = Vec::new();
        for host in 1..=8 {
            frames.push((i64::from(host) - 1, request(host, gateway)));
        }
        for host in 1..=8 {
            let asked = ArpRepr::request(mac(host), ip(host), gateway);
            let reply = ArpRepr::reply_to(&asked, mac(254), gateway);
            frames.push((MS + i64::from(host), reply.to_frame(mac(254), None)));
        }
        let findings = analyse(Settings::default(), &frames);
        assert!(
            of(&findings, Kind::UnexpectedReply).is_empty(),
            "{findings:#?}"
        );
    }
}

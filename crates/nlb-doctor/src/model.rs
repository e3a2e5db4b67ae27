//! What the analysis knows, as data: counters, the per-second timeline, one [`Record`]
//! per finding being accumulated, and what the heartbeats said about each cluster.
//!
//! The contract: the [`analyzer`](crate::analyzer) is the only writer; [`explain`]
//! (words) and [`report`](crate::report) (pages) only read. Nothing here looks at
//! frames, and nothing here imports the analyzer: a record says *what* was seen, in
//! typed fields ([`Subject`] for what a finding is about, [`Evidence`] for how it was
//! classified), never in strings or packed integers that the reader must decode.
//!
//! Memory is bounded here too: at most [`MAX_RECORDS`] records are kept one by one;
//! beyond that, each kind's further findings go to one catch-all record
//! ([`Subject::Overflow`]).
//!
//! [`explain`]: crate::explain

use crate::finding::{Kind, Severity};
use crate::link::Vlan;
use foldhash::{HashMap, HashSet};
use nlb_wire::MacAddr;
use nlb_wire::addressing::{NlbMac, classify_mac};
use nlb_wire::bitmap::BucketBitmap;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// MACs listed per finding at most.
pub(crate) const MAX_MACS: usize = 16;
/// Peers (askers) listed per finding at most.
pub(crate) const MAX_PEERS: usize = 16;
/// Findings kept one by one at most; beyond, each kind's further findings are counted in
/// one catch-all record, so memory stays bounded on hostile traffic.
pub(crate) const MAX_RECORDS: usize = 100_000;
/// Damaged copies of a station's MAC kept at most.
pub(crate) const MAX_COPIES: usize = 16;
/// Timeline bins (seconds) kept at most.
pub(crate) const MAX_BINS: usize = 1 << 20;

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
    /// nlb heartbeats seen twice (the same sender, incarnation and sequence): a capture
    /// that holds a frame twice (`tcpdump -i any` on a bridge), or a loop. Counted once.
    pub duplicate_heartbeats: u64,
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

/// The RFC 5227 / RFC 826 class of a gratuitous ARP frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum GratuitousClass {
    /// A request with sender IP = target IP and an empty target MAC (RFC 5227 §2.3).
    Announcement,
    /// A request with sender IP = target IP and the target MAC set.
    Request,
    /// A reply whose target MAC is its sender MAC.
    ReplyStrict,
    /// Any other reply with sender IP = target IP.
    Reply,
}

/// Why a probe conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Conflict {
    /// Another MAC claimed the address within the duplicate window before the probe.
    InUse,
    /// Two MACs probed for it within the probe's listening time.
    TwoProbers,
    /// Another MAC claimed it within the probe's listening time after it.
    Defended,
}

/// How the ARP sender MAC of a mismatch relates to its Ethernet source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum MismatchPattern {
    /// Nothing known explains it.
    #[default]
    Plain,
    /// Windows NLB unicast masking: `02:<host id>:<ip>` source, `02:bf:<ip>` sender.
    WindowsMasking,
    /// nlb's own: a heartbeat sender's MAC as source, the cluster MAC as sender.
    NlbClusterSender,
}

/// Which cluster: Windows NLB clusters are known by their IP, nlb's by their id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ClusterKey {
    /// A Windows NLB cluster (0x886F heartbeats).
    Windows {
        vlan: Option<Vlan>,
        cluster_ip: Ipv4Addr,
    },
    /// An nlb cluster (0x88B5 heartbeats).
    Nlb { vlan: Option<Vlan>, cluster_id: u32 },
}

impl ClusterKey {
    pub(crate) fn vlan(self) -> Option<Vlan> {
        match self {
            ClusterKey::Windows { vlan, .. } | ClusterKey::Nlb { vlan, .. } => vlan,
        }
    }
}

/// What a finding is about besides its kind, VLAN and IP: with them, its identity
/// (frames with the same identity add up in one record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Subject {
    /// Kind, VLAN and IP say it all.
    None,
    /// One MAC: a storming source, an unexpected replier, a cluster MAC as source, an
    /// IGMP cluster MAC.
    Mac(MacAddr),
    /// An Ethernet source and the different ARP sender MAC of its frames.
    Mismatch { source: MacAddr, sender: MacAddr },
    /// Gratuitous ARP from one MAC, of one class.
    Gratuitous {
        mac: MacAddr,
        class: GratuitousClass,
    },
    /// Malformed frames, by reason.
    Malformed(&'static str),
    /// A cluster's rules.
    Cluster(ClusterKey),
    /// One host id of a cluster.
    ClusterHost { cluster: ClusterKey, host_id: u32 },
    /// The station whose frames arrive damaged.
    Station(MacAddr),
    /// Two senders (host id, MAC) of one nlb cluster whose heartbeats claim buckets at
    /// once, the lower first; the buckets are in `Model::overlaps`.
    OwnerPair {
        cluster: ClusterKey,
        hosts: [(u8, MacAddr); 2],
    },
    /// Flows from a VIP (the record's IP) port to one client, answered from two MACs
    /// (the lower first); IP protocol 6 or 17. The client ports are in
    /// `Model::answered_ports`.
    Answer {
        protocol: u8,
        port: u16,
        client: Ipv4Addr,
        macs: [MacAddr; 2],
    },
    /// The catch-all for a kind's findings beyond [`MAX_RECORDS`].
    Overflow,
}

/// How a finding was classified; it may change as frames come in (the wording follows
/// the latest frame).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) enum Evidence {
    /// Nothing beyond the subject.
    #[default]
    None,
    /// A sender MAC mismatch's pattern.
    Mismatch(MismatchPattern),
    /// A sender MAC mismatch made of damaged copies of `station`'s MAC: part of that
    /// station's `frame_corruption` once its damage is confirmed.
    Damaged { station: MacAddr },
    /// Damaged frames of one station.
    Corruption(Corruption),
    /// A probe conflict's reason (the first one seen).
    Conflict(Conflict),
    /// A request storm and the unanswered addresses it asked for that are not listed
    /// separately.
    Storm { unanswered: u64 },
    /// What the second MAC's answers to a flow were.
    Answers(Answers),
    /// The latest replayed heartbeat: its host id, the (incarnation, sequence) it
    /// carried and the newest one seen from that host before it.
    Replay {
        host_id: u8,
        got: (u32, u64),
        newest: (u32, u64),
    },
}

/// The frames of a `double_answer` from the second MAC, by what they were.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Answers {
    /// TCP SYN-ACKs answering a SYN another MAC answered too (the same acknowledgment
    /// number): two hosts accepted one connection.
    pub(crate) syn_acks: u64,
    /// Other TCP segments.
    pub(crate) segments: u64,
    /// UDP datagrams.
    pub(crate) datagrams: u64,
}

/// The buckets of one rule that two hosts claimed at once.
#[derive(Debug, Clone)]
pub(crate) struct RuleOverlap {
    /// The rule's slot in the heartbeats (configured rules in order, the fallback last).
    pub(crate) slot: u8,
    /// How many rule records the heartbeats carried (so the last slot is the fallback).
    pub(crate) rules: u8,
    pub(crate) buckets: BucketBitmap,
}

/// What the damaged frames of one station showed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Corruption {
    /// ARP frames whose sender MAC is a damaged copy of the station's MAC.
    pub(crate) sender_mac: u64,
    /// ARP frames whose Ethernet source is a damaged copy of the station's MAC.
    pub(crate) source_mac: u64,
    /// ARP frames from the station whose sender IP is a damaged copy of its address.
    pub(crate) sender_ip: u64,
    /// Malformed frames with the station's MAC as Ethernet source.
    pub(crate) malformed: u64,
    /// Distinct damaged copies of its MAC seen (counted up to [`MAX_COPIES`]).
    pub(crate) copies: u32,
    /// `sender_mac_mismatch` findings made of its damaged frames, not listed.
    pub(crate) mismatches_absorbed: u64,
}

/// One finding being accumulated.
///
/// Laid out for the frames that add to it (a busy finding is added to by most frames of
/// a sick network): what each one changes comes first, in the record's first two cache
/// lines; what it is comes after.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub(crate) struct Record {
    /// The [`filter_bits`] of `macs` and of `peers`: change them through
    /// [`add_mac`](Self::add_mac) and [`add_peer`](Self::add_peer) only.
    mac_filter: u128,
    peer_filter: u128,
    pub(crate) count: u64,
    pub(crate) last_frame: u64,
    pub(crate) last_ts: i64,
    /// The longest wait for a reply.
    pub(crate) longest_ns: i64,
    pub(crate) macs: Vec<MacAddr>,
    /// Askers of a request, targets of a reply: (IP, MAC, frames).
    pub(crate) peers: Vec<(Ipv4Addr, MacAddr, u64)>,
    pub(crate) first_frame: u64,
    pub(crate) first_ts: i64,
    pub(crate) kind: Kind,
    pub(crate) severity: Severity,
    pub(crate) vlan: Option<Vlan>,
    pub(crate) ip: Option<Ipv4Addr>,
    pub(crate) subject: Subject,
    pub(crate) evidence: Evidence,
    /// Not reported on its own: part of another finding (an unanswered request of a
    /// storm's scan).
    pub(crate) absorbed: bool,
}

/// What the side tables of [`Model`] know a record by: its identity but the kind.
pub(crate) type SideKey = (Option<Vlan>, Option<Ipv4Addr>, Subject);
/// Two bits of a 128-bit filter for `x`: a record sets the bits of everything it lists,
/// so a clear bit means "not listed" without reading the list (a busy finding's list is
/// full, and most frames bring someone not in it). With the 16 entries of a full list,
/// about one lookup in twenty reads the list for nothing.
fn filter_bits(x: u64) -> u128 {
    let hash = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (1 << (hash >> 57)) | (1 << ((hash >> 50) & 127))
}

fn mac_bits(mac: MacAddr) -> u64 {
    let [a, b, c, d, e, f] = mac.0;
    u64::from_le_bytes([a, b, c, d, e, f, 0, 0])
}

impl Record {
    pub(crate) fn side_key(&self) -> SideKey {
        (self.vlan, self.ip, self.subject)
    }

    pub(crate) fn add_mac(&mut self, mac: MacAddr) {
        let bits = filter_bits(mac_bits(mac));
        let listed = self.mac_filter & bits == bits && self.macs.contains(&mac);
        if !listed && self.macs.len() < MAX_MACS {
            self.macs.push(mac);
            self.mac_filter |= bits;
        }
    }

    pub(crate) fn add_peer(&mut self, ip: Ipv4Addr, mac: MacAddr) {
        let bits = filter_bits(mac_bits(mac) << 16 ^ u64::from(u32::from(ip)));
        let listed = (self.peer_filter & bits == bits)
            .then(|| self.peers.iter_mut().find(|p| p.0 == ip && p.1 == mac))
            .flatten();
        if let Some(peer) = listed {
            peer.2 += 1;
        } else if self.peers.len() < MAX_PEERS {
            self.peers.push((ip, mac, 1));
            self.peer_filter |= bits;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct RecordKey {
    kind: Kind,
    vlan: Option<Vlan>,
    ip: Option<Ipv4Addr>,
    subject: Subject,
}

/// What the heartbeats of one cluster host said.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostSeen {
    pub(crate) macs: Vec<MacAddr>,
    pub(crate) dedicated_ip: Option<Ipv4Addr>,
    pub(crate) heartbeats: u64,
    pub(crate) first_ts: i64,
    pub(crate) last_ts: i64,
    pub(crate) state: Option<&'static str>,
    pub(crate) rule_codes: Option<Vec<u32>>,
    pub(crate) rule_count: Option<u16>,
    pub(crate) convergence_state: Option<u16>,
    pub(crate) fingerprint: Option<u64>,
    pub(crate) field_digests: Option<Vec<u8>>,
    pub(crate) view: Option<(u32, u64)>,
    pub(crate) owned_equals_target: bool,
    pub(crate) owned_buckets: usize,
    pub(crate) heartbeat_ms: Option<u16>,
    pub(crate) incarnation: Option<u32>,
    /// Gaps between two of its heartbeats longer than [`SILENT_PERIODS`] periods.
    pub(crate) gaps: u64,
    /// The longest such gap: (its length, the frame and time that ended it).
    pub(crate) longest_gap: Option<(i64, u64, i64)>,
    /// Whether its current silence was raised already (live, by the sweep).
    pub(crate) silence_raised: bool,
}

/// Heartbeat periods without one after which a host is silent: two thirds of the default
/// failure window (tolerance 15), and past what scheduling jitter makes on a busy machine
/// (gaps of 3 periods at 10 ms were seen under load in `nlb lab`, and are no news).
pub(crate) const SILENT_PERIODS: i64 = 10;

impl HostSeen {
    /// Whether the host had fallen silent at `end` (the end of the capture, or now): no
    /// heartbeat of its own for more than [`SILENT_PERIODS`] of its announced periods.
    pub(crate) fn silent_at(&self, end: i64) -> bool {
        self.heartbeat_ms
            .is_some_and(|ms| end - self.last_ts > SILENT_PERIODS * i64::from(ms) * 1_000_000)
    }
}

impl HostSeen {
    /// The heartbeat period: announced, or measured.
    pub(crate) fn period_ms(&self) -> Option<f64> {
        if let Some(ms) = self.heartbeat_ms {
            return Some(f64::from(ms));
        }
        (self.heartbeats > 1)
            .then(|| (self.last_ts - self.first_ts) as f64 / 1e6 / (self.heartbeats - 1) as f64)
    }
}

/// The cluster's mode, from its addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    UnicastWithMasking,
    Unicast,
    Multicast,
    Igmp,
    Unknown,
}

impl Mode {
    /// The JSON and text name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::UnicastWithMasking => "unicast with masking",
            Mode::Unicast => "unicast",
            Mode::Multicast => "multicast",
            Mode::Igmp => "igmp multicast",
            Mode::Unknown => "unknown",
        }
    }
}

/// What one cluster's heartbeats showed.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterSeen {
    pub(crate) cluster_ip: Option<Ipv4Addr>,
    pub(crate) dst_macs: Vec<MacAddr>,
    pub(crate) masked_sources: bool,
    /// The MAC that claims the cluster IP in ARP (filled in when the analysis ends).
    pub(crate) arp_owner: Option<MacAddr>,
    pub(crate) hosts: BTreeMap<u32, HostSeen>,
    pub(crate) frames: u64,
    pub(crate) first_frame: u64,
    pub(crate) last_frame: u64,
    pub(crate) first_ts: i64,
    pub(crate) last_ts: i64,
    pub(crate) truncated: bool,
    pub(crate) version: Option<(u8, u8)>,
}

impl ClusterSeen {
    /// The mode: from the heartbeats' addresses first, then from ARP for the cluster IP.
    pub(crate) fn mode(&self) -> Mode {
        let evidence = self
            .dst_macs
            .iter()
            .copied()
            .chain(self.arp_owner)
            .filter_map(classify_mac)
            .find(|m| !matches!(m, NlbMac::MaskedHost { .. }));
        match evidence {
            _ if self.masked_sources => Mode::UnicastWithMasking,
            Some(NlbMac::UnicastCluster(_)) => Mode::Unicast,
            Some(NlbMac::MulticastCluster(_)) => Mode::Multicast,
            Some(NlbMac::IgmpCluster(_)) => Mode::Igmp,
            _ => Mode::Unknown,
        }
    }
}

/// Everything the analysis fills in and the explanation reads.
#[derive(Debug, Default)]
pub(crate) struct Model {
    /// IPs given as VIPs: problems with them are errors.
    pub(crate) vips: HashSet<Ipv4Addr>,
    pub(crate) counters: Counters,
    pub(crate) start_ts: Option<i64>,
    pub(crate) last_ts: i64,
    pub(crate) vlans: Vec<Vlan>,
    pub(crate) bins: Vec<Bin>,
    pub(crate) records: Vec<Record>,
    index: HashMap<RecordKey, usize>,
    pub(crate) clusters: BTreeMap<ClusterKey, ClusterSeen>,
    /// The buckets of each `nlb_double_ownership` record, per rule.
    pub(crate) overlaps: HashMap<SideKey, Vec<RuleOverlap>>,
    /// The client ports of each `double_answer` record's flows.
    pub(crate) answered_ports: HashMap<SideKey, Vec<u16>>,
    /// The cluster and host id of each MAC heartbeats came from (the first seen).
    pub(crate) host_macs: HashMap<MacAddr, (ClusterKey, u32)>,
}

impl Model {
    pub(crate) fn new(vips: &[Ipv4Addr]) -> Model {
        Model {
            vips: vips.iter().copied().collect(),
            ..Model::default()
        }
    }

    /// Whether `ip` was given as a VIP.
    pub(crate) fn is_vip(&self, ip: Ipv4Addr) -> bool {
        self.vips.contains(&ip)
    }

    /// Seconds from the start of the capture to `ts`.
    pub(crate) fn seconds(&self, ts: i64) -> f64 {
        (ts - self.start_ts.unwrap_or(ts)) as f64 / 1e9
    }

    /// The timeline bin of `ts`, made on first use; `None` before the first frame or
    /// beyond [`MAX_BINS`].
    pub(crate) fn bin(&mut self, ts: i64) -> Option<&mut Bin> {
        let start = self.start_ts?;
        let index = usize::try_from((ts - start).max(0) / 1_000_000_000).ok()?;
        if index >= MAX_BINS {
            return None;
        }
        if self.bins.len() <= index {
            self.bins.resize(index + 1, Bin::default());
        }
        self.bins.get_mut(index)
    }

    /// Moves record `index`'s last frame and time to `frame`, `ts` if they are later: what
    /// [`record`](Self::record) does to a record it finds, for a caller that kept the index.
    pub(crate) fn touch(&mut self, index: usize, frame: u64, ts: i64) {
        let record = &mut self.records[index];
        record.last_frame = record.last_frame.max(frame);
        record.last_ts = record.last_ts.max(ts);
    }

    /// [`record`](Self::record) for a caller that keeps the index in `kept` (the state
    /// of the IP or source the identity belongs to, at hand already): found there without
    /// a lookup by the wide identity, and kept there when made. An identity's record
    /// never changes index, so the two agree.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record_kept(
        &mut self,
        kept: &mut Option<u32>,
        kind: Kind,
        severity: Severity,
        vlan: Option<Vlan>,
        ip: Option<Ipv4Addr>,
        subject: Subject,
        frame: u64,
        ts: i64,
    ) -> usize {
        if let Some(index) = *kept {
            let index = index as usize;
            self.touch(index, frame, ts);
            return index;
        }
        let index = self.record(kind, severity, vlan, ip, subject, frame, ts);
        // Indices stay below MAX_RECORDS plus one catch-all a kind.
        *kept = u32::try_from(index).ok();
        index
    }

    /// The index of the record of this identity, made on first sight (at `frame`, `ts`);
    /// the record's last frame and time move to these. Once [`MAX_RECORDS`] are kept, a
    /// new identity goes to its kind's catch-all record.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &mut self,
        kind: Kind,
        severity: Severity,
        vlan: Option<Vlan>,
        ip: Option<Ipv4Addr>,
        subject: Subject,
        frame: u64,
        ts: i64,
    ) -> usize {
        let mut key = RecordKey {
            kind,
            vlan,
            ip,
            subject,
        };
        if self.records.len() >= MAX_RECORDS && !self.index.contains_key(&key) {
            key = RecordKey {
                kind,
                vlan: None,
                ip: None,
                subject: Subject::Overflow,
            };
        }
        if let Some(&index) = self.index.get(&key) {
            self.touch(index, frame, ts);
            return index;
        }
        let index = self.records.len();
        self.records.push(Record {
            kind,
            severity,
            vlan: key.vlan,
            ip: key.ip,
            subject: key.subject,
            evidence: Evidence::None,
            macs: Vec::new(),
            count: 0,
            first_frame: frame,
            last_frame: frame,
            first_ts: ts,
            last_ts: ts,
            peers: Vec::new(),
            longest_ns: 0,
            absorbed: false,
            mac_filter: 0,
            peer_filter: 0,
        });
        self.index.insert(key, index);
        index
    }
}

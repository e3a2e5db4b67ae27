//! Ownership seen from the wire: two hosts of one nlb cluster that accept the same
//! buckets, from their heartbeats (`nlb_double_ownership`), and one client flow from a
//! VIP answered from two MACs, from the traffic itself (`double_answer`).
//!
//! ## `nlb_double_ownership`
//!
//! Every nlb heartbeat (0x88B5) carries, per rule, the buckets its sender accepts new
//! connections for now (`owned`). nlb releases before it claims (nlb-core's
//! `node/ownership.rs`): a host takes a bucket only when no peer's latest heartbeat lists
//! it in its target, drops it as soon as one does, and announces every change within a
//! quarter period. So a correct cluster never has one bucket in two hosts' owned sets at
//! once, and the wire shows a hand-off as the old owner's heartbeat without the bucket
//! before the new owner's heartbeat with it.
//!
//! The rule. A *sender* is a (host id, MAC) pair of one cluster (cluster id and VLAN), so
//! two hosts that share an id stay apart. At each heartbeat of sender X, take X's
//! previous heartbeat (same incarnation) and each other sender Y whose latest heartbeat
//! came after X's previous one and no later than this one. A bucket of a rule is
//! **double-owned** by X and Y when it is in X's previous, X's current and Y's latest
//! owned sets, and X's two heartbeats are at most two of X's periods apart (its
//! announced `heartbeat_ms`, clamped to 5 ms…10 s). Rules are compared slot by slot, and
//! only when both carry the same bucket count.
//!
//! Why X–Y–X, and why two periods:
//! - two periods is the shortest failure window nlb allows (tolerance ≥ 2): between two
//!   heartbeats of X that close, no peer can have declared X dead and taken its buckets,
//!   so Y claimed a bucket X was listing all along, which release before claim forbids;
//! - a hand-off whose release the capture missed (a lost frame) is not flagged: the old
//!   owner never claims the bucket again after the new owner did;
//! - a paused host (a frozen VM) may send a stale, queued heartbeat after its peers took
//!   its buckets: that one comes more than two periods after its predecessor (the peers
//!   waited a failure window), and the host's next heartbeat, sent as soon as it
//!   suspects itself, owns nothing.
//!
//! Known limit: if Y missed X's previous heartbeat while the capture saw it, Y may take
//! X's buckets up to one period earlier than the capture suggests, so with tolerance 2 a
//! paused X's stale heartbeat could just fit. Partitions that heal show both sides
//! claiming until they hear each other: that is a real double ownership and is reported.
//!
//! One finding per cluster and pair of senders; the buckets are the union, per rule, of
//! what every such heartbeat showed; its count is the number of heartbeats that showed it.
//!
//! ## `double_answer`
//!
//! Only IPv4 frames whose source is a known VIP are read past their addresses: the VIPs
//! given with `--vip`, cluster IPs from heartbeats (nlb and Windows NLB), and unicast
//! destinations of IPv4 frames sent to an NLB cluster MAC (`02:bf`, `03:bf`,
//! `01:00:5e:7f`). Of those, only first fragments of TCP and UDP, and only the ports and,
//! for TCP, the flags and acknowledgment number (RFC 9293 §3.1); ICMP and IPv6 are not
//! read.
//!
//! A *flow* is (VLAN, protocol, VIP, VIP port, client, client port). The key is the flow,
//! not the client: with affinity none one client's flows are spread over the hosts on
//! purpose, and the wire does not say a rule's affinity. Within [`ANSWER_WINDOW_NS`]
//! (500 ms), a flow is **answered twice** when
//! 1. a SYN-ACK (SYN and ACK set, RST clear) comes from one MAC and a SYN-ACK with the
//!    same acknowledgment number from another: both answered one SYN (the number is the
//!    client's ISN + 1, RFC 9293 §3.4 and §3.5), so two hosts accepted one connection; or
//! 2. the flow's segments or datagrams alternate between two MACs: A, then B, then A
//!    again (or B, A, B), each within the window of the one before.
//!
//! What is not: a single change A → B is what a take-over looks like (the new owner of
//! the bucket answers the flow's next packet: a UDP reply, or a reset of the old owner's
//! connection). The window is under the 1 s initial retransmission timeout (RFC 6298
//! §2.1), so a SYN whose SYN-ACK was lost, retransmitted and answered by a new owner,
//! is not rule 1.
//!
//! One finding per (VLAN, VIP, VIP port, protocol, client, pair of MACs); its count is
//! the frames that made it, by evidence; up to 16 client ports are listed. The host ids
//! of the MACs come from heartbeats, and the bucket of each flow under each affinity
//! from nlb's own hash (nlb-core's `filter`), seeded with the cluster id, when an nlb
//! cluster with that VIP was heard; each such bucket says in which rules the same two
//! hosts' heartbeats claim it at once (the `nlb_double_ownership` between them).
//!
//! Bounded: at most 1,024 senders (128 per cluster), 65,536 flows and 4,096 VIPs learned
//! from frames to cluster MACs, with room for 1,024 more from heartbeats (so frames
//! anyone can send cannot crowd the clusters' own IPs out). Senders expire 20 s after their last heartbeat (twice the longest period),
//! flows after the window; a full table is swept at most once per window (flows) or
//! second (senders) of capture time, and what still does not fit counts as `untracked`.

use super::{Analyzer, MS, SECOND};
use crate::finding::{Kind, Severity};
use crate::link::{Frame, Vlan};
use crate::model::{Answers, ClusterKey, Evidence, RuleOverlap, Subject};
use foldhash::{HashMap, HashSet};
use nlb_wire::MacAddr;
use nlb_wire::addressing::{NlbMac, classify_mac};
use nlb_wire::bitmap::BucketBitmap;
use nlb_wire::heartbeat::HeartbeatRepr;
use std::net::Ipv4Addr;

/// Senders tracked per cluster at most: 64 host ids, and as many duplicates.
const MAX_SENDERS_PER_CLUSTER: usize = 128;
/// Senders tracked over all clusters at most.
const MAX_SENDERS: usize = 1024;
/// A sender's heartbeat older than this can no longer take part: twice the longest
/// period.
const SENDER_EXPIRY_NS: i64 = 20 * SECOND;
/// `nlb_double_ownership` records whose buckets are kept at most.
const MAX_OVERLAP_RECORDS: usize = 1024;
/// How close two MACs' answers to one flow must be.
const ANSWER_WINDOW_NS: i64 = 500 * MS;
/// Flows tracked at most.
const MAX_FLOWS: usize = 1 << 16;
/// Heartbeat senders' MACs remembered for naming hosts at most.
const MAX_HOST_MACS: usize = 4096;
/// VIPs learned from frames to cluster MACs at most.
const MAX_VIPS: usize = 4096;
/// Room kept beyond [`MAX_VIPS`] for cluster IPs from heartbeats: one per cluster
/// tracked.
const MAX_HEARTBEAT_VIPS: usize = 1024;
/// Client ports listed per `double_answer` at most.
const MAX_PORTS: usize = 16;
/// `double_answer` records whose client ports are kept at most.
const MAX_PORT_RECORDS: usize = 4096;
const TCP: u8 = 6;
const UDP: u8 = 17;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// The latest heartbeat of one sender.
struct Claim {
    host_id: u8,
    mac: MacAddr,
    incarnation: u32,
    ts: i64,
    owned: Vec<BucketBitmap>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    vlan: Option<Vlan>,
    protocol: u8,
    vip: Ipv4Addr,
    port: u16,
    client: Ipv4Addr,
    client_port: u16,
}

/// What the VIP side of one flow sent lately.
#[derive(Debug, Clone, Copy)]
struct FlowSeen {
    /// The MAC of the latest frame, and when.
    last_mac: MacAddr,
    last_ts: i64,
    /// The MAC before it, and whether the change to `last_mac` came within the window.
    other: Option<MacAddr>,
    switched_within: bool,
    /// The latest SYN-ACK: acknowledgment number, MAC, time.
    syn_ack: Option<(u32, MacAddr, i64)>,
}

/// How a flow was answered twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Twice {
    SynAck,
    Segment,
    Datagram,
}

/// The state of this module, one field of the analyzer.
#[derive(Default)]
pub(super) struct Ownership {
    claims: HashMap<ClusterKey, Vec<Claim>>,
    senders: usize,
    next_claim_sweep: i64,
    flows: HashMap<FlowKey, FlowSeen>,
    next_flow_sweep: i64,
    vips: HashSet<Ipv4Addr>,
}

/// Buckets of one rule in three owned sets: the rule's slot, its bucket count, and the
/// buckets as wire bytes.
type Shared = (usize, u16, Vec<u8>);

/// The buckets set in all three, if any, as wire bytes.
fn common(a: &BucketBitmap, b: &BucketBitmap, c: &BucketBitmap) -> Option<Vec<u8>> {
    if a.bucket_count() != b.bucket_count() || b.bucket_count() != c.bucket_count() {
        return None;
    }
    let bytes = || {
        a.as_bytes()
            .iter()
            .zip(b.as_bytes())
            .zip(c.as_bytes())
            .map(|((x, y), z)| x & y & z)
    };
    bytes().any(|byte| byte != 0).then(|| bytes().collect())
}

/// Adds the buckets of `bytes` (wire layout) to `set`.
fn add_buckets(set: &mut BucketBitmap, bytes: &[u8]) {
    for (index, &byte) in bytes.iter().enumerate() {
        let new = byte & !set.as_bytes().get(index).copied().unwrap_or(0);
        for bit in (0..8).filter(|bit| new & (1 << bit) != 0) {
            // index < 512 (4096 buckets), so this fits.
            set.insert((index * 8 + bit) as u16);
        }
    }
}

impl Analyzer {
    /// A VIP seen on the wire; `double_answer` reads traffic from it. A cluster IP from a
    /// heartbeat (`from_heartbeat`) also fits once frames to cluster MACs filled
    /// [`MAX_VIPS`]: anyone can send those, and they must not blind the rule to the
    /// clusters themselves (at most [`MAX_HEARTBEAT_VIPS`] more).
    pub(super) fn learn_vip(&mut self, ip: Ipv4Addr, from_heartbeat: bool) {
        let vips = &mut self.ownership.vips;
        if vips.contains(&ip) {
            return;
        }
        let cap = if from_heartbeat {
            MAX_VIPS + MAX_HEARTBEAT_VIPS
        } else {
            MAX_VIPS
        };
        if vips.len() < cap {
            vips.insert(ip);
        } else {
            self.model.counters.untracked += 1;
        }
    }

    /// `mac` sends heartbeats as host `host_id` of `cluster`: what `double_answer` names
    /// its MACs by.
    pub(super) fn note_host_mac(&mut self, mac: MacAddr, cluster: ClusterKey, host_id: u32) {
        let macs = &mut self.model.host_macs;
        if macs.len() < MAX_HOST_MACS {
            macs.entry(mac).or_insert((cluster, host_id));
        }
    }

    fn is_known_vip(&self, ip: Ipv4Addr) -> bool {
        (!self.model.vips.is_empty() && self.model.is_vip(ip))
            || (!self.ownership.vips.is_empty() && self.ownership.vips.contains(&ip))
    }

    /// A tracked nlb cluster's heartbeat: the `nlb_double_ownership` rule of the module
    /// docs, then this heartbeat becomes its sender's latest.
    pub(super) fn note_claims(&mut self, frame: &Frame<'_>, key: ClusterKey, hb: &HeartbeatRepr) {
        if let Some(ip) = self.model.clusters.get(&key).and_then(|c| c.cluster_ip) {
            self.learn_vip(ip, true);
        }
        let Some(mac) = frame.src.or(hb.sender_mac) else {
            return;
        };
        let ts = frame.ts_ns;
        let period = i64::from(hb.heartbeat_ms.clamp(5, 10_000)) * MS;
        let mut found: Vec<((u8, MacAddr), Vec<Shared>)> = Vec::new();
        let claims = self.ownership.claims.entry(key).or_default();
        let x = claims
            .iter()
            .position(|c| c.host_id == hb.host_id && c.mac == mac);
        if let Some(x) = x {
            let previous = &claims[x];
            let gap = ts - previous.ts;
            if previous.incarnation == hb.incarnation && gap > 0 && gap <= 2 * period {
                for (index, y) in claims.iter().enumerate() {
                    if index == x || y.ts <= previous.ts || y.ts > ts {
                        continue;
                    }
                    let rules: Vec<Shared> = previous
                        .owned
                        .iter()
                        .zip(&hb.rules)
                        .zip(&y.owned)
                        .enumerate()
                        .filter_map(|(slot, ((before, now), theirs))| {
                            let count = now.owned.bucket_count();
                            Some((slot, count, common(before, &now.owned, theirs)?))
                        })
                        .collect();
                    if !rules.is_empty() {
                        found.push(((y.host_id, y.mac), rules));
                    }
                }
            }
        }
        let owned = hb.rules.iter().map(|rule| rule.owned.clone());
        match x {
            Some(x) => {
                let claim = &mut claims[x];
                claim.incarnation = hb.incarnation;
                claim.ts = ts;
                claim.owned.clear();
                claim.owned.extend(owned);
            }
            None => {
                if claims.len() >= MAX_SENDERS_PER_CLUSTER || self.ownership.senders >= MAX_SENDERS
                {
                    self.sweep_claims(ts);
                }
                let own = &mut self.ownership;
                let claims = own.claims.entry(key).or_default();
                if claims.len() < MAX_SENDERS_PER_CLUSTER && own.senders < MAX_SENDERS {
                    claims.push(Claim {
                        host_id: hb.host_id,
                        mac,
                        incarnation: hb.incarnation,
                        ts,
                        owned: owned.collect(),
                    });
                    own.senders += 1;
                } else {
                    self.model.counters.untracked += 1;
                }
            }
        }
        let rules = hb.rules.len().min(usize::from(u8::MAX)) as u8;
        for (other, overlaps) in found {
            let mut hosts = [(hb.host_id, mac), other];
            hosts.sort();
            let side = self
                .count(
                    Kind::NlbDoubleOwnership,
                    Severity::Error,
                    frame,
                    None,
                    Subject::OwnerPair {
                        cluster: key,
                        hosts,
                    },
                    &[hosts[0].1, hosts[1].1],
                )
                .side_key();
            let kept = &mut self.model.overlaps;
            if side.2 == Subject::Overflow
                || (!kept.contains_key(&side) && kept.len() >= MAX_OVERLAP_RECORDS)
            {
                continue;
            }
            let kept = kept.entry(side).or_default();
            for (slot, count, bytes) in overlaps {
                let slot = slot.min(usize::from(u8::MAX)) as u8;
                let at = match kept.iter().position(|r| r.slot == slot) {
                    Some(at) => at,
                    None => {
                        kept.push(RuleOverlap {
                            slot,
                            rules,
                            buckets: BucketBitmap::new(count),
                        });
                        kept.len() - 1
                    }
                };
                add_buckets(&mut kept[at].buckets, &bytes);
            }
        }
    }

    /// Forgets senders whose latest heartbeat can no longer take part; at most once a
    /// second of capture time.
    fn sweep_claims(&mut self, now: i64) {
        let own = &mut self.ownership;
        if now < own.next_claim_sweep {
            return;
        }
        own.next_claim_sweep = now.saturating_add(SECOND);
        let mut senders = 0;
        own.claims.retain(|_, claims| {
            claims.retain(|c| now.saturating_sub(c.ts) <= SENDER_EXPIRY_NS);
            senders += claims.len();
            !claims.is_empty()
        });
        own.senders = senders;
    }

    /// An IPv4 frame: learns VIPs from frames to cluster MACs and reads TCP and UDP
    /// from known VIPs for the `double_answer` rule of the module docs.
    pub(super) fn handle_vip_traffic(&mut self, frame: &Frame<'_>) {
        let p = frame.payload;
        let (Some(&version_ihl), Some(addresses)) = (p.first(), p.get(12..20)) else {
            return;
        };
        if version_ihl >> 4 != 4 {
            return;
        }
        let src = Ipv4Addr::new(addresses[0], addresses[1], addresses[2], addresses[3]);
        let dst = Ipv4Addr::new(addresses[4], addresses[5], addresses[6], addresses[7]);
        if let Some(to) = frame.dst
            && (to.0[1] == 0xbf || to.0[..4] == [0x01, 0x00, 0x5e, 0x7f])
            && matches!(
                classify_mac(to),
                Some(
                    NlbMac::UnicastCluster(_)
                        | NlbMac::MulticastCluster(_)
                        | NlbMac::IgmpCluster(_)
                )
            )
            && !(dst.is_multicast() || dst.is_broadcast() || dst.is_unspecified())
        {
            self.learn_vip(dst, false);
        }
        if !self.is_known_vip(src) {
            return;
        }
        let protocol = p[9];
        let first_fragment = u16::from_be_bytes([p[6], p[7]]) & 0x1fff == 0;
        let ihl = usize::from(version_ihl & 0x0f) * 4;
        if !(protocol == TCP || protocol == UDP) || !first_fragment || ihl < 20 {
            return;
        }
        let Some(mac) = frame.src else {
            return;
        };
        let Some(ports) = p.get(ihl..ihl + 4) else {
            return;
        };
        let syn_ack = if protocol == TCP {
            // Flags (byte 13) and acknowledgment number (bytes 8..12), RFC 9293 §3.1.
            let Some(header) = p.get(ihl..ihl + 14) else {
                return;
            };
            let flags = header[13];
            (flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN | TCP_ACK)
                .then(|| u32::from_be_bytes([header[8], header[9], header[10], header[11]]))
        } else {
            None
        };
        let key = FlowKey {
            vlan: frame.vlan,
            protocol,
            vip: src,
            port: u16::from_be_bytes([ports[0], ports[1]]),
            client: dst,
            client_port: u16::from_be_bytes([ports[2], ports[3]]),
        };
        if let Some((twice, other)) = self.answered(key, mac, frame.ts_ns, syn_ack) {
            self.answered_twice(frame, key, [mac, other], twice);
        }
    }

    /// Notes one frame of `key` from `mac`; whether it answers the flow a second time
    /// (rules 1 and 2 of the module docs), and the other MAC.
    fn answered(
        &mut self,
        key: FlowKey,
        mac: MacAddr,
        ts: i64,
        syn_ack: Option<u32>,
    ) -> Option<(Twice, MacAddr)> {
        let within = |since: i64| ts.saturating_sub(since) <= ANSWER_WINDOW_NS;
        let Some(flow) = self.ownership.flows.get_mut(&key) else {
            self.new_flow(key, mac, ts, syn_ack);
            return None;
        };
        let mut twice = None;
        if let (Some(ack), Some((earlier, by, at))) = (syn_ack, flow.syn_ack)
            && ack == earlier
            && by != mac
            && within(at)
        {
            twice = Some((Twice::SynAck, by));
        }
        if mac != flow.last_mac {
            let close = within(flow.last_ts);
            if twice.is_none() && close && flow.switched_within && flow.other == Some(mac) {
                let how = if key.protocol == TCP {
                    Twice::Segment
                } else {
                    Twice::Datagram
                };
                twice = Some((how, flow.last_mac));
            }
            flow.other = Some(flow.last_mac);
            flow.switched_within = close;
            flow.last_mac = mac;
        }
        flow.last_ts = ts;
        if let Some(ack) = syn_ack {
            flow.syn_ack = Some((ack, mac, ts));
        }
        twice
    }

    fn new_flow(&mut self, key: FlowKey, mac: MacAddr, ts: i64, syn_ack: Option<u32>) {
        let own = &mut self.ownership;
        if own.flows.len() >= MAX_FLOWS && ts >= own.next_flow_sweep {
            own.next_flow_sweep = ts.saturating_add(ANSWER_WINDOW_NS);
            own.flows
                .retain(|_, flow| ts.saturating_sub(flow.last_ts) <= ANSWER_WINDOW_NS);
        }
        if own.flows.len() >= MAX_FLOWS {
            self.model.counters.untracked += 1;
            return;
        }
        own.flows.insert(
            key,
            FlowSeen {
                last_mac: mac,
                last_ts: ts,
                other: None,
                switched_within: false,
                syn_ack: syn_ack.map(|ack| (ack, mac, ts)),
            },
        );
    }

    fn answered_twice(
        &mut self,
        frame: &Frame<'_>,
        key: FlowKey,
        mut macs: [MacAddr; 2],
        twice: Twice,
    ) {
        macs.sort();
        let record = self.count(
            Kind::DoubleAnswer,
            Severity::Error,
            frame,
            Some(key.vip),
            Subject::Answer {
                protocol: key.protocol,
                port: key.port,
                client: key.client,
                macs,
            },
            &macs,
        );
        let mut answers = match record.evidence {
            Evidence::Answers(answers) => answers,
            _ => Answers::default(),
        };
        match twice {
            Twice::SynAck => answers.syn_acks += 1,
            Twice::Segment => answers.segments += 1,
            Twice::Datagram => answers.datagrams += 1,
        }
        record.evidence = Evidence::Answers(answers);
        let side = record.side_key();
        let ports = &mut self.model.answered_ports;
        if side.2 == Subject::Overflow
            || (!ports.contains_key(&side) && ports.len() >= MAX_PORT_RECORDS)
        {
            return;
        }
        let ports = ports.entry(side).or_default();
        if !ports.contains(&key.client_port) && ports.len() < MAX_PORTS {
            ports.push(key.client_port);
        }
    }
}

//! Plain words for each finding: what was seen, why it matters, and what to do. Kept apart
//! from the analysis so the wording can change without touching the rules.
//!
//! The contract: everything here reads the [`model`](crate::model) only (a [`Record`] and
//! the [`Model`] it belongs to) and turns it into a [`Finding`]; it never sees frames and
//! never imports the analyzer. The `details` JSON of each kind is chosen here: typed
//! [`Facts`] for the kinds a sick network makes by the thousand (written straight to the
//! report), a `json!` value for the rare ones.

use crate::finding::{Details, Facts, Finding, IpText, Kind, MacText, Severity};
use crate::link::Vlan;
use crate::model::{
    ClusterKey, ClusterSeen, Conflict, Evidence, GratuitousClass, MAX_COPIES, MAX_MACS,
    MismatchPattern, Mode, Model, Record, Subject,
};
use nlb_wire::MacAddr;
use nlb_wire::addressing::classify_mac;
use serde_json::{Value, json};
use std::fmt::Write as _;

/// The JSON name of a gratuitous ARP class.
fn gratuitous_name(class: GratuitousClass) -> &'static str {
    match class {
        GratuitousClass::Announcement => "announcement",
        GratuitousClass::Request => "gratuitous_request",
        GratuitousClass::ReplyStrict => "gratuitous_reply_strict",
        GratuitousClass::Reply => "gratuitous_reply",
    }
}

/// "1 frame", "2 frames".
fn n(count: u64, one: &str, many: &str) -> String {
    if count == 1 {
        format!("1 {one}")
    } else {
        format!("{count} {many}")
    }
}

fn seconds(ns: i64) -> String {
    let s = ns as f64 / 1e9;
    if s < 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.0} s")
    }
}

fn list(macs: &[MacAddr]) -> String {
    let mut text = String::with_capacity(macs.len() * 19);
    for (i, mac) in macs.iter().enumerate() {
        let comma = if i == 0 { "" } else { ", " };
        text.push_str(comma);
        text.push_str(MacText::new(*mac).as_str());
    }
    text
}

fn on_vlan(vlan: Option<Vlan>) -> String {
    vlan.map(|v| format!(" on VLAN {v}")).unwrap_or_default()
}

fn ip_text(ip: Option<std::net::Ipv4Addr>) -> String {
    ip.map(|ip| IpText::new(ip).as_str().to_owned())
        .unwrap_or_default()
}

fn heartbeat_gap(
    acc: &Record,
    ip: &str,
    vlan: &str,
    macs: &str,
    model: &Model,
) -> (String, String, Details) {
    let Subject::ClusterHost {
        cluster: key,
        host_id,
    } = acc.subject
    else {
        return Default::default();
    };
    let Some(host) = model
        .clusters
        .get(&key)
        .and_then(|cluster| cluster.hosts.get(&host_id))
    else {
        return Default::default();
    };
    let period_ms = host.heartbeat_ms.map_or(0, i64::from);
    let ends_silent = host.silent_at(model.last_ts);
    let mut seen = Vec::new();
    if let Some((gap, _, until)) = host.longest_gap {
        let times = if host.gaps > 1 {
            format!(" (the longest of {} such gaps)", host.gaps)
        } else {
            String::new()
        };
        seen.push(format!(
            "sent no heartbeat for {} ({:.0} of its {period_ms} ms periods) until {:.3} s{times}",
            seconds(gap),
            gap as f64 / (period_ms.max(1) * 1_000_000) as f64,
            model.seconds(until)
        ));
    }
    if ends_silent {
        seen.push(format!(
            "has sent none since {:.3} s, {} before the end of the capture",
            model.seconds(host.last_ts),
            seconds(model.last_ts - host.last_ts)
        ));
    }
    (
        format!(
            "Host {host_id} ({macs}) of nlb cluster {ip}{vlan} {}.",
            seen.join(", and ")
        ),
        "Its peers declare a host failed after `tolerance` periods without a heartbeat and take its buckets over; it rejoins when it is heard again. Causes: the daemon or host stopped or crashed, a paused VM or process (live migration, a stop signal, swapping), the host's link or switch port went down, or its heartbeats were lost before the capture point. `nlb query` on it and on a peer shows when it left and came back; `journalctl -u nlb` on the host says why.".to_owned(),
        json!({
            "host_id": host_id,
            "heartbeat_ms": host.heartbeat_ms,
            "gaps": host.gaps,
            "longest_gap_ms": host.longest_gap.map(|(gap, ..)| gap / 1_000_000),
            "ends_silent": ends_silent,
            "last_heartbeat_s": model.seconds(host.last_ts),
        })
        .into(),
    )
}

/// The nlb cluster id of a record about a cluster, in hex.
fn cluster_id(acc: &Record) -> Option<String> {
    match acc.subject {
        Subject::Cluster(ClusterKey::Nlb { cluster_id, .. }) => Some(format!("{cluster_id:08x}")),
        _ => None,
    }
}

/// "cluster 198.18.0.10 (id c612000a)", or "cluster id c612000a" when its IP is unknown.
fn cluster_name(acc: &Record, ip: &str) -> String {
    let id = cluster_id(acc).unwrap_or_default();
    if ip.is_empty() {
        format!("cluster id {id}")
    } else {
        format!("cluster {ip} (id {id})")
    }
}

/// One accumulated record as a finding.
pub(crate) fn finding(record: &Record, model: &Model) -> Finding {
    // A cluster's findings are keyed by the cluster, whose IP may be learnt later.
    let ip = match record.subject {
        Subject::Cluster(key)
        | Subject::ClusterHost { cluster: key, .. }
        | Subject::OwnerPair { cluster: key, .. } => {
            model.clusters.get(&key).and_then(|c| c.cluster_ip)
        }
        _ => record.ip,
    };
    let (message, advice, details) = explain(record, ip, model);
    Finding {
        kind: record.kind,
        severity: record.severity,
        first_frame: record.first_frame,
        last_frame: record.last_frame,
        count: record.count,
        ip,
        macs: record.macs.clone(),
        vlan: record.vlan.map(|v| v.outer),
        inner_vlan: record.vlan.and_then(|v| v.inner),
        message,
        advice,
        first_seen_s: model.seconds(record.first_ts),
        last_seen_s: model.seconds(record.last_ts),
        details,
    }
}

/// The message, advice and details of one aggregated finding.
fn explain(
    acc: &Record,
    ip: Option<std::net::Ipv4Addr>,
    model: &Model,
) -> (String, String, Details) {
    if acc.subject == Subject::Overflow {
        return (
            format!(
                "{} more {} findings, not listed one by one: the doctor keeps at most 100,000 findings.",
                acc.count,
                acc.kind.name()
            ),
            "Narrow the capture (a VLAN, a time range, `tcpdump arp`) to see them individually."
                .to_owned(),
            json!({"overflow": true}).into(),
        );
    }
    let vip = ip.is_some_and(|ip| model.is_vip(ip));
    let ip = ip_text(ip);
    let vlan = on_vlan(acc.vlan);
    let macs = list(&acc.macs);
    match acc.kind {
        Kind::FrameCorruption => corruption(acc, &ip, &vlan),
        Kind::DuplicateIp => (
            format!(
                "{ip}{vlan} is claimed by {} MACs ({macs}): {} from a second MAC within the window after another.",
                acc.macs.len(),
                n(acc.count, "ARP frame", "ARP frames")
            ),
            if vip {
                format!(
                    "Every host of an NLB cluster must answer for the VIP with the one cluster MAC. Find the device with {} and put it in the cluster's mode, or remove the VIP from it.",
                    list(
                        &acc.macs
                            .iter()
                            .copied()
                            .filter(|mac| classify_mac(*mac).is_none())
                            .collect::<Vec<_>>()
                    )
                )
            } else {
                "Two devices are configured with one address. Find them by MAC (switch MAC table, `ip neigh`), give one of them another address, and flush the neighbour caches (`ip neigh flush`) of hosts that talk to it.".to_owned()
            },
            Details::new(Facts::Count("claims_from_other_macs", acc.count)),
        ),
        Kind::SenderMacMismatch => {
            let (src, sender) = (acc.macs.first(), acc.macs.get(1));
            let (src, sender) = (
                src.map(ToString::to_string).unwrap_or_default(),
                sender.map(ToString::to_string).unwrap_or_default(),
            );
            let pattern = match acc.evidence {
                Evidence::Mismatch(pattern) => pattern,
                _ => MismatchPattern::Plain,
            };
            if pattern == MismatchPattern::WindowsMasking {
                (
                    format!(
                        "{} for {ip}{vlan} from Ethernet source {src} name {sender} as the sender: the Windows NLB unicast masking pattern (02:<host id>:<ip> as source, 02:bf:<ip> in ARP).",
                        n(acc.count, "ARP frame", "ARP frames")
                    ),
                    format!(
                        "Most stacks answer to the ARP sender MAC ({sender}) and work. Devices that answer to the Ethernet source instead (some embedded TCP/IP chips, WIZnet among them) send their replies to {src}, which the cluster drops: their connections fail. Use multicast or IGMP mode for such clients, or give them a static ARP entry for {ip} → {sender}."
                    ),
                    json!({"pattern": "nlb_unicast_masking", "ethernet_source": src, "arp_sender": sender}).into(),
                )
            } else if pattern == MismatchPattern::NlbClusterSender {
                (
                    format!(
                        "{} for the cluster IP {ip}{vlan} from host MAC {src} name the cluster MAC {sender} as the sender: how nlb answers, so that switches never learn the cluster MAC.",
                        n(acc.count, "ARP frame", "ARP frames")
                    ),
                    format!(
                        "Nothing to fix for stacks that answer to the ARP sender ({sender}), which is nearly all. A device that answers to the Ethernet source reaches only host {src}."
                    ),
                    json!({"pattern": "nlb_cluster_sender", "ethernet_source": src, "arp_sender": sender}).into(),
                )
            } else {
                (
                    format!(
                        "{} for {ip}{vlan} from Ethernet source {src} name {sender} as the sender.",
                        n(acc.count, "ARP frame", "ARP frames")
                    ),
                    format!(
                        "Receivers learn {sender}, but a switch learns {src}, and stacks that reply to the Ethernet source send to {src}. Unless this is deliberate (a proxy or an NLB cluster), find the device with {src} and fix its ARP configuration."
                    ),
                    json!({"ethernet_source": src, "arp_sender": sender}).into(),
                )
            }
        }
        Kind::UnansweredRequest => {
            // Pieces pushed, not formatted: this list is most of a sick network's words.
            let mut askers = String::with_capacity(acc.peers.len() * 48);
            for (i, (ip, mac, n)) in acc.peers.iter().enumerate() {
                if i > 0 {
                    askers.push_str(", ");
                }
                askers.push_str(IpText::new(*ip).as_str());
                askers.push_str(" (");
                askers.push_str(MacText::new(*mac).as_str());
                let _ = write!(askers, ") {n}×");
            }
            (
                format!(
                    "{} for {ip}{vlan} got no reply, asked by {askers}; the longest wait was {}. The askers' neighbour entries for {ip} go INCOMPLETE and, after 3 unanswered requests, FAILED: traffic to {ip} is dropped.",
                    n(acc.count, "request", "requests"),
                    seconds(acc.longest_ns)
                ),
                if vip {
                    format!(
                        "No cluster host answers ARP for the VIP {ip}. Check that the hosts are up and converged (`nlb query`), that the VIP is configured on this segment and VLAN, and that a host announced it after the last failover."
                    )
                } else {
                    format!(
                        "Check that {ip} is up and on this segment and VLAN. If it moved (a failover), its new owner must announce itself with gratuitous ARP; if it is gone, remove it from the askers' configuration (default gateway, DNS, static routes)."
                    )
                },
                Details::new(Facts::Peers {
                    list: "askers",
                    per: "requests",
                    peers: acc.peers.clone(),
                    longest_wait_s: Some(acc.longest_ns as f64 / 1e9),
                }),
            )
        }
        Kind::UnexpectedReply => (
            format!(
                "{} from {macs} say {ip}{vlan} is at {}, without a request for them in the capture.",
                n(acc.count, "reply", "replies"),
                acc.macs.first().map(ToString::to_string).unwrap_or_default()
            ),
            "Unsolicited replies update caches silently. If the capture started just before them, ignore this; otherwise check whether the sender is the real owner of the address: unsolicited replies are how ARP spoofing works.".to_owned(),
            Details::new(Facts::Peers {
                list: "targets",
                per: "replies",
                peers: acc.peers.clone(),
                longest_wait_s: None,
            }),
        ),
        Kind::IpMacFlap => (
            format!(
                "{ip}{vlan} moved back and forth between {macs}, {}.",
                n(acc.count, "time", "times")
            ),
            "Two devices keep taking the address from each other: caches and switches follow each move, and every move breaks connections. Usually two hosts both think they own it (a split failover pair, a duplicate static address); make only one of them own it.".to_owned(),
            Details::new(Facts::Count("flaps", acc.count)),
        ),
        Kind::RequestStorm => {
            let mut message = format!(
                "{macs} sent requests{vlan} faster than the storm threshold: {} requests beyond it.",
                acc.count
            );
            let details = match acc.evidence {
                Evidence::Storm { unanswered } => {
                    message.push_str(&format!(
                        " {unanswered} of the addresses it asked for never answered (not listed separately)."
                    ));
                    Facts::Count("unanswered_addresses", unanswered)
                }
                _ => Facts::Count("requests_beyond_threshold", acc.count),
            };
            (
                message,
                "A host asking this fast is scanning, looping, or retrying a dead address very quickly. Find it by MAC; if it is a scanner, rate-limit it at the switch.".to_owned(),
                Details::new(details),
            )
        }
        Kind::GratuitousArp => {
            let class = match acc.subject {
                Subject::Gratuitous { class, .. } => class,
                _ => GratuitousClass::Reply,
            };
            let flavour = match class {
                GratuitousClass::Announcement => "announcements (requests with sender IP = target IP and an empty target MAC, RFC 5227 §2.3)",
                GratuitousClass::Request => "gratuitous requests (sender IP = target IP, target MAC set)",
                GratuitousClass::ReplyStrict => "gratuitous replies with target MAC = sender MAC (Linux accepts these to update a fresh entry)",
                GratuitousClass::Reply => "gratuitous replies (sender IP = target IP)",
            };
            (
                format!(
                    "Gratuitous ARP for {ip}{vlan} from {macs}: {} of {flavour}.",
                    n(acc.count, "frame", "frames")
                ),
                "Normal when an address comes up or moves (failover). Many of them for one address, or from several MACs, point at a fight over it.".to_owned(),
                Details::new(Facts::Text("classification", gratuitous_name(class))),
            )
        }
        Kind::ArpProbe => (
            format!(
                "{} (sender IP 0.0.0.0) for {ip}{vlan} from {macs}.",
                n(acc.count, "RFC 5227 probe", "RFC 5227 probes")
            ),
            "A host is checking that the address is free before using it (RFC 5227, Windows does this since Vista). Probes are not claims: a device that reports them as a duplicate address is wrong.".to_owned(),
            Details::default(),
        ),
        Kind::ProbeConflict => {
            let conflict = match acc.evidence {
                Evidence::Conflict(conflict) => conflict,
                _ => Conflict::InUse,
            };
            let (how, name) = match conflict {
                Conflict::TwoProbers => ("two MACs probed for it at the same time", "two probers"),
                Conflict::Defended => (
                    "another MAC answered the probe: the address is taken",
                    "defended",
                ),
                Conflict::InUse => ("another MAC was using it when the probe came", "in use"),
            };
            (
                format!("A probe for {ip}{vlan} conflicts ({macs}): {how}."),
                format!(
                    "The prober must not use {ip}: give it another address (a static configuration that collides, or a DHCP pool that overlaps static addresses)."
                ),
                Details::new(Facts::Text("conflict", name)),
            )
        }
        Kind::ClusterMacAsSource => (
            format!(
                "{}{vlan} with the NLB cluster MAC {macs} as Ethernet source.",
                n(acc.count, "frame", "frames")
            ),
            format!(
                "A switch learns {macs} on that one port and sends all traffic for the cluster ({ip}) to one host instead of flooding it to all: the other hosts stop serving (WLBS Q258609). Send from the host's own MAC (nlb always does; for Windows NLB keep MaskSourceMAC on)."
            ),
            Details::default(),
        ),
        Kind::NlbDuplicateHostId => {
            let host_id = match acc.subject {
                Subject::ClusterHost { host_id, .. } => host_id,
                _ => 0,
            };
            (
                format!(
                    "Host id {host_id} of cluster {ip}{vlan} is announced by {} MACs ({macs}).",
                    acc.macs.len()
                ),
                "Host ids must be unique in a cluster: the hosts cannot agree on who owns which buckets. Give each host its own id (nlb: `[host] id`; Windows NLB: host priority).".to_owned(),
                json!({"host_id": host_id}).into(),
            )
        }
        Kind::NlbForgedHeartbeat => {
            let cluster = cluster_name(acc, &ip);
            (
                format!(
                    "{}{vlan} claiming to be from nlb {cluster} from {macs} fail authentication with the given cluster key (a wrong tag, none, or format version 1, which this release's hosts do not accept either).",
                    n(acc.count, "heartbeat", "heartbeats")
                ),
                "They were left out of the cluster summary and the ownership findings. If these MACs are your hosts, their cluster.key_file differs from the key given here (`nlb query` on such a host shows KeyMismatch): copy the one key to every host. Otherwise someone on the segment forges heartbeats: find the switch port that learned these MACs.".to_owned(),
                json!({"cluster_id": cluster_id(acc)}).into(),
            )
        }
        Kind::NlbHeartbeatGap => heartbeat_gap(acc, &ip, &vlan, &macs, model),
        Kind::NlbReplayedHeartbeat => {
            let cluster = cluster_name(acc, &ip);
            let (host_id, got, newest) = match acc.evidence {
                Evidence::Replay {
                    host_id,
                    got,
                    newest,
                } => (host_id, got, newest),
                _ => (0, (0, 0), (0, 0)),
            };
            (
                format!(
                    "{}{vlan} of nlb {cluster} from {macs} are older than one the capture already showed from the same host: replayed (the latest: host {host_id}, incarnation {} sequence {}, after incarnation {} sequence {}).",
                    n(acc.count, "heartbeat", "heartbeats"),
                    got.0,
                    got.1,
                    newest.0,
                    newest.1
                ),
                "nlb hosts drop such frames (anti-replay), and the doctor left them out of the cluster summary and the ownership findings. Someone on the segment re-sends captured heartbeats, or a loop delays frames: find the switch port that sent them. Or the named host's own heartbeats look old: it restarted with a lower incarnation (its clock went back and its incarnation file in the run directory was lost), which its peers refuse too, so restart it once the clock is right; or, without a cluster key, a forged heartbeat in its name carried the newer pair. With a cluster key a replay can cost availability but never safety (README, threat model); without one, set cluster.key_file.".to_owned(),
                json!({
                    "cluster_id": cluster_id(acc),
                    "host_id": host_id,
                    "incarnation": got.0,
                    "sequence": got.1,
                    "newest_incarnation": newest.0,
                    "newest_sequence": newest.1,
                })
                .into(),
            )
        }
        Kind::NlbInconsistentRules => match acc.subject {
            Subject::Cluster(key) => model
                .clusters
                .get(&key)
                .map(|cluster| inconsistent(&ip, &vlan, cluster))
                .unwrap_or_default(),
            _ => Default::default(),
        },
        Kind::IgmpMissing => (
            format!(
                "{}{vlan} to the IGMP-mode cluster MAC {macs}, but no host reported membership in {ip}.",
                n(acc.count, "frame", "frames")
            ),
            format!(
                "A switch with IGMP snooping sends traffic for {ip} only to ports that reported it: the cluster hosts get nothing (or everything floods when snooping is off). Make every host join {ip} (nlb does; check `ip maddr`), and make sure a querier exists on the VLAN."
            ),
            Details::default(),
        ),
        Kind::Malformed => {
            let reason = match acc.subject {
                Subject::Malformed(reason) => reason,
                _ => "",
            };
            (
            format!("{}{vlan}: {}.", n(acc.count, "frame", "frames"), reason),
            if reason.starts_with("capture:") {
                "The file itself is cut or damaged: a capture that was killed, or a partial copy. Copy it again, or stop tcpdump with Ctrl-C so that it writes its last records.".to_owned()
            } else if reason.contains("snap length") {
                "The capture's snap length cut these frames. Capture again with `tcpdump -s 0` to see them whole.".to_owned()
            } else {
                "Frames like these come from buggy stacks, bad NICs or cabling, or a fuzzer. Find the sender by MAC if it recurs.".to_owned()
            },
            Details::new(Facts::Malformed { reason, first_frame: acc.first_frame }),
        )
        }
        Kind::NlbDoubleOwnership => double_ownership(acc, &ip, &vlan, model),
        Kind::DoubleAnswer => double_answer(acc, &ip, &vlan, model),
        Kind::NlbCluster => Default::default(),
    }
}

/// "rule 2" or "the fallback rule" for a heartbeat rule slot (the fallback comes last).
fn rule_name(slot: u8, rules: u8) -> String {
    if slot + 1 == rules {
        "the fallback rule".to_owned()
    } else {
        format!("rule {}", u16::from(slot) + 1)
    }
}

fn double_ownership(
    acc: &Record,
    ip: &str,
    vlan: &str,
    model: &Model,
) -> (String, String, Details) {
    let (cluster, hosts) = match acc.subject {
        Subject::OwnerPair { cluster, hosts } => (cluster, hosts),
        _ => return Default::default(),
    };
    let cluster_id = match cluster {
        ClusterKey::Nlb { cluster_id, .. } => format!("{cluster_id:08x}"),
        ClusterKey::Windows { .. } => String::new(),
    };
    let mut rules = model
        .overlaps
        .get(&acc.side_key())
        .cloned()
        .unwrap_or_default();
    rules.sort_by_key(|r| r.slot);
    let rules_text: Vec<String> = rules
        .iter()
        .map(|r| {
            format!(
                "{}: {} of {} buckets ({})",
                rule_name(r.slot, r.rules),
                r.buckets.len(),
                r.buckets.bucket_count(),
                r.buckets.ranges_text()
            )
        })
        .collect();
    let [(a, a_mac), (b, b_mac)] = hosts;
    (
        format!(
            "Hosts {a} ({a_mac}) and {b} ({b_mac}) of nlb cluster {ip} (id {cluster_id}){vlan} claim the same buckets at once in {}: {}.",
            n(acc.count, "heartbeat", "heartbeats"),
            if rules_text.is_empty() {
                "buckets not listed (too many such findings)".to_owned()
            } else {
                rules_text.join("; ")
            }
        ),
        format!(
            "Both hosts accept new connections for these buckets: each of their clients gets two answers and its connection breaks. nlb releases a bucket before another host claims it, so hosts that hear each other never do this: these two do not (a partition, a switch or firewall dropping EtherType 0x88B5 between them, IGMP snooping without a querier in IGMP mode, or different cluster keys; `nlb query` on each shows its members and dropped heartbeats). Restore the path between {a_mac} and {b_mac}, or stop one of them (`nlb stop`) until it is back. Heartbeats are believed as far as the doctor could check them: given the cluster key (--key-file) it verified every one; without it, anyone on the segment can send heartbeats in these hosts' names, so confirm with `nlb query` on both hosts before acting."
        ),
        json!({
            "cluster_id": cluster_id,
            "hosts": hosts.iter().map(|(id, mac)| json!({"host_id": id, "mac": mac})).collect::<Vec<_>>(),
            "rules": rules.iter().map(|r| json!({
                "slot": r.slot,
                "rule": rule_name(r.slot, r.rules),
                "bucket_count": r.buckets.bucket_count(),
                "buckets": r.buckets.ranges_text(),
                "buckets_owned_twice": r.buckets.len(),
            })).collect::<Vec<_>>(),
        })
        .into(),
    )
}

/// The buckets nlb puts a client's flows in under each affinity (the wire does not say
/// the rule's): one for single, one for network, one per client port for none.
struct FlowBuckets {
    single: u16,
    network: u16,
    none: Vec<(u16, u16)>,
}

impl FlowBuckets {
    fn all(&self) -> impl Iterator<Item = u16> + '_ {
        [self.single, self.network]
            .into_iter()
            .chain(self.none.iter().map(|&(_, bucket)| bucket))
    }
}

/// nlb's buckets for flows from `client` to `vip:port`, if an nlb cluster with that VIP
/// was heard on the VLAN: its cluster id is the hash seed.
fn flow_buckets(
    model: &Model,
    vlan: Option<Vlan>,
    vip: Option<std::net::Ipv4Addr>,
    client: std::net::Ipv4Addr,
    port: u16,
    ports: &[u16],
) -> Option<FlowBuckets> {
    use nlb_core::config::{Affinity, Protocol};
    use nlb_core::filter::Flow;
    let vip = vip?;
    let seed = model
        .clusters
        .iter()
        .find_map(|(key, cluster)| match *key {
            ClusterKey::Nlb {
                cluster_id,
                vlan: on,
            } if cluster.cluster_ip == Some(vip) && on == vlan => Some(cluster_id),
            _ => None,
        })?;
    let flow = |src_port| Flow {
        src: client,
        src_port,
        dst: vip,
        dst_port: port,
        // The hash reads addresses and ports only.
        protocol: Protocol::Tcp,
    };
    let any = flow(0);
    Some(FlowBuckets {
        single: Affinity::Single.bucket(&any, seed),
        network: Affinity::Network.bucket(&any, seed),
        none: ports
            .iter()
            .map(|&p| (p, Affinity::None.bucket(&flow(p), seed)))
            .collect(),
    })
}

fn double_answer(acc: &Record, ip: &str, vlan: &str, model: &Model) -> (String, String, Details) {
    let (protocol, port, client, macs) = match acc.subject {
        Subject::Answer {
            protocol,
            port,
            client,
            macs,
        } => (protocol, port, client, macs),
        _ => return Default::default(),
    };
    let answers = match acc.evidence {
        Evidence::Answers(answers) => answers,
        _ => Default::default(),
    };
    let ports = model
        .answered_ports
        .get(&acc.side_key())
        .cloned()
        .unwrap_or_default();
    let proto = if protocol == 6 { "tcp" } else { "udp" };
    let hosts = macs.map(|mac| (mac, model.host_macs.get(&mac).copied()));
    let who = |(mac, host): &(MacAddr, Option<(ClusterKey, u32)>)| match host {
        Some((_, id)) => format!("{mac} (host {id})"),
        None => mac.to_string(),
    };
    let buckets = flow_buckets(model, acc.vlan, acc.ip, client, port, &ports);
    // The buckets the same two hosts claim at once in heartbeats, if they did.
    let claimed_twice = match hosts {
        [(a, Some((cluster, a_id))), (b, Some((other, b_id)))] if cluster == other => {
            let id = |id: u32| u8::try_from(id).unwrap_or(u8::MAX);
            let mut pair = [(id(a_id), a), (id(b_id), b)];
            pair.sort();
            let key = (
                cluster.vlan(),
                None,
                Subject::OwnerPair {
                    cluster,
                    hosts: pair,
                },
            );
            model.overlaps.get(&key)
        }
        _ => None,
    };
    let in_overlap = |bucket: u16| {
        claimed_twice
            .into_iter()
            .flatten()
            .filter(|r| r.buckets.contains(bucket))
            .map(|r| rule_name(r.slot, r.rules))
            .collect::<Vec<_>>()
    };
    let mut bucket_text = String::new();
    if let Some(b) = &buckets {
        let none: Vec<String> = b
            .none
            .iter()
            .map(|(port, bucket)| format!("{bucket} (client port {port})"))
            .collect();
        bucket_text = format!(
            " Their buckets (nlb's hash, seeded with the cluster id; the rule's affinity is not on the wire): {} with affinity single, {} with network, {} with none.",
            b.single,
            b.network,
            none.join(", ")
        );
        if claimed_twice.is_some() {
            let all = b.all().all(|bucket| !in_overlap(bucket).is_empty());
            bucket_text.push_str(if all {
                " The two hosts' heartbeats claim every one of them at once (nlb_double_ownership)."
            } else {
                " The two hosts' heartbeats claim some of them at once (nlb_double_ownership)."
            });
        }
    }
    let evidence: Vec<String> = [
        (
            answers.syn_acks,
            "SYN-ACK answered a SYN the other MAC answered too",
            "SYN-ACKs answered SYNs the other MAC answered too",
        ),
        (
            answers.segments,
            "TCP segment alternated between the two MACs",
            "TCP segments alternated between the two MACs",
        ),
        (
            answers.datagrams,
            "UDP datagram alternated between the two MACs",
            "UDP datagrams alternated between the two MACs",
        ),
    ]
    .into_iter()
    .filter(|(count, ..)| *count > 0)
    .map(|(count, one, many)| n(count, one, many))
    .collect();
    let ports_text = ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let bucket_json =
        |bucket: u16| json!({"bucket": bucket, "claimed_twice_in": in_overlap(bucket)});
    (
        format!(
            "{ip}:{port}/{proto}{vlan} answered client {client} (ports {ports_text}) from two MACs, {} and {}: {}.{bucket_text}",
            who(&hosts[0]),
            who(&hosts[1]),
            evidence.join("; ")
        ),
        format!(
            "Two hosts accept this client's flows: the client keeps one answer and the other host resets or confuses the connection. With nlb, look for an nlb_double_ownership finding (hosts that cannot hear each other each own every bucket). Otherwise two servers hold {ip} and both receive its frames (a shared or multicast MAC, a flooding switch): find {} and {} and leave {ip} on one of them, or put them in one cluster. Data frames carry no authentication: anyone on the segment can send frames from {ip} with these source MACs, so confirm on the hosts (`ss -tn` for the client) before acting.",
            macs[0], macs[1]
        ),
        json!({
            "vip": ip,
            "port": port,
            "protocol": proto,
            "client": client,
            "client_ports": ports,
            "macs": hosts.iter().map(|(mac, host)| json!({
                "mac": mac,
                "host_id": host.map(|(_, id)| id),
                "cluster_id": host.and_then(|(key, _)| match key {
                    ClusterKey::Nlb { cluster_id, .. } => Some(format!("{cluster_id:08x}")),
                    ClusterKey::Windows { .. } => None,
                }),
            })).collect::<Vec<_>>(),
            "syn_acks_answered_twice": answers.syn_acks,
            "segments_alternating": answers.segments,
            "datagrams_alternating": answers.datagrams,
            "buckets": buckets.as_ref().map(|b| json!({
                "note": "the rule's affinity is not on the wire: the bucket under each",
                "affinity_single": bucket_json(b.single),
                "affinity_network": bucket_json(b.network),
                "affinity_none": b.none.iter().map(|&(port, bucket)| {
                    let mut entry = bucket_json(bucket);
                    entry["client_port"] = json!(port);
                    entry
                }).collect::<Vec<_>>(),
            })),
        })
        .into(),
    )
}

fn corruption(acc: &Record, ip: &str, vlan: &str) -> (String, String, Details) {
    let facts = match acc.evidence {
        Evidence::Corruption(facts) => facts,
        _ => Default::default(),
    };
    let (station, copies) = match acc.macs.split_first() {
        Some((station, copies)) => (station.to_string(), copies),
        None => (String::new(), &[][..]),
    };
    let at = if ip.is_empty() {
        String::new()
    } else {
        format!(" ({ip})")
    };
    let seen: Vec<String> = [
        (
            facts.sender_mac,
            "ARP frame carries",
            "ARP frames carry",
            "a damaged copy of its MAC as the ARP sender",
        ),
        (
            facts.source_mac,
            "ARP frame has",
            "ARP frames have",
            "a damaged copy as the Ethernet source",
        ),
        (
            facts.sender_ip,
            "ARP frame carries",
            "ARP frames carry",
            "a damaged copy of its address as the sender IP",
        ),
        (
            facts.malformed,
            "frame",
            "frames",
            "from its MAC are malformed",
        ),
    ]
    .into_iter()
    .filter(|(count, ..)| *count > 0)
    .map(|(count, one, many, what)| format!("{} {what}", n(count, one, many)))
    .collect();
    let copies_text = if copies.is_empty() {
        String::new()
    } else {
        format!(
            " The damaged copies ({}{}) differ from {station} in one or two bytes: they are bit errors, not {}{} other devices, so they are not counted as claims of any address (no duplicate_ip or ip_mac_flap from them){}.",
            list(copies),
            if facts.copies as usize > copies.len() {
                ", ..."
            } else {
                ""
            },
            if facts.copies as usize >= MAX_COPIES {
                "at least "
            } else {
                ""
            },
            facts.copies,
            if facts.mismatches_absorbed > 0 {
                format!(
                    ", and the {} they made are not listed separately",
                    n(
                        facts.mismatches_absorbed,
                        "sender_mac_mismatch finding",
                        "sender_mac_mismatch findings"
                    )
                )
            } else {
                String::new()
            }
        )
    };
    (
        format!(
            "Frames from station {station}{at}{vlan} arrive damaged: {}.{copies_text}",
            seen.join("; ")
        ),
        format!(
            "Something between {station}'s stack and this capture corrupts its frames. Suspect, in order: its NIC and driver or firmware (a known Broadcom bug did exactly this), the NIC's offloads (test with `ethtool -K <interface> tx off rx off sg off tso off gso off`), the cable, and the switch port (its error counters). Capture on another port, or on the station itself, to tell which: damage seen everywhere comes from the station, damage on one path from that path."
        ),
        json!({
            "station": acc.macs.first(),
            "station_ip": acc.ip,
            "damaged_copies": copies,
            "distinct_damaged_copies": facts.copies,
            "damaged_sender_mac": facts.sender_mac,
            "damaged_source_mac": facts.source_mac,
            "damaged_sender_ip": facts.sender_ip,
            "malformed_from_station": facts.malformed,
            "sender_mac_mismatch_findings_absorbed": facts.mismatches_absorbed,
        })
        .into(),
    )
}

fn inconsistent(ip: &str, vlan: &str, cluster: &ClusterSeen) -> (String, String, Details) {
    let mut differing: Vec<String> = Vec::new();
    let hosts = &cluster.hosts;
    if let Some(first) = hosts.values().find(|h| h.field_digests.is_some()) {
        let reference = first.field_digests.as_deref().unwrap_or_default();
        for host in hosts.values() {
            if let Some(digests) = &host.field_digests {
                for (index, (a, b)) in reference.iter().zip(digests).enumerate() {
                    let name = nlb_core::config::field_name(index);
                    if a != b && !differing.contains(&name) {
                        differing.push(name);
                    }
                }
            }
        }
    }
    if let Some(first) = hosts.values().find(|h| h.rule_codes.is_some()) {
        let reference = first.rule_codes.as_deref().unwrap_or_default();
        for host in hosts.values() {
            if let Some(codes) = &host.rule_codes {
                if codes.len() != reference.len() {
                    let text = "the number of port rules".to_owned();
                    if !differing.contains(&text) {
                        differing.push(text);
                    }
                }
                for (index, (a, b)) in reference.iter().zip(codes).enumerate() {
                    let text = format!("port rule {}", index + 1);
                    if a != b && !differing.contains(&text) {
                        differing.push(text);
                    }
                }
            }
        }
    }
    let per_host: Vec<Value> = hosts
        .iter()
        .map(|(id, h)| {
            json!({"host_id": id, "fingerprint": h.fingerprint.map(|f| format!("{f:016x}")),
                   "rule_count": h.rule_count, "rule_codes": h.rule_codes})
        })
        .collect();
    (
        format!(
            "The hosts of cluster {ip}{vlan} disagree on their configuration: {}.",
            if differing.is_empty() {
                "the configuration fingerprints differ".to_owned()
            } else {
                differing.join(", ")
            }
        ),
        "Hosts with different rules each balance by their own rules: some connections are served twice, others never. Copy one configuration to every host (nlb: the same nlb.toml apart from [host]; Windows NLB: the same port rules), then reload.".to_owned(),
        json!({"differing": differing, "hosts": per_host}).into(),
    )
}

/// The summary of one cluster (`nlb_cluster`).
pub(crate) fn cluster(key: ClusterKey, cluster: &ClusterSeen, model: &Model) -> Finding {
    let (message, advice, details) = cluster_words(key, cluster, model);
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
        vlan: key.vlan().map(|v| v.outer),
        inner_vlan: key.vlan().and_then(|v| v.inner),
        message,
        advice,
        first_seen_s: model.seconds(cluster.first_ts),
        last_seen_s: model.seconds(cluster.last_ts),
        details,
    }
}

/// The message, advice and details of a cluster summary.
fn cluster_words(
    key: ClusterKey,
    cluster: &ClusterSeen,
    model: &Model,
) -> (String, String, Details) {
    let (windows, cluster_id) = match key {
        ClusterKey::Windows { .. } => (true, None),
        ClusterKey::Nlb { cluster_id, .. } => (false, Some(cluster_id)),
    };
    let mode = cluster.mode().name();
    let hosts = &cluster.hosts;
    let kind = if windows { "Windows NLB" } else { "nlb" };
    let ip = cluster
        .cluster_ip
        .map_or_else(|| "(cluster IP not seen)".to_owned(), |ip| ip.to_string());
    let vlan = on_vlan(key.vlan());
    let hosts_text: Vec<String> = hosts
        .iter()
        .map(|(id, host)| {
            let mut text = format!("host {id}");
            if let Some(ip) = host.dedicated_ip {
                text.push_str(&format!(" {ip}"));
            }
            if !host.macs.is_empty() {
                text.push_str(&format!(" ({})", list(&host.macs)));
            }
            if let Some(state) = host.state {
                text.push_str(&format!(" {state}"));
            }
            if !windows && host.silent_at(model.last_ts) {
                let since = model.seconds(host.last_ts);
                text.push_str(&format!(", silent since {since:.3} s"));
            }
            text
        })
        .collect();
    let periods: Vec<f64> = hosts.values().filter_map(|h| h.period_ms()).collect();
    let period = (!periods.is_empty()).then(|| periods.iter().sum::<f64>() / periods.len() as f64);
    let convergence = if windows {
        let codes: Vec<String> = hosts
            .iter()
            .filter_map(|(id, h)| h.convergence_state.map(|c| format!("host {id}: {c}")))
            .collect();
        if codes.is_empty() {
            "unknown (heartbeats cut short)".to_owned()
        } else {
            format!("state codes {}", codes.join(", "))
        }
    } else {
        // What the hosts still heard at the end say; a silent host's last word is old.
        let heard = || hosts.values().filter(|h| !h.silent_at(model.last_ts));
        let views: Vec<(u32, u64)> = heard().filter_map(|h| h.view).collect();
        let agreed = views.windows(2).all(|w| w[0] == w[1]);
        let settled = heard().all(|h| h.owned_equals_target);
        match (agreed, settled) {
            (true, true) => {
                "converged (every host in one view, every bucket owned as assigned)".to_owned()
            }
            (true, false) => "converging (one view, buckets still moving)".to_owned(),
            _ => "converging (hosts in different views)".to_owned(),
        }
    };
    let period_text = period.map_or_else(
        || "unknown (one heartbeat per host)".to_owned(),
        |p| format!("{p:.0} ms"),
    );
    let message = format!(
        "{kind} cluster {ip}{vlan}: {mode} mode, {} host{} ({}), heartbeat period {period_text}, {convergence}.",
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" },
        hosts_text.join("; "),
    );
    let advice = match cluster.mode() {
        Mode::UnicastWithMasking => {
            "Unicast mode: every host shares the cluster MAC, so the switch floods all cluster traffic to every port of the VLAN. Keep the cluster on its own VLAN, or prefer IGMP multicast mode."
        }
        Mode::Unicast => {
            "Unicast mode without masking: check for cluster_mac_as_source findings; a switch that learns the cluster MAC breaks the cluster."
        }
        Mode::Multicast => {
            "Multicast mode: routers must accept a unicast IP with a multicast MAC (some need a static ARP entry); traffic floods the VLAN."
        }
        Mode::Igmp => {
            "IGMP mode: check that every host reports the group (no igmp_missing finding) and that the VLAN has a querier."
        }
        Mode::Unknown => {
            "No ARP for the cluster IP in the capture, so the mode is unknown; capture while a client resolves the cluster IP."
        }
    };
    let details = json!({
        "implementation": kind,
        "cluster_ip": cluster.cluster_ip,
        "cluster_id": cluster_id.map(|id| format!("{id:08x}")),
        "mode": mode,
        "heartbeat_period_ms": period,
        "convergence": convergence,
        "version": cluster.version.map(|(a, b)| format!("{a}.{b}")),
        "heartbeats_cut_short": cluster.truncated,
        "hosts": hosts.iter().map(|(id, h)| json!({
            "id": id,
            "dedicated_ip": h.dedicated_ip,
            "macs": h.macs,
            "state": h.state,
            "silent_at_end": (!windows).then(|| h.silent_at(model.last_ts)),
            "heartbeats": h.heartbeats,
            "owned_buckets": (!windows).then_some(h.owned_buckets),
            "convergence_state": h.convergence_state,
            "port_rules": h.rule_count,
        })).collect::<Vec<_>>(),
    });
    (message, advice.to_owned(), details.into())
}

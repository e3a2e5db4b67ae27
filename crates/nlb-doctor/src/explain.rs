//! Plain words for each finding: what was seen, why it matters, and what to do. Kept apart
//! from the analysis so the wording can change without touching the rules.
//!
//! The contract: everything here reads the [`model`](crate::model) only (a [`Record`] and
//! the [`Model`] it belongs to) and turns it into a [`Finding`]; it never sees frames and
//! never imports the analyzer. The `details` JSON of each kind is chosen here: typed
//! [`Facts`] for the kinds a sick network makes by the thousand (written straight to the
//! report), a `json!` value for the rare ones.

use crate::finding::{Details, Facts, Finding, Kind, MacText, Severity};
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
        let _ = write!(text, "{comma}{}", MacText::new(*mac));
    }
    text
}

fn on_vlan(vlan: Option<Vlan>) -> String {
    vlan.map(|v| format!(" on VLAN {v}")).unwrap_or_default()
}

fn ip_text(ip: Option<std::net::Ipv4Addr>) -> String {
    ip.map(|ip| ip.to_string()).unwrap_or_default()
}

/// One accumulated record as a finding.
pub(crate) fn finding(record: &Record, model: &Model) -> Finding {
    // A cluster's findings are keyed by the cluster, whose IP may be learnt later.
    let ip = match record.subject {
        Subject::Cluster(key) | Subject::ClusterHost { cluster: key, .. } => {
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
            let mut askers = String::with_capacity(acc.peers.len() * 40);
            for (i, (ip, mac, n)) in acc.peers.iter().enumerate() {
                let comma = if i == 0 { "" } else { ", " };
                let mac = MacText::new(*mac);
                let _ = write!(askers, "{comma}{ip} ({mac}) {n}×");
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
        Kind::NlbCluster => Default::default(),
    }
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
    let (message, advice, details) = cluster_words(key, cluster);
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
fn cluster_words(key: ClusterKey, cluster: &ClusterSeen) -> (String, String, Details) {
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
        let views: Vec<(u32, u64)> = hosts.values().filter_map(|h| h.view).collect();
        let agreed = views.windows(2).all(|w| w[0] == w[1]);
        let settled = hosts.values().all(|h| h.owned_equals_target);
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
            "heartbeats": h.heartbeats,
            "owned_buckets": (!windows).then_some(h.owned_buckets),
            "convergence_state": h.convergence_state,
            "port_rules": h.rule_count,
        })).collect::<Vec<_>>(),
    });
    (message, advice.to_owned(), details.into())
}

//! The doctor against real captures: the shared ones (`../shared/captures`, from tcpdump's
//! test suite) and the fixtures made by real stacks in network namespaces
//! (`tests/fixtures`, see `make-fixtures.sh` and `EXPECTED.md`): the Linux kernel,
//! iputils arping, the nlb daemon, and scapy for what no stack sends on purpose.

use nlb_doctor::{Finding, Kind, Report, Settings, Severity, diagnose};
use nlb_wire::MacAddr;
use std::net::Ipv4Addr;
use std::path::PathBuf;

fn shared(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/captures")
        .join(name)
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn doctor_with(path: PathBuf, settings: Settings) -> Report {
    let file = std::fs::File::open(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    diagnose(file, Some(path.display().to_string()), settings, |_| {}).unwrap()
}

fn doctor(path: PathBuf) -> Report {
    doctor_with(path, Settings::default())
}

fn ip(text: &str) -> Option<Ipv4Addr> {
    Some(text.parse().unwrap())
}

fn mac(text: &str) -> MacAddr {
    text.parse().unwrap()
}

fn only<'a>(report: &'a Report, kind: Kind, at: &str) -> &'a Finding {
    let found: Vec<&Finding> = report.of_kind(kind).filter(|f| f.ip == ip(at)).collect();
    assert_eq!(
        found.len(),
        1,
        "one {} for {at} expected, got {found:#?}\nall: {:#?}",
        kind.name(),
        report.findings
    );
    found[0]
}

fn kinds(report: &Report) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = report.findings.iter().map(|f| f.kind).collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

#[test]
fn windows_nlb_unicast_cluster_from_msnlb_pcap() {
    let report = doctor(shared("msnlb.pcap"));
    let cluster = only(&report, Kind::NlbCluster, "192.168.100.80");
    assert_eq!(cluster.details["implementation"], "Windows NLB");
    assert_eq!(cluster.details["mode"], "unicast with masking");
    let hosts = cluster.details["hosts"].as_array().unwrap();
    let summary: Vec<(u64, &str, &str)> = hosts
        .iter()
        .map(|h| {
            (
                h["id"].as_u64().unwrap(),
                h["dedicated_ip"].as_str().unwrap(),
                h["macs"][0].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "192.168.100.81", "02:01:c0:a8:64:50"),
            (2, "192.168.100.82", "02:02:c0:a8:64:50")
        ]
    );
    assert!(cluster.message.contains("unicast with masking"));
    assert_eq!(report.capture.frames, 2);
    // The frames are cut at 96 of 1510 bytes: counted, and the summary says so.
    assert_eq!(report.capture.counters.cut, 2);
    assert_eq!(cluster.details["heartbeats_cut_short"], true);
}

#[test]
fn arp_oobr_unanswered_gateway_and_malformed_counts() {
    let report = doctor(shared("arp-oobr.pcap"));
    assert_eq!(report.capture.frames, 2282);
    let unanswered = only(&report, Kind::UnansweredRequest, "192.168.1.1");
    let askers = unanswered.details["askers"].as_array().unwrap();
    let top = &askers[0];
    assert_eq!(top["ip"], "192.168.1.104");
    assert_eq!(top["mac"], "00:1f:29:da:2d:79");
    assert!(top["requests"].as_u64().unwrap() > 1000, "{top}");
    assert!(unanswered.message.contains("192.168.1.104"));
    assert!(unanswered.details["longest_wait_s"].as_f64().unwrap() > 3600.0);
    assert_eq!(unanswered.first_frame, 1);
    let malformed: Vec<&Finding> = report.of_kind(Kind::Malformed).collect();
    let total: u64 = malformed.iter().map(|f| f.count).sum();
    assert_eq!(total, report.capture.counters.malformed);
    assert!(total > 300, "the fuzzed frames are counted: {total}");
    let reasons: Vec<&str> = malformed
        .iter()
        .map(|f| f.details["reason"].as_str().unwrap())
        .collect();
    for expected in [
        "ARP hardware type is not Ethernet",
        "ARP protocol type is not IPv4",
        "ARP operation is neither request nor reply",
        "ARP hardware address length is not 6",
        "ARP protocol address length is not 4",
    ] {
        assert!(reasons.contains(&expected), "{expected} in {reasons:?}");
    }
}

/// Whether two MACs differ in one or two of their six bytes (one is a damaged copy of
/// the other).
fn close(a: MacAddr, b: MacAddr) -> bool {
    let differ = a.0.iter().zip(b.0).filter(|(x, y)| **x != *y).count();
    (1..=2).contains(&differ)
}

/// No duplicate_ip finding lists two MACs of which one is a damaged copy of the other
/// unless both send consistent frames (checked by the callers' expectations).
fn no_damaged_claimants(report: &Report) {
    for duplicate in report.of_kind(Kind::DuplicateIp) {
        let station = duplicate.macs.iter().find(|m| {
            report
                .of_kind(Kind::FrameCorruption)
                .any(|c| c.macs.first() == Some(*m))
        });
        if let Some(station) = station {
            assert!(
                duplicate
                    .macs
                    .iter()
                    .all(|m| m == station || !close(*m, *station)),
                "a duplicate_ip lists damaged copies of {station}: {duplicate:#?}"
            );
        }
    }
}

#[test]
fn arp_oobr_leads_with_the_station_whose_frames_arrive_damaged() {
    let report = doctor(shared("arp-oobr.pcap"));
    let first = &report.findings[0];
    assert_eq!(first.kind, Kind::FrameCorruption, "{first:#?}");
    assert_eq!(first.severity, Severity::Error);
    assert_eq!(first.macs[0], mac("00:1f:29:da:2d:79"));
    assert_eq!(first.ip, ip("192.168.1.104"));
    assert_eq!(first.details["station"], "00:1f:29:da:2d:79");
    assert!(first.details["distinct_damaged_copies"].as_u64().unwrap() >= 15);
    assert!(first.details["malformed_from_station"].as_u64().unwrap() > 200);
    assert!(first.message.contains("bit errors"), "{}", first.message);
    assert!(first.advice.contains("NIC"), "{}", first.advice);
    // Its damaged copies claim nothing: no duplicate or flap for its address, and the
    // 347 mismatch findings they made are folded into it.
    assert!(
        report
            .of_kind(Kind::DuplicateIp)
            .all(|f| f.ip != ip("192.168.1.104"))
    );
    assert!(
        report
            .of_kind(Kind::IpMacFlap)
            .all(|f| f.ip != ip("192.168.1.104"))
    );
    assert!(report.of_kind(Kind::SenderMacMismatch).count() < 10);
    no_damaged_claimants(&report);
    // The other stations of the capture that show damage are named too.
    assert!(report.of_kind(Kind::FrameCorruption).count() > 1);
}

#[test]
fn a_single_malformed_frame_on_a_qinq_vlan() {
    let report = doctor(shared("arp-too-long-tha.pcap"));
    let malformed: Vec<&Finding> = report.of_kind(Kind::Malformed).collect();
    assert_eq!(malformed.len(), 1);
    assert_eq!(malformed[0].vlan, Some(48));
    assert_eq!(malformed[0].first_frame, 1);
}

#[test]
fn pcapng_heartbeats_cut_before_their_header_ends() {
    let report = doctor(shared("msnlb2.pcapng"));
    assert_eq!(report.capture.link_types, vec!["EN10MB"]);
    let malformed: Vec<&Finding> = report.of_kind(Kind::Malformed).collect();
    assert_eq!(malformed.len(), 1);
    assert_eq!(malformed[0].count, 2);
    assert_eq!(malformed[0].severity, Severity::Info);
    assert!(malformed[0].advice.contains("snap length"));
}

#[test]
fn igmpv2_reports_and_queries_are_nothing_wrong() {
    let report = doctor(shared("IGMP_V2.pcap"));
    assert_eq!(report.capture.counters.igmp, 18);
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
}

#[test]
fn a_capture_cut_inside_a_record_keeps_what_came_before() {
    let bytes = std::fs::read(shared("arp-oobr.pcap")).unwrap();
    let cut = &bytes[..bytes.len() - 20];
    let report = diagnose(cut, None, Settings::default(), |_| {}).unwrap();
    assert_eq!(report.capture.frames, 2281);
    assert!(report.capture.end.contains("truncated"));
    assert!(
        report
            .of_kind(Kind::Malformed)
            .any(|f| f.message.contains("ends inside a record"))
    );
}

// Fixtures made by real stacks (see tests/fixtures/EXPECTED.md).

#[test]
fn duplicate_ip_from_two_kernels_answering_one_address() {
    let report = doctor(fixture("arp-duplicate-ip.pcap"));
    let duplicate = only(&report, Kind::DuplicateIp, "198.18.0.20");
    assert_eq!(duplicate.severity, Severity::Error);
    let mut macs = duplicate.macs.clone();
    macs.sort();
    assert_eq!(
        macs,
        vec![mac("52:54:00:00:00:01"), mac("52:54:00:00:00:02")]
    );
}

#[test]
fn unanswered_request_from_the_kernel_pinging_a_missing_host() {
    let report = doctor(fixture("arp-unanswered.pcap"));
    let unanswered = only(&report, Kind::UnansweredRequest, "198.18.0.250");
    assert_eq!(unanswered.first_frame, 1);
    assert!(unanswered.count >= 3, "{unanswered:#?}");
    assert_eq!(unanswered.details["askers"][0]["ip"], "198.18.0.100");
    assert_eq!(kinds(&report), vec![Kind::UnansweredRequest]);
}

#[test]
fn unexpected_reply_but_not_for_a_gratuitous_one() {
    let report = doctor(fixture("arp-unexpected-reply.pcap"));
    let unexpected: Vec<Option<Ipv4Addr>> = report
        .of_kind(Kind::UnexpectedReply)
        .map(|f| f.ip)
        .collect();
    assert!(unexpected.contains(&ip("198.18.0.5")), "{unexpected:?}");
    assert!(!unexpected.contains(&ip("198.18.0.6")), "{unexpected:?}");
    assert!(
        report
            .of_kind(Kind::GratuitousArp)
            .any(|f| f.ip == ip("198.18.0.6"))
    );
}

#[test]
fn ip_mac_flap_when_an_address_moves_back() {
    let report = doctor(fixture("arp-ip-mac-flap.pcap"));
    let flap = only(&report, Kind::IpMacFlap, "198.18.0.30");
    assert_eq!(flap.macs.len(), 2);
}

#[test]
fn request_storm_from_one_source_only() {
    let report = doctor(fixture("arp-request-storm.pcap"));
    let storms: Vec<&Finding> = report.of_kind(Kind::RequestStorm).collect();
    assert_eq!(storms.len(), 1, "{storms:#?}");
    assert_eq!(storms[0].macs, vec![mac("52:54:00:00:00:42")]);
    // The slow source is not a storm, and the storm's targets are not listed one by one.
    assert!(
        report
            .of_kind(Kind::UnansweredRequest)
            .all(|f| f.macs != vec![mac("52:54:00:00:00:42")])
    );
}

#[test]
fn gratuitous_arp_classified_from_arping() {
    let report = doctor(fixture("arp-gratuitous.pcap"));
    let classes: Vec<(Option<Ipv4Addr>, String)> = report
        .of_kind(Kind::GratuitousArp)
        .map(|f| {
            (
                f.ip,
                f.details["classification"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(classes.contains(&(ip("198.18.0.1"), "gratuitous_request".to_owned())));
    assert!(classes.contains(&(ip("198.18.0.2"), "gratuitous_reply_strict".to_owned())));
    assert!(report.of_kind(Kind::DuplicateIp).next().is_none());
}

#[test]
fn arp_probes_from_arping_d() {
    let report = doctor(fixture("arp-probe.pcap"));
    let probe = only(&report, Kind::ArpProbe, "198.18.0.50");
    assert_eq!(probe.count, 3);
    assert_eq!(kinds(&report), vec![Kind::ArpProbe]);
}

#[test]
fn probe_conflicts_defended_and_simultaneous() {
    let report = doctor(fixture("arp-probe-conflict.pcap"));
    let taken = only(&report, Kind::ProbeConflict, "198.18.0.1");
    assert_eq!(taken.details["conflict"], "defended");
    let both = only(&report, Kind::ProbeConflict, "198.18.0.51");
    assert_eq!(both.details["conflict"], "two probers");
    // Probes are not claims: no duplicate_ip from them.
    assert!(report.of_kind(Kind::DuplicateIp).next().is_none());
}

#[test]
fn sender_mac_mismatch_generic_and_windows_masking() {
    let report = doctor(fixture("arp-sender-mac-mismatch.pcap"));
    let generic = only(&report, Kind::SenderMacMismatch, "198.18.0.1");
    assert_eq!(generic.severity, Severity::Warning);
    assert!(generic.details.get("pattern").is_none());

    let report = doctor(fixture("msnlb-unicast-masking.pcap"));
    let masked: Vec<&Finding> = report.of_kind(Kind::SenderMacMismatch).collect();
    assert!(!masked.is_empty());
    for finding in masked {
        assert_eq!(finding.details["pattern"], "nlb_unicast_masking");
        assert_eq!(finding.details["arp_sender"], "02:bf:c6:12:00:0a");
        assert!(finding.advice.contains("Ethernet source"));
    }
}

#[test]
fn cluster_mac_as_source_for_unicast_and_multicast_cluster_macs() {
    let report = doctor(fixture("cluster-mac-as-source.pcap"));
    let unicast = only(&report, Kind::ClusterMacAsSource, "198.18.0.10");
    assert_eq!(unicast.macs, vec![mac("02:bf:c6:12:00:0a")]);
    let multicast = only(&report, Kind::ClusterMacAsSource, "198.18.0.11");
    assert_eq!(multicast.macs, vec![mac("03:bf:c6:12:00:0b")]);
    assert!(unicast.advice.contains("Q258609"));
}

#[test]
fn nlb_clusters_in_every_mode_are_summarised_without_false_alarms() {
    for (file, mode, hosts) in [
        ("nlb-unicast.pcap", "unicast", 3),
        ("nlb-multicast.pcap", "multicast", 3),
        ("nlb-igmp.pcap", "igmp multicast", 2),
        ("nlb-igmpv2.pcap", "igmp multicast", 2),
    ] {
        let report = doctor(fixture(file));
        let cluster = only(&report, Kind::NlbCluster, "198.18.0.10");
        assert_eq!(cluster.details["implementation"], "nlb", "{file}");
        assert_eq!(cluster.details["mode"], mode, "{file}");
        assert_eq!(
            cluster.details["hosts"].as_array().unwrap().len(),
            hosts,
            "{file}"
        );
        assert_eq!(cluster.details["heartbeat_period_ms"], 100.0, "{file}");
        // A healthy nlb cluster: every host probes and announces the VIP with the cluster
        // MAC, which is neither a conflict nor a warning.
        let alarms: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.severity != Severity::Info)
            .collect();
        assert!(alarms.is_empty(), "{file}: {alarms:#?}");
    }
}

#[test]
fn nlb_duplicate_host_id_from_two_daemons_with_one_id() {
    let report = doctor(fixture("nlb-duplicate-host-id.pcap"));
    let duplicate = only(&report, Kind::NlbDuplicateHostId, "198.18.0.10");
    assert_eq!(duplicate.details["host_id"], 1);
    assert_eq!(duplicate.macs.len(), 2);
}

#[test]
fn nlb_inconsistent_rules_name_the_rule() {
    let report = doctor(fixture("nlb-inconsistent-rules.pcap"));
    let inconsistent = only(&report, Kind::NlbInconsistentRules, "198.18.0.10");
    assert_eq!(inconsistent.details["differing"][0], "[[rule]] number 1");
}

#[test]
fn igmp_missing_when_nobody_reports_and_not_when_they_do() {
    let report = doctor(fixture("igmp-missing.pcap"));
    let missing = only(&report, Kind::IgmpMissing, "239.255.0.10");
    assert_eq!(missing.macs, vec![mac("01:00:5e:7f:00:0a")]);
    for file in ["nlb-igmp.pcap", "nlb-igmpv2.pcap"] {
        let report = doctor(fixture(file));
        assert!(report.of_kind(Kind::IgmpMissing).next().is_none(), "{file}");
        assert!(report.capture.counters.igmp > 0, "{file}");
    }
}

#[test]
fn malformed_arp_of_every_sort() {
    let report = doctor(fixture("arp-malformed.pcap"));
    let reasons: Vec<String> = report
        .of_kind(Kind::Malformed)
        .map(|f| f.details["reason"].as_str().unwrap().to_owned())
        .collect();
    for expected in [
        "ARP hardware type is not Ethernet",
        "ARP protocol type is not IPv4",
        "ARP hardware address length is not 6",
        "ARP protocol address length is not 4",
        "ARP operation is neither request nor reply",
    ] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "{expected} in {reasons:?}"
        );
    }
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("too short") || r.contains("snap length")),
        "{reasons:?}"
    );
}

#[test]
fn every_link_type_gives_the_same_findings() {
    let reference = doctor(fixture("linktype-ether.pcapng"));
    assert_eq!(reference.capture.link_types, vec!["EN10MB"]);
    let summarise = |report: &Report| {
        let mut findings: Vec<(Kind, Option<Ipv4Addr>, Vec<MacAddr>)> = report
            .findings
            .iter()
            .map(|f| {
                let mut macs = f.macs.clone();
                macs.sort();
                (f.kind, f.ip, macs)
            })
            .collect();
        findings.sort();
        findings
    };
    assert!(reference.of_kind(Kind::DuplicateIp).next().is_some());
    for (file, link) in [
        ("linktype-sll.pcap", "LINUX_SLL"),
        ("linktype-sll2.pcap", "LINUX_SLL2"),
    ] {
        let report = doctor(fixture(file));
        assert_eq!(report.capture.link_types, vec![link]);
        assert_eq!(summarise(&report), summarise(&reference), "{file}");
    }
}

#[test]
fn findings_are_per_vlan() {
    let report = doctor(fixture("vlan-8021q.pcap"));
    let mut vlans = report.capture.vlans.clone();
    vlans.sort();
    assert_eq!(vlans, vec![10, 20]);
    let duplicates: Vec<&Finding> = report.of_kind(Kind::DuplicateIp).collect();
    assert_eq!(duplicates.len(), 1, "{duplicates:#?}");
    assert_eq!(duplicates[0].vlan, Some(10));
    assert_eq!(duplicates[0].ip, ip("198.18.0.40"));
}

#[test]
fn a_corrupted_nic_is_one_station_not_many_devices() {
    for file in [
        "arp-corrupted-nic.pcap",
        "arp-corrupted-nic-and-duplicates.pcap",
    ] {
        let report = doctor(fixture(file));
        let first = &report.findings[0];
        assert_eq!(first.kind, Kind::FrameCorruption, "{file}: {first:#?}");
        assert_eq!(first.macs[0], mac("52:54:00:00:00:01"), "{file}");
        assert_eq!(first.ip, ip("198.18.0.1"), "{file}");
        assert!(
            first.details["distinct_damaged_copies"].as_u64().unwrap() >= 3,
            "{file}: {first:#?}"
        );
        assert!(
            report.of_kind(Kind::FrameCorruption).count() == 1,
            "{file}: {:#?}",
            report.findings
        );
        assert!(
            report
                .findings
                .iter()
                .filter(|f| matches!(f.kind, Kind::DuplicateIp | Kind::IpMacFlap))
                .all(|f| f.ip != ip("198.18.0.1")),
            "{file}: {:#?}",
            report.findings
        );
        assert!(
            report
                .of_kind(Kind::SenderMacMismatch)
                .all(|f| f.ip != ip("198.18.0.1")),
            "{file}: {:#?}",
            report.findings
        );
        no_damaged_claimants(&report);
    }
}

#[test]
fn two_hosts_with_sequential_macs_are_a_real_duplicate() {
    for file in [
        "arp-duplicate-sequential-macs.pcap",
        "arp-corrupted-nic-and-duplicates.pcap",
    ] {
        let report = doctor(fixture(file));
        let duplicate = only(&report, Kind::DuplicateIp, "198.18.0.20");
        let mut macs = duplicate.macs.clone();
        macs.sort();
        assert_eq!(
            macs,
            vec![mac("00:16:3e:00:00:aa"), mac("00:16:3e:00:00:bb")],
            "{file}"
        );
        assert_eq!(report.of_kind(Kind::DuplicateIp).count(), 1, "{file}");
    }
    let report = doctor(fixture("arp-duplicate-sequential-macs.pcap"));
    assert!(report.of_kind(Kind::FrameCorruption).next().is_none());
}

#[test]
fn no_frame_corruption_in_the_other_fixtures() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".pcap") || name.ends_with(".pcapng"))
            || name.starts_with("arp-corrupted-nic")
        {
            continue;
        }
        let report = doctor(path);
        assert!(
            report.of_kind(Kind::FrameCorruption).next().is_none(),
            "{name}: {:#?}",
            report.findings
        );
    }
}

#[test]
fn the_json_has_the_documented_shape() {
    let report = doctor(fixture("arp-duplicate-ip.pcap"));
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    for key in ["frames", "duration", "link_types"] {
        assert!(json["capture"].get(key).is_some(), "capture.{key}");
    }
    let finding = &json["findings"][0];
    for key in [
        "kind",
        "severity",
        "first_frame",
        "last_frame",
        "count",
        "ip",
        "macs",
        "vlan",
        "message",
        "advice",
    ] {
        assert!(finding.get(key).is_some(), "findings[].{key}");
    }
    assert_eq!(finding["kind"], "duplicate_ip");
    assert_eq!(finding["severity"], "error");
}

#[test]
fn html_report_is_self_contained_with_a_timeline() {
    let report = doctor(shared("arp-oobr.pcap"));
    let html = report.to_html();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg"));
    assert!(html.contains("unanswered_request"));
    // The failing station leads the table.
    let first_row = html.find("<code>frame_corruption</code>").unwrap();
    assert!(html.find("<code>unanswered_request</code>").unwrap() > first_row);
    assert!(!html.contains("<script"));
    assert!(!html.contains("src=\"http"));
}

#[test]
fn a_vip_nobody_answers_for_is_an_error_with_cluster_advice() {
    let plain = doctor(fixture("arp-unanswered.pcap"));
    assert_eq!(
        only(&plain, Kind::UnansweredRequest, "198.18.0.250").severity,
        Severity::Warning
    );
    let settings = Settings {
        vips: vec!["198.18.0.250".parse().unwrap()],
        ..Settings::default()
    };
    let report = doctor_with(fixture("arp-unanswered.pcap"), settings);
    let unanswered = only(&report, Kind::UnansweredRequest, "198.18.0.250");
    assert_eq!(unanswered.severity, Severity::Error);
    assert!(
        unanswered.advice.contains("nlb query"),
        "{}",
        unanswered.advice
    );
}

// Double ownership and double answers (EXPECTED.md, "Ownership seen from the wire").

/// Every heartbeat of a capture: (host id, MAC, owned buckets per rule slot).
fn heartbeats(path: PathBuf) -> Vec<(u8, MacAddr, Vec<Vec<u16>>)> {
    use nlb_wire::heartbeat::{HeartbeatPacket, HeartbeatRepr};
    let file = std::fs::File::open(&path).unwrap();
    let mut capture = nlb_doctor::CaptureReader::new(file).unwrap();
    let mut seen = Vec::new();
    while let Some(frame) = capture.next_with(|record| {
        let frame = nlb_doctor::link::decode(&record).ok()?;
        let packet = HeartbeatPacket::new_checked(frame.payload).ok()?;
        let heartbeat = HeartbeatRepr::parse(&packet, None).ok()?;
        let owned = heartbeat
            .rules
            .iter()
            .map(|rule| rule.owned.iter().collect())
            .collect();
        Some((heartbeat.host_id, frame.src?, owned))
    }) {
        seen.extend(frame);
    }
    seen
}

/// (host id, MAC) of each entry of a details list.
fn hosts_and_macs(list: &serde_json::Value) -> Vec<(u64, &str)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|h| (h["host_id"].as_u64().unwrap(), h["mac"].as_str().unwrap()))
        .collect()
}

/// The two daemons of nlb-double-ownership.pcap.
fn partitioned_hosts() -> Vec<(u64, &'static str)> {
    vec![(1, "52:54:00:00:00:01"), (2, "52:54:00:00:00:02")]
}

#[test]
fn two_partitioned_nlb_daemons_own_every_bucket_twice() {
    let report = doctor(fixture("nlb-double-ownership.pcap"));
    let double = only(&report, Kind::NlbDoubleOwnership, "198.18.0.10");
    assert_eq!(double.severity, Severity::Error);
    assert_eq!(
        double.macs,
        vec![mac("52:54:00:00:00:01"), mac("52:54:00:00:00:02")]
    );
    assert_eq!(
        hosts_and_macs(&double.details["hosts"]),
        partitioned_hosts()
    );
    // Each daemon converged alone and owns all 256 buckets of its port 80 rule and of
    // the fallback rule.
    let rules: Vec<(&str, &str)> = double.details["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["rule"].as_str().unwrap(), r["buckets"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rules,
        vec![("rule 1", "0-255"), ("the fallback rule", "0-255")]
    );
    assert_eq!(double.details["cluster_id"], "80e1c931");
    // Seen from the first heartbeats that overlap on, in most of the file's heartbeats.
    let both_converged = heartbeats(fixture("nlb-double-ownership.pcap"))
        .iter()
        .filter(|(_, _, owned)| owned.iter().all(|rule| rule.len() == 256))
        .count() as u64;
    assert!(
        double.count >= both_converged / 2 && double.count < both_converged,
        "{} of {both_converged}",
        double.count
    );
    assert!(
        double
            .message
            .contains("rule 1: 256 of 256 buckets (0-255)")
    );
}

#[test]
fn each_syn_to_two_partitioned_daemons_gets_two_syn_acks() {
    let report = doctor(fixture("nlb-double-ownership.pcap"));
    let answers: Vec<&Finding> = report.of_kind(Kind::DoubleAnswer).collect();
    assert_eq!(answers.len(), 2, "{answers:#?}");
    let answer = *answers
        .iter()
        .find(|f| f.details["protocol"] == "tcp")
        .unwrap();
    assert_eq!(answer.ip, ip("198.18.0.10"));
    assert_eq!(answer.severity, Severity::Error);
    assert_eq!(answer.details["client"], "198.18.0.100");
    assert_eq!(answer.details["port"], 80);
    assert_eq!(answer.details["syn_acks_answered_twice"], 3);
    assert_eq!(hosts_and_macs(&answer.details["macs"]), partitioned_hosts());
    // The buckets, from nlb's own hash with the cluster id of the VIP as seed.
    use nlb_core::config::{Affinity, Protocol};
    use nlb_core::filter::Flow;
    let vip: Ipv4Addr = "198.18.0.10".parse().unwrap();
    let seed = nlb_wire::addressing::cluster_id(&[vip]);
    let ports = answer.details["client_ports"].as_array().unwrap();
    assert_eq!(ports.len(), 3);
    let buckets = &answer.details["buckets"];
    for (index, port) in ports.iter().enumerate() {
        let flow = Flow {
            src: "198.18.0.100".parse().unwrap(),
            src_port: port.as_u64().unwrap() as u16,
            dst: vip,
            dst_port: 80,
            protocol: Protocol::Tcp,
        };
        assert_eq!(
            buckets["affinity_none"][index]["bucket"],
            Affinity::None.bucket(&flow, seed),
            "{buckets}"
        );
        assert_eq!(
            buckets["affinity_single"]["bucket"],
            Affinity::Single.bucket(&flow, seed)
        );
        assert_eq!(
            buckets["affinity_network"]["bucket"],
            Affinity::Network.bucket(&flow, seed)
        );
        // The two hosts' heartbeats claim that bucket at once in both rules.
        assert_eq!(
            buckets["affinity_none"][index]["claimed_twice_in"],
            serde_json::json!(["rule 1", "the fallback rule"])
        );
    }
    assert!(answer.message.contains("claim every one of them at once"));
    // The datagrams of one UDP flow, each echoed by both hosts.
    let udp = *answers
        .iter()
        .find(|f| f.details["protocol"] == "udp")
        .unwrap();
    assert_eq!(udp.details["port"], 5000);
    assert_eq!(udp.details["client_ports"].as_array().unwrap().len(), 1);
    assert_eq!(udp.details["syn_acks_answered_twice"], 0);
    // 3 datagrams, 2 answers each: 4 of the 6 answers alternate when each pair comes in
    // one order (as in the committed file), at least 2 whatever the order.
    let alternating = udp.details["datagrams_alternating"].as_u64().unwrap();
    assert!((2..=4).contains(&alternating), "{alternating}");
    assert_eq!(hosts_and_macs(&udp.details["macs"]), partitioned_hosts());
}

#[test]
fn two_plain_linux_servers_answering_one_syn() {
    let report = doctor(fixture("tcp-two-servers-one-syn.pcap"));
    let answer = only(&report, Kind::DoubleAnswer, "198.18.0.20");
    assert_eq!(
        answer.macs,
        vec![mac("52:54:00:00:00:01"), mac("52:54:00:00:00:02")]
    );
    assert_eq!(answer.details["syn_acks_answered_twice"], 2);
    assert_eq!(answer.details["client_ports"].as_array().unwrap().len(), 2);
    // No nlb here: no host ids, and no bucket the doctor could honestly compute.
    assert!(answer.details["macs"][0]["host_id"].is_null());
    assert!(answer.details["buckets"].is_null());
    assert!(!answer.message.contains("bucket"), "{}", answer.message);
    assert!(report.of_kind(Kind::NlbDoubleOwnership).next().is_none());
}

#[test]
fn hand_offs_in_a_healthy_cluster_are_not_double_ownership() {
    // The file has hand-offs: some bucket of rule 1 is owned by two different hosts at
    // different times (a join, a drainstop and a crash).
    let seen = heartbeats(fixture("nlb-handoffs.pcap"));
    let moved = (0..256u16).any(|bucket| {
        let mut owners: Vec<u8> = seen
            .iter()
            .filter(|(_, _, owned)| owned.first().is_some_and(|rule| rule.contains(&bucket)))
            .map(|(id, ..)| *id)
            .collect();
        owners.sort();
        owners.dedup();
        owners.len() >= 2
    });
    assert!(moved, "no bucket changed hands in nlb-handoffs.pcap");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".pcap") || name.ends_with(".pcapng")) {
            continue;
        }
        let report = doctor(path);
        if name != "nlb-double-ownership.pcap" {
            assert!(
                report.of_kind(Kind::NlbDoubleOwnership).next().is_none(),
                "{name}: {:#?}",
                report.findings
            );
        }
        if !matches!(
            name.as_str(),
            "nlb-double-ownership.pcap" | "tcp-two-servers-one-syn.pcap"
        ) {
            assert!(
                report.of_kind(Kind::DoubleAnswer).next().is_none(),
                "{name}: {:#?}",
                report.findings
            );
        }
    }
    // The hand-off file's client connections are answered once each.
    let report = doctor(fixture("nlb-handoffs.pcap"));
    let alarms: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    assert!(alarms.is_empty(), "{alarms:#?}");
    // h1's killed daemon is the one host gone silent, from its last heartbeat to the end.
    let silent: Vec<&Finding> = report.of_kind(Kind::NlbHeartbeatGap).collect();
    assert_eq!(silent.len(), 1, "{silent:#?}");
    assert_eq!(silent[0].details["host_id"], 1);
    assert_eq!(silent[0].details["ends_silent"], true);
    assert_eq!(silent[0].macs, vec!["52:54:00:00:00:01".parse().unwrap()]);
}

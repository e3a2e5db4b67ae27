//! Unit tests of the analysis rules, frame by frame.

use super::*;
use crate::finding::Finding;
use nlb_wire::arp::ArpRepr;
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

/// A MAC one byte off `mac(last)` (byte `at` set to `value`).
fn damaged(last: u8, at: usize, value: u8) -> MacAddr {
    let mut copy = mac(last);
    copy.0[at] = value;
    copy
}

/// The client asks for `ip(host)` and the host answers, with `sender` as ARP sender MAC
/// behind Ethernet source `src`.
fn exchange(host: u8, src: MacAddr, sender: MacAddr) -> [Vec<u8>; 2] {
    let asked = ArpRepr::request(mac(100), ip(100), ip(host));
    let reply = ArpRepr::reply_to(&asked, sender, ip(host));
    [asked.to_frame(mac(100), None), reply.to_frame(src, None)]
}

fn timed(frames: impl IntoIterator<Item = Vec<u8>>) -> Vec<(i64, Vec<u8>)> {
    frames
        .into_iter()
        .enumerate()
        .map(|(k, bytes)| (k as i64 * 10 * MS, bytes))
        .collect()
}

#[test]
fn bit_errors_from_one_station_are_frame_corruption_not_duplicates() {
    let mut frames = Vec::new();
    for round in 0..40u8 {
        let sender = match round % 8 {
            1 => damaged(1, 4, 0x6d),
            3 => damaged(1, 5, 0x25),
            5 => damaged(1, 1, 0xaa),
            7 => damaged(1, 0, 0x37),
            _ => mac(1),
        };
        frames.extend(exchange(1, mac(1), sender));
    }
    let findings = analyse(Settings::default(), &timed(frames));
    assert_eq!(findings[0].kind, Kind::FrameCorruption, "{findings:#?}");
    assert_eq!(findings[0].macs[0], mac(1));
    assert_eq!(findings[0].ip, Some(ip(1)));
    assert_eq!(findings[0].details["distinct_damaged_copies"], 4);
    assert_eq!(findings[0].details["damaged_sender_mac"], 20);
    for kind in [Kind::DuplicateIp, Kind::IpMacFlap, Kind::SenderMacMismatch] {
        assert!(of(&findings, kind).is_empty(), "{kind:?}: {findings:#?}");
    }
}

#[test]
fn one_close_mismatch_repeated_is_a_mismatch_not_corruption() {
    // A proxy or a bond: one (source, sender) pair, one byte apart, every time.
    let frames: Vec<Vec<u8>> = (0..20)
        .flat_map(|_| exchange(1, mac(1), damaged(1, 5, 0x99)))
        .collect();
    let findings = analyse(Settings::default(), &timed(frames));
    assert!(
        of(&findings, Kind::FrameCorruption).is_empty(),
        "{findings:#?}"
    );
    let mismatch = of(&findings, Kind::SenderMacMismatch);
    assert_eq!(mismatch.len(), 1, "{findings:#?}");
    assert_eq!(mismatch[0].count, 20);
}

#[test]
fn sequential_macs_that_both_answer_are_a_duplicate() {
    let aa = MacAddr([0x00, 0x16, 0x3e, 0, 0, 0xaa]);
    let bb = MacAddr([0x00, 0x16, 0x3e, 0, 0, 0xbb]);
    let mut frames = Vec::new();
    for _ in 0..10 {
        let asked = ArpRepr::request(mac(100), ip(100), ip(20));
        frames.push(asked.to_frame(mac(100), None));
        for host in [aa, bb] {
            frames.push(ArpRepr::reply_to(&asked, host, ip(20)).to_frame(host, None));
        }
    }
    let findings = analyse(Settings::default(), &timed(frames));
    assert!(
        of(&findings, Kind::FrameCorruption).is_empty(),
        "{findings:#?}"
    );
    let duplicate = of(&findings, Kind::DuplicateIp);
    assert_eq!(duplicate.len(), 1, "{findings:#?}");
    assert_eq!(duplicate[0].macs, vec![aa, bb]);
}

#[test]
fn windows_masking_from_many_hosts_is_not_corruption() {
    // 02:<host id>:<vip> sources, one byte from each other and from the 02:bf cluster
    // MAC in the ARP sender: eight hosts answering.
    let vip = Ipv4Addr::new(198, 18, 0, 10);
    let cluster = MacAddr([0x02, 0xbf, 198, 18, 0, 10]);
    let mut frames = Vec::new();
    for _ in 0..5 {
        let asked = ArpRepr::request(mac(100), ip(100), vip);
        frames.push(asked.to_frame(mac(100), None));
        for host in 1..=8 {
            let source = MacAddr([0x02, host, 198, 18, 0, 10]);
            frames.push(ArpRepr::reply_to(&asked, cluster, vip).to_frame(source, None));
        }
    }
    let findings = analyse(Settings::default(), &timed(frames));
    assert!(
        of(&findings, Kind::FrameCorruption).is_empty(),
        "{findings:#?}"
    );
    let masked = of(&findings, Kind::SenderMacMismatch);
    assert_eq!(masked.len(), 8);
    assert!(
        masked
            .iter()
            .all(|f| f.details["pattern"] == "nlb_unicast_masking")
    );
}

/// xorshift, for reproducible garbage.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn hostile_damage_from_many_stations_stays_bounded() {
    let mut analyzer = Analyzer::new(Settings::default());
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for k in 0..40_000u64 {
        let r = next(&mut rng).to_be_bytes();
        let station = MacAddr([0x52, r[0], r[1], r[2], r[3], r[4]]);
        let mut copy = station;
        copy.0[usize::from(r[5]) % 6] ^= 0x40;
        let repr = ArpRepr::request(copy, Ipv4Addr::new(10, r[6], r[7], r[1]), ip(1));
        analyzer.handle_ethernet(k + 1, k as i64 * MS, &repr.to_frame(station, None));
    }
    assert!(analyzer.stations.len() <= corruption::MAX_STATIONS);
    let findings = analyzer.finish();
    assert!(findings.len() <= 200_100, "{}", findings.len());
}

#[test]
fn arbitrary_arp_bytes_never_panic() {
    let mut analyzer = Analyzer::new(Settings::default());
    let mut rng = 0x1234_5678_9abc_def1u64;
    for k in 0..20_000u64 {
        let len = (next(&mut rng) % 80) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next(&mut rng) as u8).collect();
        if bytes.len() >= 14 {
            // ARP, with sources close to a few stations, so that the corruption rules run.
            bytes[12..14].copy_from_slice(&[0x08, 0x06]);
            bytes[6..12].copy_from_slice(&[0x52, 0x54, 0, 0, 0, (k % 4) as u8]);
        }
        analyzer.handle_ethernet(k + 1, k as i64 * MS, &bytes);
    }
    analyzer.finish();
}

/// `frame` with 802.1ad and 802.1Q tags for `outer.inner` inserted after its MACs.
fn qinq(outer: u16, inner: u16, frame: Vec<u8>) -> Vec<u8> {
    let mut tagged = frame[..12].to_vec();
    tagged.extend_from_slice(&[0x88, 0xa8]);
    tagged.extend_from_slice(&outer.to_be_bytes());
    tagged.extend_from_slice(&[0x81, 0x00]);
    tagged.extend_from_slice(&inner.to_be_bytes());
    tagged.extend_from_slice(&frame[12..]);
    tagged
}

#[test]
fn customer_vlans_under_one_service_vlan_stay_apart() {
    // One address, used by a different host in each of two customer VLANs under service
    // VLAN 100 (not a duplicate), and claimed twice within customer VLAN 201 (one).
    let vip = ip(40);
    let claim = |from: u8| ArpRepr::announcement(mac(from), vip).to_frame(mac(from), None);
    let frames = [
        (0, qinq(100, 200, claim(1))),
        (S, qinq(100, 201, claim(2))),
        (2 * S, qinq(100, 200, claim(1))),
        (3 * S, qinq(100, 201, request(3, vip))),
        (
            4 * S,
            qinq(
                100,
                201,
                ArpRepr::reply_to(&ArpRepr::request(mac(3), ip(3), vip), mac(4), vip)
                    .to_frame(mac(4), None),
            ),
        ),
    ];
    let mut analyzer = Analyzer::new(Settings::default());
    for (number, (ts, bytes)) in frames.iter().enumerate() {
        analyzer.handle_ethernet(number as u64 + 1, *ts, bytes);
    }
    assert_eq!(analyzer.vlans(), vec![100]);
    assert_eq!(analyzer.vlan_stacks(), vec!["100.200", "100.201"]);
    let findings = analyzer.finish();
    let duplicates = of(&findings, Kind::DuplicateIp);
    assert_eq!(duplicates.len(), 1, "{findings:#?}");
    assert_eq!(
        (duplicates[0].vlan, duplicates[0].inner_vlan),
        (Some(100), Some(201))
    );
    assert_eq!(duplicates[0].macs, vec![mac(2), mac(4)]);
    assert_eq!(duplicates[0].vlan_name().as_deref(), Some("100.201"));
    assert!(
        duplicates[0].message.contains("on VLAN 100.201"),
        "{}",
        duplicates[0].message
    );
}

/// A request from host `from` (198.18.1.`from`) for `target`.
fn request_from_many(from: u8, target: Ipv4Addr) -> Vec<u8> {
    let mac = MacAddr([0x52, 0x54, 0, 0, 1, from]);
    ArpRepr::request(mac, Ipv4Addr::new(198, 18, 1, from), target).to_frame(mac, None)
}

#[test]
fn a_busy_finding_lists_its_first_askers_with_exact_counts() {
    // 40 hosts ask for a dead address three times over once it is unanswered: the
    // finding lists the first 16 askers (the cap), each with all its requests, and no
    // other, however the lists' filters collide.
    let dead = ip(200);
    let mut frames = vec![(0, request_from_many(1, dead))];
    for round in 0..3 {
        for host in 1..=40u8 {
            frames.push((
                2 * S + round * S + i64::from(host) * MS,
                request_from_many(host, dead),
            ));
        }
    }
    let findings = analyse(Settings::default(), &frames);
    let unanswered = of(&findings, Kind::UnansweredRequest);
    assert_eq!(unanswered.len(), 1, "{findings:#?}");
    assert_eq!(unanswered[0].count, 121);
    let askers = unanswered[0].details["askers"].as_array().unwrap();
    let listed: Vec<(String, u64)> = askers
        .iter()
        .map(|a| {
            (
                a["ip"].as_str().unwrap().to_owned(),
                a["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = (1..=16u8)
        .map(|host| (format!("198.18.1.{host}"), if host == 1 { 4 } else { 3 }))
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(unanswered[0].macs.len(), 16);
    assert_eq!(unanswered[0].macs[15], MacAddr([0x52, 0x54, 0, 0, 1, 16]));
}

#[test]
fn vlans_are_listed_once_in_order_of_appearance() {
    let on = |vlan: u16| ArpRepr::announcement(mac(1), ip(1)).to_frame(mac(1), Some(vlan));
    let plain = ArpRepr::announcement(mac(1), ip(1)).to_frame(mac(1), None);
    let frames = [
        on(10),
        on(4000),
        on(10),
        on(74),
        qinq(10, 200, plain.clone()),
        qinq(10, 300, plain.clone()),
        qinq(10, 200, plain),
        on(4000),
    ];
    let mut analyzer = Analyzer::new(Settings::default());
    for (number, bytes) in frames.iter().enumerate() {
        analyzer.handle_ethernet(number as u64 + 1, number as i64 * MS, bytes);
    }
    assert_eq!(analyzer.vlans(), vec![10, 4000, 74]);
    assert_eq!(analyzer.vlan_stacks(), vec!["10.200", "10.300"]);
}

#[test]
fn each_storm_absorbs_only_its_own_scan() {
    // Two sources scan on two VLANs. An address that source 1 and then another host
    // asked for on VLAN 10 is not part of a scan and stays listed.
    let scan = |from: u8, vlan: u16, base: u8| {
        (0..40u8).map(move |k| {
            ArpRepr::request(mac(from), ip(from), Ipv4Addr::new(198, 18, base, k))
                .to_frame(mac(from), Some(vlan))
        })
    };
    let mut frames: Vec<(i64, Vec<u8>)> = Vec::new();
    for (k, bytes) in scan(1, 10, 1).chain(scan(2, 20, 2)).enumerate() {
        frames.push((k as i64 * MS, bytes));
    }
    let shared = Ipv4Addr::new(198, 18, 3, 1);
    for (from, at) in [(1, 90 * MS), (3, 2 * S)] {
        let bytes = ArpRepr::request(mac(from), ip(from), shared).to_frame(mac(from), Some(10));
        frames.push((at, bytes));
    }
    frames.push((10 * S, request(9, ip(9))));
    let findings = analyse(Settings::default(), &frames);
    let storms = of(&findings, Kind::RequestStorm);
    assert_eq!(storms.len(), 2, "{findings:#?}");
    for storm in &storms {
        assert_eq!(storm.details["unanswered_addresses"], 40, "{storm:#?}");
    }
    let listed: Vec<Option<Ipv4Addr>> = of(&findings, Kind::UnansweredRequest)
        .iter()
        .map(|f| f.ip)
        .collect();
    assert_eq!(listed, vec![Some(shared)], "{findings:#?}");
}

#[test]
fn a_storm_counts_each_request_beyond_the_limit_in_its_window() {
    // Limit 1 in 100 ms: 0 and 50 ms make one beyond; 300 ms is alone again; 310 and
    // 320 ms make two more (the window at 320 holds 310 and 320 once 300 is out).
    let settings = Settings {
        storm_requests: 1,
        ..Settings::default()
    };
    let times = [0, 50, 300, 310, 320, 500];
    let frames: Vec<(i64, Vec<u8>)> = (times.iter().enumerate())
        .map(|(k, &ms)| (ms * MS, request(1, ip(100 + k as u8))))
        .collect();
    let findings = analyse(settings, &frames);
    let storms = of(&findings, Kind::RequestStorm);
    assert_eq!(storms.len(), 1, "{findings:#?}");
    assert_eq!(
        (storms[0].count, storms[0].first_frame, storms[0].last_frame),
        (3, 2, 5)
    );
}

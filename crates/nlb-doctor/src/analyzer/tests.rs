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

//! The ownership rules of `analyzer/ownership.rs`, frame by frame, through the public
//! analyzer: what is double ownership and what is a hand-off, what is a double answer
//! and what is a take-over; and that hostile input costs counters, never panics.

use nlb_doctor::{Analyzer, Finding, Kind, Settings};
use nlb_wire::MacAddr;
use nlb_wire::addressing::{ClusterMode, cluster_id, cluster_mac};
use nlb_wire::bitmap::{BucketBitmap, MemberSet};
use nlb_wire::ethernet::{ETHERTYPE_IPV4, ETHERTYPE_NLB_HEARTBEAT, EthernetRepr};
use nlb_wire::heartbeat::{HeartbeatRepr, HostState, RuleStatus};
use proptest::prelude::*;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

const MS: i64 = 1_000_000;
/// The heartbeat period the synthetic hosts announce.
const PERIOD: i64 = 100 * MS;

fn mac(last: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, last])
}

fn vip() -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 10)
}

fn client() -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 100)
}

/// A sequence number above every one handed out before, as a daemon's heartbeats carry:
/// the doctor reads an older or repeated one as a replay.
fn next_sequence() -> u64 {
    static SEQUENCE: AtomicU64 = AtomicU64::new(1);
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
}

/// A heartbeat of host `id` from `src`, owning `owned` of rule 1 (and nothing of the
/// fallback rule), in cluster `cluster` with incarnation `incarnation`.
fn heartbeat_of(cluster: u32, id: u8, src: MacAddr, incarnation: u32, owned: &[u16]) -> Vec<u8> {
    let mut bitmap = BucketBitmap::new(256);
    for &bucket in owned {
        bitmap.insert(bucket);
    }
    let rule = |owned: BucketBitmap| RuleStatus {
        weight: None,
        priority: None,
        enabled: true,
        draining: false,
        check_down: false,
        target: owned.clone(),
        owned,
    };
    HeartbeatRepr {
        cluster_id: cluster,
        host_id: id,
        state: HostState::Converged,
        incarnation,
        sequence: next_sequence(),
        config_fingerprint: 0,
        view_epoch: 1,
        heartbeat_ms: (PERIOD / MS) as u16,
        view_members: MemberSet::from_iter([id]),
        live_members: MemberSet::from_iter([id]),
        connections: 0,
        field_digests: [0; 24],
        sender_mac: Some(src),
        echoes: Vec::new(),
        rules: vec![rule(bitmap), rule(BucketBitmap::new(256))],
    }
    .to_frame(
        src,
        cluster_mac(vip(), ClusterMode::Multicast),
        ETHERTYPE_NLB_HEARTBEAT,
        None,
    )
}

/// A heartbeat of host `id` (MAC ..:0id) of the cluster of [`vip`].
fn heartbeat(id: u8, owned: &[u16]) -> Vec<u8> {
    heartbeat_of(cluster_id(&[vip()]), id, mac(id), 1, owned)
}

/// An IPv4 packet `src:sport → dst:dport` of `protocol` with `l4` after the ports.
fn ipv4(from: MacAddr, to: MacAddr, protocol: u8, addresses: [Ipv4Addr; 2], l4: &[u8]) -> Vec<u8> {
    let mut packet = vec![
        0x45,
        0,
        0,
        (20 + l4.len()) as u8,
        0,
        0,
        0x40,
        0,
        64,
        protocol,
        0,
        0,
    ];
    packet.extend_from_slice(&addresses[0].octets());
    packet.extend_from_slice(&addresses[1].octets());
    packet.extend_from_slice(l4);
    EthernetRepr {
        dst: to,
        src: from,
        vlan: None,
        ethertype: ETHERTYPE_IPV4,
    }
    .frame(&packet)
}

/// A TCP segment from the VIP's port 80 to the client's `port`, sent from `from`.
fn segment(from: MacAddr, port: u16, flags: u8, ack: u32) -> Vec<u8> {
    let mut tcp = vec![0, 80];
    tcp.extend_from_slice(&port.to_be_bytes());
    tcp.extend_from_slice(&7u32.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    ipv4(from, mac(100), 6, [vip(), client()], &tcp)
}

const SYN_ACK: u8 = 0x12;
const ACK: u8 = 0x10;

/// A UDP datagram from the VIP's port 53 to the client's `port`, sent from `from`.
fn datagram(from: MacAddr, port: u16) -> Vec<u8> {
    let mut udp = vec![0, 53];
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&[0, 8, 0, 0]);
    ipv4(from, mac(100), 17, [vip(), client()], &udp)
}

/// Settings that know the VIP (as `--vip` does).
fn knowing_the_vip() -> Settings {
    Settings {
        vips: vec![vip()],
        ..Settings::default()
    }
}

fn analyse(settings: Settings, frames: &[(i64, Vec<u8>)]) -> Vec<Finding> {
    let mut analyzer = Analyzer::new(settings);
    for (number, (ts, bytes)) in frames.iter().enumerate() {
        analyzer.handle_ethernet(number as u64 + 1, *ts, bytes);
    }
    analyzer.finish()
}

/// The findings of `kind` in the analysis of `frames`.
fn findings_of(settings: Settings, frames: &[(i64, Vec<u8>)], kind: Kind) -> Vec<Finding> {
    let findings = analyse(settings, frames);
    findings.into_iter().filter(|f| f.kind == kind).collect()
}

fn of(findings: &[Finding], kind: Kind) -> Vec<&Finding> {
    findings.iter().filter(|f| f.kind == kind).collect()
}

/// Host 1 and host 2 heartbeats, alternating every half period, from `start`.
fn both(start: i64, rounds: i64, one: &[u16], two: &[u16]) -> Vec<(i64, Vec<u8>)> {
    (0..rounds)
        .flat_map(|round| {
            let t = start + round * PERIOD;
            [(t, heartbeat(1, one)), (t + PERIOD / 2, heartbeat(2, two))]
        })
        .collect()
}

#[test]
fn overlapping_claims_are_named_by_rule_buckets_and_hosts() {
    let findings = analyse(
        Settings::default(),
        &both(0, 3, &[0, 1, 2, 3, 4, 5, 9, 20], &[3, 4, 5, 9, 100]),
    );
    let double = of(&findings, Kind::NlbDoubleOwnership);
    assert_eq!(double.len(), 1, "{findings:#?}");
    let double = double[0];
    assert_eq!(double.macs, vec![mac(1), mac(2)]);
    assert_eq!(double.details["rules"][0]["rule"], "rule 1");
    assert_eq!(double.details["rules"][0]["buckets"], "3-5, 9");
    assert_eq!(double.details["rules"][0]["buckets_owned_twice"], 4);
    // Nothing of the fallback rule is owned, so it is not listed.
    assert_eq!(double.details["rules"].as_array().unwrap().len(), 1);
    // 1, 2, 1 (first sight), then every heartbeat after: 6 heartbeats, the first two
    // cannot show it yet.
    assert_eq!(double.count, 4);
    assert_eq!(double.first_frame, 3);
    assert_eq!(double.ip, Some(vip()));
}

#[test]
fn disjoint_claims_are_nothing() {
    assert_eq!(
        findings_of(
            Settings::default(),
            &both(0, 10, &[0, 1, 2], &[3, 4, 5]),
            Kind::NlbDoubleOwnership
        ),
        []
    );
}

#[test]
fn a_hand_off_released_before_it_is_claimed_is_not_double_ownership() {
    let mut frames = both(0, 3, &[0, 1, 2, 3], &[4, 5]);
    // Host 1 releases 2 and 3; host 2 claims them after hearing that.
    frames.extend(both(3 * PERIOD, 3, &[0, 1], &[2, 3, 4, 5]));
    assert_eq!(
        findings_of(Settings::default(), &frames, Kind::NlbDoubleOwnership),
        []
    );
}

#[test]
fn a_lost_release_heartbeat_is_not_double_ownership() {
    let mut frames = both(0, 3, &[0, 1, 2, 3], &[4, 5]);
    // Host 1's release heartbeat at 3 periods is lost; host 2's claim follows it, and
    // host 1's next heartbeat no longer lists the buckets.
    frames.push((3 * PERIOD + PERIOD / 2, heartbeat(2, &[2, 3, 4, 5])));
    frames.extend(both(4 * PERIOD, 3, &[0, 1], &[2, 3, 4, 5]));
    assert_eq!(
        findings_of(Settings::default(), &frames, Kind::NlbDoubleOwnership),
        []
    );
}

#[test]
fn a_stale_heartbeat_after_a_pause_is_not_double_ownership() {
    let mut frames = both(0, 3, &[0, 1, 2, 3], &[4, 5]);
    // Host 1 freezes after 3 periods; host 2 waits a failure window (5 periods) and
    // takes everything.
    frames.push((8 * PERIOD, heartbeat(2, &[0, 1, 2, 3, 4, 5])));
    frames.push((9 * PERIOD, heartbeat(2, &[0, 1, 2, 3, 4, 5])));
    // Host 1 wakes: a queued heartbeat from before the pause goes out, then its fresh
    // one, which owns nothing (it suspects itself).
    frames.push((9 * PERIOD + MS, heartbeat(1, &[0, 1, 2, 3])));
    frames.push((9 * PERIOD + 2 * MS, heartbeat(1, &[])));
    frames.extend(both(10 * PERIOD, 3, &[], &[0, 1, 2, 3, 4, 5]));
    assert_eq!(
        findings_of(Settings::default(), &frames, Kind::NlbDoubleOwnership),
        []
    );
}

#[test]
fn buckets_taken_from_a_crashed_host_are_not_double_ownership() {
    let mut frames = both(0, 3, &[0, 1, 2, 3], &[4, 5]);
    // Host 1 dies after its heartbeat at 2 periods; its latest heartbeat still lists
    // its buckets when host 2 takes them, a failure window later.
    frames.extend((8..12).map(|k| (k * PERIOD, heartbeat(2, &[0, 1, 2, 3, 4, 5]))));
    assert_eq!(
        findings_of(Settings::default(), &frames, Kind::NlbDoubleOwnership),
        []
    );
}

#[test]
fn heartbeats_more_than_two_periods_apart_do_not_show_it_but_close_ones_do() {
    // Host 1 every 3 periods: too far apart to exclude a take-over in between.
    let sparse: Vec<(i64, Vec<u8>)> = (0..4)
        .flat_map(|round| {
            let t = round * 3 * PERIOD;
            [(t, heartbeat(1, &[7])), (t + PERIOD, heartbeat(2, &[7]))]
        })
        .collect();
    // Host 2's heartbeats are 3 periods apart too, so neither can show it.
    assert_eq!(
        findings_of(Settings::default(), &sparse, Kind::NlbDoubleOwnership),
        []
    );
    // Two periods apart is still close.
    let close: Vec<(i64, Vec<u8>)> = (0..4)
        .flat_map(|round| {
            let t = round * 2 * PERIOD;
            [(t, heartbeat(1, &[7])), (t + PERIOD, heartbeat(2, &[7]))]
        })
        .collect();
    let findings = analyse(Settings::default(), &close);
    assert_eq!(of(&findings, Kind::NlbDoubleOwnership).len(), 1);
}

#[test]
fn a_restart_is_not_a_continuation() {
    // Host 1 restarts (new incarnation) between its two claims.
    let frames = vec![
        (0, heartbeat(1, &[7])),
        (PERIOD / 2, heartbeat(2, &[7])),
        (
            PERIOD,
            heartbeat_of(cluster_id(&[vip()]), 1, mac(1), 2, &[7]),
        ),
    ];
    assert_eq!(
        findings_of(Settings::default(), &frames, Kind::NlbDoubleOwnership),
        []
    );
}

#[test]
fn two_hosts_with_one_id_are_two_owners() {
    let id = cluster_id(&[vip()]);
    let frames: Vec<(i64, Vec<u8>)> = (0..3)
        .flat_map(|round| {
            let t = round * PERIOD;
            [
                (t, heartbeat_of(id, 1, mac(1), 1, &[7, 8])),
                (t + PERIOD / 2, heartbeat_of(id, 1, mac(9), 1, &[8])),
            ]
        })
        .collect();
    let findings = analyse(Settings::default(), &frames);
    let double = of(&findings, Kind::NlbDoubleOwnership);
    assert_eq!(double.len(), 1, "{findings:#?}");
    assert_eq!(double[0].macs, vec![mac(1), mac(9)]);
    assert_eq!(double[0].details["hosts"][0]["host_id"], 1);
    assert_eq!(double[0].details["hosts"][1]["host_id"], 1);
    assert_eq!(double[0].details["rules"][0]["buckets"], "8");
    assert_eq!(of(&findings, Kind::NlbDuplicateHostId).len(), 1);
}

#[test]
fn other_clusters_own_their_own_buckets() {
    let frames: Vec<(i64, Vec<u8>)> = (0..3)
        .flat_map(|round| {
            let t = round * PERIOD;
            [
                (t, heartbeat_of(1, 1, mac(1), 1, &[7])),
                (t + PERIOD / 2, heartbeat_of(2, 2, mac(2), 1, &[7])),
            ]
        })
        .collect();
    assert_eq!(
        findings_of(Settings::default(), &frames, Kind::NlbDoubleOwnership),
        []
    );
}

#[test]
fn two_syn_acks_for_one_syn_from_two_macs() {
    let frames = vec![
        (0, segment(mac(1), 40000, SYN_ACK, 1001)),
        (MS, segment(mac(2), 40000, SYN_ACK, 1001)),
    ];
    let findings = analyse(knowing_the_vip(), &frames);
    let answer = of(&findings, Kind::DoubleAnswer);
    assert_eq!(answer.len(), 1, "{findings:#?}");
    assert_eq!(answer[0].details["syn_acks_answered_twice"], 1);
    assert_eq!(answer[0].details["client_ports"][0], 40000);
    assert_eq!(answer[0].first_frame, 2);
    // Without heartbeats there is no cluster id, so no bucket.
    assert!(answer[0].details["buckets"].is_null());
}

#[test]
fn the_vip_is_learned_from_heartbeats_and_from_frames_to_the_cluster_mac() {
    let pair = [
        (10 * MS, segment(mac(1), 40000, SYN_ACK, 1001)),
        (11 * MS, segment(mac(2), 40000, SYN_ACK, 1001)),
    ];
    // Unknown: not read at all.
    assert_eq!(
        findings_of(Settings::default(), &pair, Kind::DoubleAnswer),
        []
    );
    // A heartbeat to the multicast cluster MAC names the VIP; the bucket follows.
    let mut frames = vec![(0, heartbeat(1, &[]))];
    frames.extend(pair.clone());
    let findings = analyse(Settings::default(), &frames);
    let answer = of(&findings, Kind::DoubleAnswer);
    assert_eq!(answer.len(), 1, "{findings:#?}");
    assert_eq!(answer[0].details["macs"][0]["host_id"], 1);
    assert!(answer[0].details["macs"][1]["host_id"].is_null());
    let single = &answer[0].details["buckets"]["affinity_single"];
    assert!(single["bucket"].as_u64().unwrap() < 256, "{single}");
    // Host 2 sent no heartbeat: nothing says the bucket is claimed twice.
    assert_eq!(single["claimed_twice_in"], serde_json::json!([]));
    // A client's SYN to the cluster MAC names it too.
    let syn = ipv4(
        mac(100),
        cluster_mac(vip(), ClusterMode::Multicast),
        6,
        [client(), vip()],
        &[
            0x9c, 0x40, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
        ],
    );
    let mut frames = vec![(0, syn)];
    frames.extend(pair);
    let findings = analyse(Settings::default(), &frames);
    assert_eq!(of(&findings, Kind::DoubleAnswer).len(), 1, "{findings:#?}");
}

#[test]
fn syn_acks_to_different_syns_are_not_one_syn_answered_twice() {
    // The client reuses its port: a new SYN (another ISN), answered by the bucket's new
    // owner.
    let frames = vec![
        (0, segment(mac(1), 40000, SYN_ACK, 1001)),
        (MS, segment(mac(2), 40000, SYN_ACK, 5001)),
    ];
    assert_eq!(
        findings_of(knowing_the_vip(), &frames, Kind::DoubleAnswer),
        []
    );
}

#[test]
fn a_take_over_is_one_change_not_a_double_answer() {
    // Host 1 answers, then host 2 (the bucket's new owner) resets the connection: one
    // change of MAC. Likewise for UDP.
    let frames = vec![
        (0, segment(mac(1), 40000, ACK, 1)),
        (MS, segment(mac(1), 40000, ACK, 1)),
        (200 * MS, segment(mac(2), 40000, 0x14, 1)),
        (210 * MS, segment(mac(2), 40000, 0x14, 1)),
        (300 * MS, datagram(mac(1), 5353)),
        (400 * MS, datagram(mac(2), 5353)),
        (500 * MS, datagram(mac(2), 5353)),
    ];
    assert_eq!(
        findings_of(knowing_the_vip(), &frames, Kind::DoubleAnswer),
        []
    );
}

#[test]
fn answers_alternating_between_two_macs_are_a_double_answer() {
    let frames = vec![
        (0, datagram(mac(1), 5353)),
        (10 * MS, datagram(mac(2), 5353)),
        (20 * MS, datagram(mac(1), 5353)),
        (30 * MS, datagram(mac(2), 5353)),
    ];
    let findings = analyse(knowing_the_vip(), &frames);
    let answer = of(&findings, Kind::DoubleAnswer);
    assert_eq!(answer.len(), 1, "{findings:#?}");
    assert_eq!(answer[0].details["datagrams_alternating"], 2);
    assert_eq!(answer[0].details["protocol"], "udp");
    assert_eq!(answer[0].first_frame, 3);
    // The same alternation, but slower than the window: a change back and forth, each
    // after a pause.
    let slow: Vec<(i64, Vec<u8>)> = [1, 2, 1, 2]
        .into_iter()
        .enumerate()
        .map(|(i, m)| (i as i64 * 600 * MS, datagram(mac(m), 5353)))
        .collect();
    assert_eq!(
        findings_of(knowing_the_vip(), &slow, Kind::DoubleAnswer),
        []
    );
    // After a pause, B then A at once is one change within the window; B again makes
    // it alternate.
    let mut frames: Vec<(i64, Vec<u8>)> = [(0, 1), (600, 2), (610, 1)]
        .into_iter()
        .map(|(ms, m)| (ms * MS, datagram(mac(m), 5353)))
        .collect();
    assert_eq!(
        findings_of(knowing_the_vip(), &frames, Kind::DoubleAnswer),
        []
    );
    frames.push((620 * MS, datagram(mac(2), 5353)));
    let findings = analyse(knowing_the_vip(), &frames);
    assert_eq!(of(&findings, Kind::DoubleAnswer).len(), 1, "{findings:#?}");
}

#[test]
fn a_flood_of_flows_and_senders_costs_a_counter() {
    let mut analyzer = Analyzer::new(knowing_the_vip());
    let mut number = 0;
    let mut feed = |analyzer: &mut Analyzer, ts: i64, bytes: &[u8]| {
        number += 1;
        analyzer.handle_ethernet(number, ts, bytes);
    };
    // 70,000 flows within one window: more than the table holds.
    for port in 0..70_000u32 {
        let mut frame = segment(mac(1), (port % 65_536) as u16, ACK, port);
        // Another client address for the second lap of ports.
        frame[14 + 19] = 100 + (port / 65_536) as u8;
        feed(&mut analyzer, i64::from(port), &frame);
    }
    let untracked = analyzer.counters().untracked;
    assert!(untracked >= 70_000 - 65_536, "{untracked}");
    // 2,000 forged senders of one cluster: at most 128 are kept, the rest counted.
    let id = cluster_id(&[vip()]);
    for sender in 0..2_000u32 {
        let [_, _, a, b] = sender.to_be_bytes();
        let src = MacAddr([0x52, 0x54, 0, 1, a, b]);
        let frame = heartbeat_of(id, (sender % 64) as u8 + 1, src, 1, &[1]);
        feed(&mut analyzer, MS + i64::from(sender), &frame);
    }
    assert!(analyzer.counters().untracked >= untracked + 2_000 - 128);
    // The flows tracked before the flood still are: two SYN-ACKs for one SYN on one of
    // them are seen.
    feed(&mut analyzer, 3 * MS, &segment(mac(1), 7, SYN_ACK, 99));
    feed(&mut analyzer, 3 * MS + 1, &segment(mac(2), 7, SYN_ACK, 99));
    let findings = analyzer.finish();
    let answer = of(&findings, Kind::DoubleAnswer);
    assert_eq!(answer.len(), 1, "{answer:#?}");
    assert_eq!(answer[0].details["client_ports"][0], 7);
}

#[test]
fn expired_flows_make_room_for_new_ones() {
    let mut analyzer = Analyzer::new(knowing_the_vip());
    for port in 0..65_536u32 {
        analyzer.handle_ethernet(
            u64::from(port) + 1,
            i64::from(port),
            &segment(mac(1), port as u16, ACK, 1),
        );
    }
    let untracked = analyzer.counters().untracked;
    // A second later every flow has expired: a new client's flow is tracked, and its
    // two SYN-ACKs are seen.
    let mut frame_a = segment(mac(1), 1, SYN_ACK, 5);
    let mut frame_b = segment(mac(2), 1, SYN_ACK, 5);
    frame_a[14 + 19] = 101;
    frame_b[14 + 19] = 101;
    analyzer.handle_ethernet(70_000, 1_000 * MS, &frame_a);
    analyzer.handle_ethernet(70_001, 1_001 * MS, &frame_b);
    assert_eq!(analyzer.counters().untracked, untracked);
    let findings = analyzer.finish();
    assert_eq!(of(&findings, Kind::DoubleAnswer).len(), 1, "{findings:#?}");
}

/// Valid frames of every kind this module reads, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    vec![
        heartbeat(1, &[0, 1, 2, 200]),
        heartbeat(2, &[2, 3]),
        segment(mac(1), 40000, SYN_ACK, 1001),
        segment(mac(2), 40000, SYN_ACK, 1001),
        datagram(mac(1), 5353),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Mutated and random frames, at any times: no panic, and the analysis ends.
    #[test]
    fn hostile_frames_never_panic(
        frames in prop::collection::vec(
            (
                0usize..6,
                prop::collection::vec((0usize..300, any::<u8>()), 0..8),
                0usize..300,
                prop::collection::vec(any::<u8>(), 0..120),
                -5i64..5_000,
            ),
            1..60,
        )
    ) {
        let seeds = seeds();
        let mut analyzer = Analyzer::new(knowing_the_vip());
        for (number, (seed, flips, cut, random, ms)) in frames.into_iter().enumerate() {
            let mut bytes = match seeds.get(seed) {
                Some(seed) => seed.clone(),
                None => random,
            };
            for (at, value) in flips {
                if let Some(byte) = bytes.get_mut(at) {
                    *byte = value;
                }
            }
            if cut < bytes.len() && cut % 3 == 0 {
                bytes.truncate(cut);
            }
            analyzer.handle_ethernet(number as u64 + 1, ms * MS, &bytes);
        }
        let findings = analyzer.finish();
        for finding in findings.iter().filter(|f| f.kind == Kind::DoubleAnswer) {
            prop_assert!(finding.macs.len() == 2);
        }
        for finding in findings.iter().filter(|f| f.kind == Kind::NlbDoubleOwnership) {
            prop_assert!(finding.macs.len() <= 2);
            prop_assert!(!finding.details["rules"].as_array().unwrap().is_empty());
        }
    }
}

/// `frame` with 802.1ad and 802.1Q tags for `outer.inner` inserted after its MACs.
fn qinq(outer: u16, inner: u16, frame: Vec<u8>) -> Vec<u8> {
    let mut tagged = frame[..12].to_vec();
    for (tpid, vid) in [(0x88a8u16, outer), (0x8100, inner)] {
        tagged.extend_from_slice(&tpid.to_be_bytes());
        tagged.extend_from_slice(&vid.to_be_bytes());
    }
    tagged.extend_from_slice(&frame[12..]);
    tagged
}

#[test]
fn flows_of_other_customer_vlans_are_other_flows() {
    // One SYN-ACK each in customer VLANs 200 and 201 under service VLAN 100: two flows.
    let apart = vec![
        (0, qinq(100, 200, segment(mac(1), 40000, SYN_ACK, 1001))),
        (MS, qinq(100, 201, segment(mac(2), 40000, SYN_ACK, 1001))),
    ];
    assert_eq!(
        findings_of(knowing_the_vip(), &apart, Kind::DoubleAnswer),
        []
    );
    // Both in 100.201: one flow answered twice, on that stack.
    let mut together = apart;
    together.push((
        2 * MS,
        qinq(100, 201, segment(mac(1), 40000, SYN_ACK, 1001)),
    ));
    let answers = findings_of(knowing_the_vip(), &together, Kind::DoubleAnswer);
    assert_eq!(answers.len(), 1, "{answers:#?}");
    assert_eq!(
        (answers[0].vlan, answers[0].inner_vlan),
        (Some(100), Some(201))
    );
}

/// Data frames carry no tag: one forged SYN-ACK from the VIP under host 2's MAC, while
/// host 1 answered and the heartbeats split the buckets cleanly, is a double answer the
/// doctor cannot tell from a real one. It must say so, and not report double ownership.
#[test]
fn a_forged_syn_ack_under_a_real_hosts_mac_is_reported_with_its_doubt() {
    let low: Vec<u16> = (0..128).collect();
    let high: Vec<u16> = (128..256).collect();
    let mut frames = both(0, 10, &low, &high);
    frames.push((300 * MS, segment(mac(1), 40000, SYN_ACK, 1001)));
    frames.push((301 * MS, segment(mac(2), 40000, SYN_ACK, 1001)));
    frames.sort_by_key(|(at, _)| *at);
    let findings = analyse(Settings::default(), &frames);
    assert!(
        of(&findings, Kind::NlbDoubleOwnership).is_empty(),
        "{findings:#?}"
    );
    let answer = of(&findings, Kind::DoubleAnswer);
    assert_eq!(answer.len(), 1, "{findings:#?}");
    assert_eq!(answer[0].macs, vec![mac(1), mac(2)]);
    assert!(
        answer[0].advice.contains("no authentication")
            && answer[0].advice.contains("confirm on the hosts"),
        "{}",
        answer[0].advice
    );
    // The heartbeats name the hosts, and neither claims the other's half.
    assert!(answer[0].message.contains("(host 1)") && answer[0].message.contains("(host 2)"));
    assert!(
        !answer[0].message.contains("nlb_double_ownership"),
        "{}",
        answer[0].message
    );
}

/// Frames to a cluster MAC teach VIPs, and anyone can send them: 4,096 of them with made
/// up destinations fill that table before the cluster's first heartbeat. The cluster's
/// own IP, from its heartbeats, must still be read for double answers.
#[test]
fn frames_to_cluster_macs_cannot_crowd_out_the_clusters_own_vip() {
    let mut frames: Vec<(i64, Vec<u8>)> = (0..4096u32)
        .map(|n| {
            let to = Ipv4Addr::new(198, 19, (n >> 8) as u8, n as u8);
            let to_cluster = cluster_mac(Ipv4Addr::new(198, 18, 7, 7), ClusterMode::Multicast);
            (
                0,
                ipv4(
                    mac(50),
                    to_cluster,
                    17,
                    [client(), to],
                    &[0, 1, 0, 1, 0, 8, 0, 0],
                ),
            )
        })
        .collect();
    let low: Vec<u16> = (0..128).collect();
    let high: Vec<u16> = (128..256).collect();
    frames.extend(both(MS, 4, &low, &high));
    frames.push((500 * MS, segment(mac(1), 40000, SYN_ACK, 1001)));
    frames.push((501 * MS, segment(mac(2), 40000, SYN_ACK, 1001)));
    let answer = findings_of(Settings::default(), &frames, Kind::DoubleAnswer);
    assert_eq!(answer.len(), 1, "{answer:#?}");
    assert_eq!(answer[0].ip, Some(vip()));
}

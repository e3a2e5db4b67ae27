//! Which heartbeats the doctor believes: with the cluster key, only those it verifies
//! (`nlb_forged_heartbeat` for the rest); with or without it, only those newer than every
//! one seen from their sender (`nlb_replayed_heartbeat`, and a repeated frame counted
//! once). Heartbeats it does not believe make no host and claim no bucket, so a forger
//! or a replayer cannot make the doctor report double ownership. And a host whose
//! heartbeats stop is raised while the capture goes on (`nlb_heartbeat_gap`).

use nlb_doctor::{Analyzer, Finding, Kind, Settings};
use nlb_wire::MacAddr;
use nlb_wire::addressing::{ClusterMode, cluster_id, cluster_mac};
use nlb_wire::bitmap::{BucketBitmap, MemberSet};
use nlb_wire::ethernet::ETHERTYPE_NLB_HEARTBEAT;
use nlb_wire::heartbeat::{HeartbeatKey, HeartbeatRepr, HostState, RuleStatus};
use std::net::Ipv4Addr;

const MS: i64 = 1_000_000;

fn mac(last: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, last])
}

fn vip() -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 10)
}

fn key() -> HeartbeatKey {
    HeartbeatKey::derive(b"the cluster's secret, 32 bytes or more")
}

/// Heartbeat `sequence` of host `id` (MAC ..:0id, incarnation 1, 100 ms period) owning
/// `owned` of its one rule, tagged with `key` if given.
fn heartbeat(id: u8, sequence: u64, owned: &[u16], key: Option<&HeartbeatKey>) -> Vec<u8> {
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
        cluster_id: cluster_id(&[vip()]),
        host_id: id,
        state: HostState::Converged,
        incarnation: 1,
        sequence,
        config_fingerprint: 0,
        view_epoch: 1,
        heartbeat_ms: 100,
        view_members: MemberSet::from_iter([1, 2]),
        live_members: MemberSet::from_iter([1, 2]),
        connections: 0,
        field_digests: [0; 24],
        sender_mac: Some(mac(id)),
        echoes: Vec::new(),
        rules: vec![rule(bitmap), rule(BucketBitmap::new(256))],
    }
    .to_frame(
        mac(id),
        cluster_mac(vip(), ClusterMode::Multicast),
        ETHERTYPE_NLB_HEARTBEAT,
        key,
    )
}

/// Hosts 1 and 2 of a keyed cluster, splitting buckets 0-255, for `rounds` periods.
fn healthy(rounds: u64) -> Vec<(i64, Vec<u8>)> {
    let low: Vec<u16> = (0..128).collect();
    let high: Vec<u16> = (128..256).collect();
    let mut frames = Vec::new();
    for round in 0..rounds {
        let at = round as i64 * 100 * MS;
        frames.push((at, heartbeat(1, round + 1, &low, Some(&key()))));
        frames.push((at + 50 * MS, heartbeat(2, round + 1, &high, Some(&key()))));
    }
    frames
}

fn analyse(key: Option<HeartbeatKey>, frames: &[(i64, Vec<u8>)]) -> (Analyzer, Vec<Finding>) {
    let mut analyzer = Analyzer::new(Settings {
        heartbeat_key: key,
        ..Settings::default()
    });
    for (number, (ts, bytes)) in frames.iter().enumerate() {
        analyzer.handle_ethernet(number as u64 + 1, *ts, bytes);
    }
    let findings = analyzer.finish();
    (analyzer, findings)
}

fn of(findings: &[Finding], kind: Kind) -> Vec<&Finding> {
    findings.iter().filter(|f| f.kind == kind).collect()
}

/// That `findings` hold none of `kinds`.
fn assert_none(findings: &[Finding], kinds: &[Kind]) {
    for &kind in kinds {
        assert!(of(findings, kind).is_empty(), "{kind:?}: {findings:#?}");
    }
}

/// The host ids the cluster summary lists.
fn hosts(findings: &[Finding]) -> Vec<u64> {
    let cluster = of(findings, Kind::NlbCluster);
    assert_eq!(cluster.len(), 1, "{findings:#?}");
    cluster[0].details["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| h["id"].as_u64().expect("host id"))
        .collect()
}

#[test]
fn with_the_key_forged_heartbeats_are_named_and_claim_nothing() {
    let mut frames = healthy(10);
    // Host 3 with another key and an untagged "host 1" from a third MAC both claim
    // every bucket, inside the healthy cluster's periods.
    let every: Vec<u16> = (0..256).collect();
    let other = HeartbeatKey::derive(b"some other cluster's secret, long enough");
    for round in 3..8u64 {
        let at = round as i64 * 100 * MS + 20 * MS;
        frames.push((at, heartbeat(3, round, &every, Some(&other))));
        frames.push((at + 10 * MS, heartbeat(4, round, &every, None)));
    }
    frames.sort_by_key(|(at, _)| *at);

    let (_, trusted) = analyse(Some(key()), &frames);
    let forged = of(&trusted, Kind::NlbForgedHeartbeat);
    assert_eq!(forged.len(), 1, "{trusted:#?}");
    assert_eq!(forged[0].count, 10);
    assert_eq!(forged[0].macs, vec![mac(3), mac(4)]);
    assert_eq!(forged[0].ip, Some(vip()));
    assert!(
        of(&trusted, Kind::NlbDoubleOwnership).is_empty(),
        "{trusted:#?}"
    );
    assert_eq!(hosts(&trusted), vec![1, 2]);

    // Without the key the same capture shows the forgers as hosts that claim every
    // bucket: what the key is for.
    let (_, unkeyed) = analyse(None, &frames);
    assert!(of(&unkeyed, Kind::NlbForgedHeartbeat).is_empty());
    assert!(
        !of(&unkeyed, Kind::NlbDoubleOwnership).is_empty(),
        "{unkeyed:#?}"
    );
    assert_eq!(hosts(&unkeyed), vec![1, 2, 3, 4]);
}

#[test]
fn a_replayed_heartbeat_is_named_and_claims_nothing() {
    let mut frames = healthy(10);
    // Host 1 once owned everything (sequence 1 of another capture's story): replayed
    // later, under host 1's own MAC, while host 2 owns the upper half.
    let every: Vec<u16> = (0..256).collect();
    let old = heartbeat(1, 1, &every, Some(&key()));
    frames.push((520 * MS, old.clone()));
    frames.push((560 * MS, old));
    frames.sort_by_key(|(at, _)| *at);

    for key in [Some(key()), None] {
        let (analyzer, findings) = analyse(key, &frames);
        let replayed = of(&findings, Kind::NlbReplayedHeartbeat);
        assert_eq!(replayed.len(), 1, "{findings:#?}");
        assert_eq!(replayed[0].count, 2);
        assert_eq!(replayed[0].macs, vec![mac(1)]);
        assert_eq!(replayed[0].details["host_id"], 1);
        assert_eq!(replayed[0].details["sequence"], 1);
        assert_eq!(replayed[0].details["newest_sequence"], 6);
        assert!(
            of(&findings, Kind::NlbDoubleOwnership).is_empty(),
            "{findings:#?}"
        );
        assert_eq!(analyzer.counters().duplicate_heartbeats, 0);
    }
}

#[test]
fn a_frame_captured_twice_is_read_once_and_counted() {
    let mut frames = Vec::new();
    for (at, frame) in healthy(6) {
        // `tcpdump -i any` on a bridge: each frame on the port and on the bridge.
        frames.push((at, frame.clone()));
        frames.push((at + 1000, frame));
    }
    let (analyzer, findings) = analyse(Some(key()), &frames);
    assert_eq!(analyzer.counters().duplicate_heartbeats, 12);
    assert_eq!(analyzer.counters().nlb_heartbeats, 24);
    assert!(of(&findings, Kind::NlbReplayedHeartbeat).is_empty());
    let cluster = of(&findings, Kind::NlbCluster);
    let heard: Vec<u64> = cluster[0].details["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| h["heartbeats"].as_u64().expect("heartbeats"))
        .collect();
    assert_eq!(heard, vec![6, 6]);
}

/// A keyed 3-host cluster in the simulator, with an attacker on a bystander port who
/// replays captured heartbeats as they are, and re-sends them untagged claiming every
/// bucket under fresh MACs. Given the key, the doctor names both and reports the three
/// hosts as they are; without it, the forgeries look like hosts that own everything.
#[test]
fn an_attacker_in_a_simulated_keyed_cluster_is_named_not_believed() {
    use nlb_sim::{Capture, Sim, SimConfig, test_config};
    use nlb_wire::ethernet::EthernetFrame;
    use nlb_wire::heartbeat::HeartbeatPacket;
    use std::time::Duration;

    let secret = b"the simulated cluster's secret, 32 bytes+".to_vec();
    let configs = (1..=3)
        .map(|id| test_config(id, ClusterMode::Multicast, "key_file = \"/k\"", ""))
        .collect();
    let config = SimConfig {
        seed: 3,
        key: Some(secret.clone()),
        capture: Some(Capture::Memory),
        ..SimConfig::default()
    };
    let mut sim = Sim::new(config, configs, 1);
    sim.run_for(Duration::from_secs(2));
    let every = {
        let mut all = BucketBitmap::new(256);
        (0..256).for_each(|b| all.insert(b));
        all
    };
    for sent in 0..40u8 {
        let log: Vec<Vec<u8>> = sim.heartbeat_log.iter().cloned().collect();
        let frame = log[usize::from(sent) * 7 % log.len()].clone();
        let frame = if sent % 2 == 0 {
            frame
        } else {
            let eth = EthernetFrame::parse(&frame).expect("a heartbeat frame");
            let packet = HeartbeatPacket::new_checked(eth.payload).expect("a heartbeat");
            let mut repr = HeartbeatRepr::parse(&packet, None).expect("a heartbeat");
            repr.sequence = u64::MAX;
            for rule in &mut repr.rules {
                rule.owned = every.clone();
                rule.target = every.clone();
            }
            let forger = MacAddr([0x02, 0xee, 0, 0, sent, 1]);
            repr.to_frame(forger, eth.dst, ETHERTYPE_NLB_HEARTBEAT, None)
        };
        sim.inject(0, frame);
        sim.run_for(Duration::from_millis(20));
    }
    sim.run_for(Duration::from_millis(500));
    let capture = sim.capture().expect("a memory capture");
    let report = |key: Option<HeartbeatKey>| {
        let settings = Settings {
            heartbeat_key: key,
            ..Settings::default()
        };
        nlb_doctor::diagnose(capture, None, settings, |_| {})
            .expect("a pcap file")
            .findings
    };

    let trusted = report(Some(HeartbeatKey::derive(&secret)));
    let forged = of(&trusted, Kind::NlbForgedHeartbeat);
    assert_eq!(forged.len(), 1, "{trusted:#?}");
    assert_eq!(forged[0].count, 20);
    assert_eq!(forged[0].macs.len(), 16, "MACs listed at most");
    let replayed = of(&trusted, Kind::NlbReplayedHeartbeat);
    assert_eq!(replayed.len(), 1, "{trusted:#?}");
    assert_eq!(replayed[0].count, 20);
    for kind in [Kind::NlbDoubleOwnership, Kind::NlbDuplicateHostId] {
        assert!(of(&trusted, kind).is_empty(), "{kind:?}: {trusted:#?}");
    }
    assert_eq!(hosts(&trusted), vec![1, 2, 3]);

    let unkeyed = report(None);
    assert!(of(&unkeyed, Kind::NlbForgedHeartbeat).is_empty());
    assert_eq!(of(&unkeyed, Kind::NlbReplayedHeartbeat).len(), 1);
    assert!(
        !of(&unkeyed, Kind::NlbDuplicateHostId).is_empty(),
        "{unkeyed:#?}"
    );
}

/// Without a key: one heartbeat naming host 1's MAC inside, sent from another MAC, with
/// the highest incarnation. nlb hosts drop it (the source is not the MAC it carries);
/// believed, it made every later heartbeat of the real host 1 a "replay", so host 1
/// claimed nothing and fell silent in the doctor's eyes.
#[test]
fn a_heartbeat_sent_from_another_mac_than_it_names_does_not_silence_that_host() {
    let mut frames = healthy(10);
    let mut forged = tweaked(&frames[2].1, |hb| {
        hb.incarnation = u32::MAX;
        hb.sender_mac = Some(mac(9));
    });
    // to_frame writes the Ethernet source into the body; the forger names host 1.
    let at = forged
        .windows(6)
        .rposition(|w| w == mac(9).0)
        .expect("the sender MAC in the body");
    assert!(at >= 14, "the body's copy, not the Ethernet header's");
    forged[at..at + 6].copy_from_slice(&mac(1).0);
    frames.push((150 * MS, forged));
    frames.sort_by_key(|(at, _)| *at);

    let (_, findings) = analyse(None, &frames);
    assert_none(
        &findings,
        &[Kind::NlbReplayedHeartbeat, Kind::NlbHeartbeatGap],
    );
    let malformed = of(&findings, Kind::Malformed);
    assert_eq!(malformed.len(), 1, "{findings:#?}");
    assert_eq!(malformed[0].macs, vec![mac(9)]);
    assert_eq!(hosts(&findings), vec![1, 2]);
}

/// `frame` (a heartbeat of this file's builder) with `change` made to its fields, sent
/// from the MAC it names.
fn tweaked(frame: &[u8], change: impl FnOnce(&mut HeartbeatRepr)) -> Vec<u8> {
    let eth = nlb_wire::ethernet::EthernetFrame::parse(frame).expect("a frame");
    let packet = nlb_wire::heartbeat::HeartbeatPacket::new_checked(eth.payload).expect("hb");
    let mut repr = HeartbeatRepr::parse(&packet, None).expect("a heartbeat");
    change(&mut repr);
    let src = repr.sender_mac.expect("version 2");
    repr.to_frame(
        src,
        cluster_mac(vip(), ClusterMode::Multicast),
        ETHERTYPE_NLB_HEARTBEAT,
        None,
    )
}

/// Extreme field values: a sequence at its end followed by the next incarnation from 0
/// is a restart, not a replay; periods of 0 and 65535 ms and a capture whose clock steps
/// back neither panic nor make double ownership out of disjoint claims.
#[test]
fn extreme_sequences_periods_and_clocks_are_read_soundly() {
    let frames = healthy(6);
    let mut hostile = Vec::new();
    for (index, (at, frame)) in frames.iter().enumerate() {
        let frame = tweaked(frame, |hb| {
            match index {
                // Host 1's (index 0, 2) and host 2's (1, 3) last of incarnation 1.
                0..=1 => hb.sequence = u64::MAX - 1,
                2..=3 => hb.sequence = u64::MAX,
                _ => {
                    hb.incarnation = 2;
                    hb.sequence -= 3;
                }
            }
            hb.heartbeat_ms = if index % 4 < 2 { 0 } else { u16::MAX };
        });
        // The capture's clock steps back a whole second after the fourth frame.
        let at = if index >= 4 { at - 1000 * MS } else { *at };
        hostile.push((at, frame));
    }
    for key in [None, Some(key())] {
        let (_, findings) = analyse(key.clone(), &hostile);
        if key.is_some() {
            // Re-encoded untagged: the key rejects every one.
            assert_eq!(of(&findings, Kind::NlbForgedHeartbeat)[0].count, 12);
            continue;
        }
        assert_none(
            &findings,
            &[Kind::NlbReplayedHeartbeat, Kind::NlbDoubleOwnership],
        );
        assert_eq!(hosts(&findings), vec![1, 2]);
    }
}

/// A host that stops is raised while the capture (or `nlb watch`) goes on, not only at
/// the end: within a second (the sweep) after its silence passes ten periods.
#[test]
fn a_silent_host_is_raised_as_it_is_seen() {
    let low: Vec<u16> = (0..128).collect();
    let high: Vec<u16> = (128..256).collect();
    let mut analyzer = Analyzer::new(Settings::default());
    let mut raised_at = None;
    let mut number = 0;
    for round in 0..40u64 {
        let at = round as i64 * 100 * MS;
        let mut frames = vec![(at + 50 * MS, heartbeat(2, round + 1, &high, None))];
        // Host 1 stops after its heartbeat of round 9, at 0.9 s.
        if round < 10 {
            frames.insert(0, (at, heartbeat(1, round + 1, &low, None)));
        }
        for (ts, bytes) in frames {
            number += 1;
            analyzer.handle_ethernet(number, ts, &bytes);
            while let Some(finding) = analyzer.poll_raised() {
                if finding.kind == Kind::NlbHeartbeatGap {
                    assert_eq!(finding.macs, vec![mac(1)], "{finding:#?}");
                    raised_at.get_or_insert(ts);
                }
            }
        }
    }
    let raised_at = raised_at.expect("raised before the end");
    // Silent from 0.9 s + 10 periods = 1.9 s; the sweep runs once a second.
    assert!(
        (1900 * MS..=3000 * MS).contains(&raised_at),
        "raised at {} ms",
        raised_at / MS
    );
    let findings = analyzer.finish();
    let gaps = of(&findings, Kind::NlbHeartbeatGap);
    assert_eq!(gaps.len(), 1, "{findings:#?}");
    assert_eq!(gaps[0].details["ends_silent"], true);
    assert_eq!(gaps[0].details["host_id"], 1);
}

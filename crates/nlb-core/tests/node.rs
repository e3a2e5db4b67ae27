//! One node driven by hand: ARP answers, conflicts, probes, announcements, commands and
//! hostile heartbeats. The simulator covers clusters; this covers the edges.

use nlb_core::config::Config;
use nlb_core::node::{Command, CommandError, DropReason, Event, Misconfig, Node};
use nlb_core::time::Instant;
use nlb_wire::MacAddr;
use nlb_wire::arp::{ArpKind, ArpOperation, ArpRepr};
use nlb_wire::bitmap::{BucketBitmap, MemberSet};
use nlb_wire::ethernet::ETHERTYPE_NLB_HEARTBEAT;
use nlb_wire::heartbeat::{HeartbeatKey, HeartbeatRepr, HostState, RuleStatus};
use std::net::Ipv4Addr;
use std::time::Duration;

mod common;
use common::{MY_MAC, VIP, arp_out, config, events, ms, now_of, run_until, running_node};

const CLUSTER_MAC: MacAddr = MacAddr([0x03, 0xbf, 198, 18, 0, 10]);
const STRANGER: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0x99, 0x99]);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);

fn arp_frame(eth_src: MacAddr, repr: ArpRepr) -> Vec<u8> {
    repr.to_frame(eth_src, None)
}

#[test]
fn probes_each_vip_before_joining_then_announces() {
    let mut node = Node::new(config(""), MY_MAC, 1, None, ms(0));
    let mut frames = Vec::new();
    let mut now = ms(0);
    while now < ms(1000) {
        node.handle_timeout(now);
        for (eth, arp) in arp_out(&mut node) {
            frames.push((now, eth.src, arp.kind(), arp.sender_mac));
        }
        now = node.poll_timeout().max(now + Duration::from_micros(1));
    }
    let probes: Vec<_> = frames.iter().filter(|f| f.2 == ArpKind::Probe).collect();
    assert_eq!(probes.len(), 3);
    assert!(probes.iter().all(|f| f.1 == MY_MAC && f.3 == MY_MAC));
    let announcements: Vec<_> = frames
        .iter()
        .filter(|f| f.2 == ArpKind::Announcement)
        .collect();
    assert!(!announcements.is_empty());
    // Announcements carry the cluster MAC in the ARP sender field, the host's own MAC
    // as Ethernet source, and come after the last probe.
    assert!(
        announcements
            .iter()
            .all(|f| f.1 == MY_MAC && f.3 == CLUSTER_MAC)
    );
    assert!(announcements[0].0 > probes[2].0);
    // Copies more than 1 s apart (Linux locktime).
    let later: Vec<_> = {
        let mut node = node;
        let mut now = now;
        let mut times = vec![announcements[0].0];
        while now < ms(8000) {
            node.handle_timeout(now);
            for (_, arp) in arp_out(&mut node) {
                if arp.kind() == ArpKind::Announcement {
                    times.push(now);
                }
            }
            now = node.poll_timeout().max(now + Duration::from_micros(1));
        }
        times
    };
    assert_eq!(later.len(), 4, "{later:?}");
    for pair in later.windows(2) {
        assert!(
            pair[1].saturating_since(pair[0]) > Duration::from_secs(1),
            "{later:?}"
        );
    }
}

#[test]
fn a_stranger_answering_a_probe_keeps_the_host_out() {
    let mut node = Node::new(config(""), MY_MAC, 1, None, ms(0));
    node.handle_timeout(ms(100));
    let reply = ArpRepr {
        operation: ArpOperation::Reply,
        sender_mac: STRANGER,
        sender_ip: VIP,
        target_mac: MY_MAC,
        target_ip: Ipv4Addr::UNSPECIFIED,
    };
    node.handle_frame(ms(101), &arp_frame(STRANGER, reply));
    node.handle_timeout(ms(2000));
    assert_eq!(node.state(), HostState::Misconfigured);
    assert_eq!(
        node.misconfig(),
        Some(&Misconfig::AddressInUse {
            ip: VIP,
            mac: STRANGER
        })
    );
    assert!(node.owned().iter().all(BucketBitmap::is_empty));
}

#[test]
fn requests_are_answered_to_the_arp_sender_with_the_cluster_mac() {
    let mut node = running_node();
    // The Ethernet source differs from the ARP sender (seed 000's masked NLB host).
    let masked = MacAddr([0x02, 0x01, 198, 18, 1, 1]);
    let asker = MacAddr([0x02, 0xbf, 198, 18, 1, 1]);
    let request = ArpRepr::request(asker, CLIENT, VIP);
    node.handle_frame(ms(3000), &arp_frame(masked, request));
    let out = arp_out(&mut node);
    assert_eq!(out.len(), 1);
    let (eth, reply) = &out[0];
    assert_eq!((eth.src, eth.dst), (MY_MAC, asker));
    assert_eq!(reply.kind(), ArpKind::Reply);
    assert_eq!((reply.sender_mac, reply.sender_ip), (CLUSTER_MAC, VIP));
    assert_eq!((reply.target_mac, reply.target_ip), (asker, CLIENT));
    assert_eq!(node.stats().arp_replies_sent, 1);
}

#[test]
fn probes_for_a_vip_are_answered_and_reported() {
    let mut node = running_node();
    node.handle_frame(
        ms(3000),
        &arp_frame(STRANGER, ArpRepr::probe(STRANGER, VIP)),
    );
    let out = arp_out(&mut node);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.target_ip, Ipv4Addr::UNSPECIFIED);
    assert_eq!(out[0].0.dst, STRANGER);
    assert!(events(&mut node).contains(&Event::ProbeSeen {
        ip: VIP,
        mac: STRANGER
    }));
}

#[test]
fn conflicts_are_reported_and_defended_once_per_ten_seconds() {
    let mut node = running_node();
    let claim = arp_frame(STRANGER, ArpRepr::announcement(STRANGER, VIP));
    let mut defended = Vec::new();
    for second in 0..25 {
        let now = ms(3000 + second * 1000);
        run_until(&mut node, now);
        node.handle_frame(now, &claim);
        for event in events(&mut node) {
            if let Event::Conflict {
                ip,
                mac,
                defended: d,
            } = event
            {
                assert_eq!((ip, mac), (VIP, STRANGER));
                defended.push((second, d));
            }
        }
        arp_out(&mut node);
    }
    assert_eq!(defended.len(), 25);
    let defences: Vec<_> = defended
        .iter()
        .filter(|(_, d)| *d)
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(defences, vec![0, 10, 20]);
    assert_eq!(node.recent_conflicts().count(), 16);
    assert_eq!(node.stats().conflicts, 25);
}

#[test]
fn frames_from_the_cluster_itself_are_not_conflicts() {
    let mut node = running_node();
    // A member's kernel ARPing from the VIP, sender rewritten to the cluster MAC.
    let member_mac = MacAddr([0x52, 0x54, 0, 0, 0, 2]);
    let from_vip = ArpRepr::request(CLUSTER_MAC, VIP, CLIENT);
    run_until(&mut node, ms(3000));
    node.handle_frame(ms(3000), &arp_frame(member_mac, from_vip));
    assert!(events(&mut node).is_empty());
    assert!(arp_out(&mut node).is_empty());
}

#[test]
fn commands_answer_with_the_state_or_a_reason() {
    let mut node = running_node();
    let now = ms(3000);
    assert_eq!(
        node.handle_command(now, Command::Resume),
        Err(CommandError::NotSuspended)
    );
    assert_eq!(
        node.handle_command(now, Command::Suspend),
        Ok(HostState::Suspended)
    );
    assert_eq!(
        node.handle_command(now, Command::Stop),
        Err(CommandError::Suspended)
    );
    assert!(node.owned().iter().all(BucketBitmap::is_empty));
    assert_eq!(
        node.handle_command(now, Command::Resume),
        Ok(HostState::Converging)
    );
    assert_eq!(
        node.handle_command(now, Command::Stop),
        Ok(HostState::Stopped)
    );
    assert_eq!(
        node.handle_command(now, Command::DrainStop),
        Err(CommandError::AlreadyStopped)
    );
    assert_eq!(
        node.handle_command(now, Command::Start),
        Ok(HostState::Converging)
    );
    assert_eq!(node.handle_connections(now, 3), HostState::Converging);
    assert_eq!(
        node.handle_command(now, Command::DrainStop),
        Ok(HostState::Draining)
    );
    assert!(node.owned().iter().all(BucketBitmap::is_empty));
    assert_eq!(node.handle_connections(now, 0), HostState::Stopped);
    assert_eq!(
        node.handle_command(
            now,
            Command::DrainRule(nlb_core::node::RuleSelector::Index(5))
        ),
        Err(CommandError::NoSuchRule(5))
    );
}

fn peer_heartbeat(config: &Config, sequence: u64) -> HeartbeatRepr {
    HeartbeatRepr {
        cluster_id: nlb_wire::addressing::cluster_id(&config.cluster.vips),
        host_id: 2,
        state: HostState::Converging,
        incarnation: 1,
        sequence,
        config_fingerprint: config.fingerprint(),
        view_epoch: 0,
        heartbeat_ms: 10,
        view_members: MemberSet::EMPTY,
        live_members: [1, 2].into_iter().collect(),
        connections: 0,
        field_digests: config.field_digests(),
        sender_mac: None,
        echoes: Vec::new(),
        rules: (0..2)
            .map(|_| RuleStatus {
                weight: None,
                priority: None,
                enabled: true,
                draining: false,
                check_down: false,
                owned: BucketBitmap::new(256),
                target: BucketBitmap::new(256),
            })
            .collect(),
    }
}

#[test]
fn hostile_heartbeats_are_counted_and_ignored() {
    let key = HeartbeatKey::derive(b"cluster secret");
    let config = config("key_file = \"/etc/nlb/key\"");
    let mut node = Node::new(config.clone(), MY_MAC, 1, Some(key.clone()), ms(0));
    let peer_mac = MacAddr([0x52, 0x54, 0, 0, 0, 2]);
    let send = |node: &mut Node, at: u64, repr: &HeartbeatRepr, key: Option<&HeartbeatKey>| {
        let frame = repr.to_frame(peer_mac, CLUSTER_MAC, ETHERTYPE_NLB_HEARTBEAT, key);
        node.handle_frame(ms(at), &frame);
    };
    // Good, then replayed, then forged with another key, then unauthenticated.
    send(&mut node, 1, &peer_heartbeat(&config, 10), Some(&key));
    send(&mut node, 2, &peer_heartbeat(&config, 10), Some(&key));
    send(
        &mut node,
        3,
        &peer_heartbeat(&config, 11),
        Some(&HeartbeatKey::derive(b"guess")),
    );
    send(&mut node, 4, &peer_heartbeat(&config, 12), None);
    // Another cluster's heartbeat, and garbage.
    let mut foreign = peer_heartbeat(&config, 13);
    foreign.cluster_id ^= 1;
    send(&mut node, 5, &foreign, Some(&key));
    let mut garbage = peer_heartbeat(&config, 14).to_frame(
        peer_mac,
        CLUSTER_MAC,
        ETHERTYPE_NLB_HEARTBEAT,
        Some(&key),
    );
    garbage.truncate(40);
    node.handle_frame(ms(6), &garbage);

    let stats = node.stats();
    assert_eq!(stats.heartbeats_received, 1);
    let dropped = |reason| stats.heartbeats_dropped.get(&reason).copied().unwrap_or(0);
    assert_eq!(dropped(DropReason::Replay), 1);
    assert_eq!(dropped(DropReason::BadTag), 2);
    assert_eq!(dropped(DropReason::ForeignCluster), 1);
    assert_eq!(dropped(DropReason::Malformed), 1);
    // The forged ones were not acted on: the peer's last heard time is the good frame's.
    let members = node.members(ms(6));
    let peer = members.iter().find(|m| m.id == 2).unwrap();
    assert_eq!(peer.last_heard_us, 5000);
}

#[test]
fn arbitrary_frames_never_panic() {
    let mut node = running_node();
    let mut seed = 0x1234_5678u64;
    for i in 0..20_000u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 200) as usize;
        let mut frame: Vec<u8> = (0..len).map(|j| (seed >> (j % 56)) as u8).collect();
        if frame.len() > 14 {
            let ethertype: [u8; 2] = match i % 3 {
                0 => [0x88, 0xb5],
                1 => [0x08, 0x06],
                _ => [0x08, 0x00],
            };
            frame[12..14].copy_from_slice(&ethertype);
            if i % 3 == 0 && frame.len() > 17 {
                frame[14..17].copy_from_slice(b"NL\x01");
            }
        }
        node.handle_frame(ms(3000 + i), &frame);
    }
    node.handle_timeout(ms(30_000));
}

/// A node that finds it has not run for longer than its lease releases everything at
/// once, says so, and claims nothing again before a whole failure window of listening;
/// a node whose timers ran on time never stalls.
#[test]
fn a_node_that_did_not_run_releases_and_rejoins() {
    let mut node = running_node();
    let now = node.poll_timeout();
    run_until(&mut node, now + Duration::from_secs(2));
    assert_eq!(node.stats().stalls, 0, "timers on time are no stall");
    assert!(node.owned().iter().any(|b| !b.is_empty()));
    while node.poll_action().is_some() {}
    // The stall: no input for 200 ms (the lease is 75 ms), then a timeout.
    let resumed = now + Duration::from_millis(2200);
    node.handle_timeout(resumed);
    let stalled: Vec<Event> = events(&mut node)
        .into_iter()
        .filter(|e| matches!(e, Event::Stalled { .. }))
        .collect();
    assert_eq!(stalled.len(), 1);
    assert!(node.owned().iter().all(BucketBitmap::is_empty));
    let released = std::iter::from_fn(|| node.poll_action()).count();
    assert!(released > 0, "the release goes to the kernel");
    assert_eq!(node.view().1, MemberSet::EMPTY);
    // Alone on its segment it may own again, but only after a whole failure window.
    let mut now = resumed;
    while node.owned().iter().all(BucketBitmap::is_empty) {
        now = node.poll_timeout();
        node.handle_timeout(now);
        assert!(now < resumed + Duration::from_secs(2), "never rejoined");
    }
    assert!(now.saturating_since(resumed) >= Duration::from_millis(150));
    assert_eq!(node.stats().stalls, 1);
}

/// The frame of issue 11: right cluster and fingerprint, a first rule of 4096 buckets
/// with bucket 300 set. It crashed every keyless host (`BucketMap` indexed by a peer's
/// bucket); now it is a counted drop.
#[test]
fn a_heartbeat_with_more_buckets_than_configured_is_dropped() {
    let config = config("");
    let mut node = running_node();
    let now = node.poll_timeout();
    run_until(&mut node, now);
    let mut hostile = peer_heartbeat(&config, 1);
    let mut owned = BucketBitmap::new(4096);
    owned.insert(300);
    hostile.rules[0].owned = owned.clone();
    hostile.rules[0].target = owned;
    hostile.view_members = [1, 2].into_iter().collect();
    hostile.view_epoch = 1;
    let frame = hostile.to_frame(
        MacAddr([0x52, 0x54, 0, 0, 0, 2]),
        CLUSTER_MAC,
        ETHERTYPE_NLB_HEARTBEAT,
        None,
    );
    for step in 0..20u64 {
        let at = now + Duration::from_millis(step);
        run_until(&mut node, at);
        node.handle_frame(at, &frame);
    }
    let dropped = node.stats().heartbeats_dropped.get(&DropReason::Malformed);
    assert_eq!(dropped, Some(&20));
    assert_eq!(node.members(now).len(), 1, "no peer from a malformed frame");
    // An epoch at its ceiling could never grow: dropped too.
    let mut ceiling = peer_heartbeat(&config, 2);
    ceiling.view_epoch = u32::MAX;
    let at = now + Duration::from_millis(21);
    run_until(&mut node, at);
    node.handle_frame(
        at,
        &ceiling.to_frame(
            MacAddr([0x52, 0x54, 0, 0, 0, 2]),
            CLUSTER_MAC,
            ETHERTYPE_NLB_HEARTBEAT,
            None,
        ),
    );
    let dropped = node.stats().heartbeats_dropped.get(&DropReason::Malformed);
    assert_eq!(dropped, Some(&21));
}

/// A flood of valid-looking heartbeats from 20,000 source MACs, all claiming host ids:
/// the peer table holds at most two senders per id, the replay table stays bounded,
/// and the drops are reported once per reason, not once per frame.
#[test]
fn a_flood_from_many_macs_costs_counters_not_state() {
    let config = config("");
    let mut node = running_node();
    let start = node.poll_timeout();
    run_until(&mut node, start);
    let mut events_seen = 0;
    for i in 0..20_000u32 {
        let at = start + Duration::from_micros(u64::from(i) * 5);
        if i % 1000 == 0 {
            run_until(&mut node, at);
        }
        let mut repr = peer_heartbeat(&config, u64::from(i) + 1);
        repr.host_id = (i % 64) as u8 + 1;
        let mac = MacAddr([0x02, 0xaa, (i >> 16) as u8, (i >> 8) as u8, i as u8, 0x01]);
        node.handle_frame(
            at,
            &repr.to_frame(mac, CLUSTER_MAC, ETHERTYPE_NLB_HEARTBEAT, None),
        );
        events_seen += events(&mut node)
            .iter()
            .filter(|e| matches!(e, Event::HeartbeatDropped { .. }))
            .count();
        arp_out(&mut node);
    }
    let members = node.members(start + Duration::from_millis(100));
    assert!(members.len() <= 1 + 64 * 2, "{} members", members.len());
    let dropped: u64 = node.stats().heartbeats_dropped.values().sum();
    assert!(dropped >= 19_000, "{dropped}");
    assert!(events_seen <= 4, "{events_seen} drop events for one flood");
}

/// Runs two nodes against each other, frames delivered at once, until `until`;
/// returns every heartbeat frame `b` sent.
fn run_pair(a: &mut Node, b: &mut Node, from: Instant, until: Instant) -> Vec<Vec<u8>> {
    let mut sent_by_b = Vec::new();
    let mut now = from;
    while now < until {
        a.handle_timeout(now);
        b.handle_timeout(now);
        let from_a: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
        let from_b: Vec<_> = std::iter::from_fn(|| b.poll_transmit()).collect();
        for frame in &from_a {
            b.handle_frame(now, frame);
        }
        for frame in &from_b {
            a.handle_frame(now, frame);
        }
        sent_by_b.extend(from_b.into_iter().filter(|f| f[12..14] == [0x88, 0xb5]));
        while a.poll_event().is_some() || b.poll_event().is_some() {}
        while a.poll_action().is_some() || b.poll_action().is_some() {}
        now = a
            .poll_timeout()
            .min(b.poll_timeout())
            .max(now + Duration::from_micros(1));
    }
    sent_by_b
}

fn keyed_config(id: u8) -> Config {
    Config::parse(
        &format!(
            "[cluster]\ninterface = \"eth0\"\nvips = [\"198.18.0.10\"]\nkey_file = \"/k\"\n\
             [host]\nid = {id}\n"
        ),
        "t.toml",
    )
    .unwrap()
}

/// With a key: a captured heartbeat re-sent under another source MAC is dropped (the MAC
/// is under the tag), and a receiver that restarted does not take an old capture as a
/// sign of life: the replayed host never becomes a member of its view.
#[test]
fn replays_neither_evict_nor_revive() {
    let key = HeartbeatKey::derive(b"cluster secret, long enough for the test");
    let peer_mac = MacAddr([0x52, 0x54, 0, 0, 0, 2]);
    let mut a = Node::new(keyed_config(1), MY_MAC, 1, Some(key.clone()), ms(0));
    let mut b = Node::new(keyed_config(2), peer_mac, 1, Some(key.clone()), ms(0));
    let captured = run_pair(&mut a, &mut b, ms(0), ms(2000));
    assert_eq!(a.view().1, [1, 2].into_iter().collect::<MemberSet>());
    assert_eq!(a.state(), HostState::Converged);

    // Re-sent under another MAC, to a live cluster: dropped, no misconfiguration.
    let mut now = ms(2000);
    for frame in captured.iter().rev().take(50) {
        let mut forged = frame.clone();
        forged[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
        a.handle_frame(now, &forged);
        now = now + Duration::from_micros(100);
    }
    assert_eq!(a.stats().heartbeats_dropped.get(&DropReason::BadTag), None);
    assert_eq!(
        a.stats().heartbeats_dropped.get(&DropReason::SpoofedSource),
        Some(&50)
    );
    assert!(a.misconfig().is_none());

    // A restarts (new incarnation); b is gone; an attacker replays b's old heartbeats.
    let mut a = Node::new(keyed_config(1), MY_MAC, 2, Some(key), now);
    let start = now;
    let mut replay = captured.iter().cycle();
    while now < start + Duration::from_secs(2) {
        a.handle_timeout(now);
        a.handle_frame(now, replay.next().unwrap());
        while a.poll_transmit().is_some() || a.poll_event().is_some() {}
        while a.poll_action().is_some() {}
        now = now + Duration::from_millis(5);
        assert!(
            !a.view().1.contains(2),
            "an old capture made host 2 a member"
        );
    }
    assert!(
        a.stats()
            .heartbeats_dropped
            .get(&DropReason::Replay)
            .copied()
            .unwrap_or(0)
            > 0
    );
}

/// In a converged three-host cluster an ARP request for the VIP is answered by exactly
/// two hosts (the two lowest ids), and by the third once one of them is gone from the
/// view.
#[test]
fn two_hosts_answer_arp() {
    let config = |id: u8| {
        Config::parse(
            &format!(
                "[cluster]\ninterface = \"eth0\"\nvips = [\"198.18.0.10\"]\n[host]\nid = {id}\n"
            ),
            "t.toml",
        )
        .unwrap()
    };
    let macs: Vec<MacAddr> = (1..=3).map(|i| MacAddr([0x52, 0x54, 0, 0, 0, i])).collect();
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| Node::new(config(i as u8 + 1), macs[i], 1, None, ms(0)))
        .collect();
    let mut now = ms(0);
    let mut run = |nodes: &mut Vec<Node>, until: Instant, alive: usize| {
        while now < until {
            let mut frames = Vec::new();
            for (i, node) in nodes.iter_mut().enumerate().take(alive) {
                node.handle_timeout(now);
                frames.extend(std::iter::from_fn(|| node.poll_transmit()).map(|f| (i, f)));
                while node.poll_event().is_some() || node.poll_action().is_some() {}
            }
            for (from, frame) in frames {
                for (to, node) in nodes.iter_mut().enumerate().take(alive) {
                    if to != from {
                        node.handle_frame(now, &frame);
                    }
                }
            }
            now = now + Duration::from_millis(5);
        }
    };
    run(&mut nodes, ms(2000), 3);
    let request = arp_frame(STRANGER, ArpRepr::request(STRANGER, CLIENT, VIP));
    let answering = |nodes: &mut Vec<Node>, alive: usize| -> Vec<usize> {
        let at = ms(0) + Duration::from_micros(now_of(&nodes[0]));
        (0..alive)
            .filter(|&i| {
                arp_out(&mut nodes[i]);
                nodes[i].handle_frame(at, &request);
                arp_out(&mut nodes[i])
                    .iter()
                    .any(|(_, arp)| arp.operation == ArpOperation::Reply)
            })
            .collect()
    };
    assert!(nodes.iter().all(|n| n.state() == HostState::Converged));
    assert_eq!(answering(&mut nodes, 3), vec![0, 1]);
    // Host 1 is gone: once the view drops it, hosts 2 and 3 answer.
    let _ = nodes.remove(0);
    run(&mut nodes, ms(3000), 2);
    assert_eq!(answering(&mut nodes, 2), vec![0, 1]);
}

/// A host upgraded to heartbeat v2 that hears version 1 heartbeats of its cluster stays
/// out (the two releases cannot hear each other, so both would own every bucket), and
/// joins once they have stopped for a failure window.
#[test]
fn an_upgraded_host_waits_for_the_old_release_to_go() {
    let config = config("");
    let mut node = Node::new(config.clone(), MY_MAC, 1, None, ms(0));
    let v2 = peer_heartbeat(&config, 1).to_frame(
        MacAddr([0x52, 0x54, 0, 0, 0, 2]),
        CLUSTER_MAC,
        ETHERTYPE_NLB_HEARTBEAT,
        None,
    );
    // The same heartbeat as version 1 wrote it: no MAC, no echoes.
    let mut v1 = v2[..14 + 84].to_vec();
    v1[14 + 2] = 1;
    v1[14 + 11] = 0;
    v1.extend_from_slice(&v2[14 + 92..]);
    let mut now = ms(0);
    while now < ms(1500) {
        node.handle_frame(now, &v1);
        run_until(&mut node, now + Duration::from_millis(10));
        now = now + Duration::from_millis(10);
    }
    assert_eq!(node.state(), HostState::Misconfigured);
    assert!(matches!(
        node.misconfig(),
        Some(Misconfig::OldRelease { .. })
    ));
    assert!(node.owned().iter().all(BucketBitmap::is_empty));
    // The old host is upgraded (silent here): after a window this one joins alone.
    run_until(&mut node, now + Duration::from_millis(1500));
    assert!(node.misconfig().is_none());
    assert!(node.owned().iter().any(|b| !b.is_empty()));
}

//! The cluster's promises, checked in the simulator over many seeds.
//!
//! Every test asserts the safety property the simulator checks after each step (no two
//! running hosts accept new connections for one bucket), plus the promise it is about.

mod common;

use common::cluster;
use nlb_core::node::{Command, Event, Misconfig};
use nlb_core::time::Instant;
use nlb_sim::{Sim, SimConfig, test_config};
use nlb_wire::addressing::{ClusterMode, cluster_mac};
use nlb_wire::heartbeat::HostState;
use rand::{Rng, SeedableRng};
use std::net::Ipv4Addr;
use std::time::Duration;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
/// The default failure window (tolerance 15 × 10 ms) plus 2 periods: the failover bound.
const FAILOVER_BOUND: Duration = Duration::from_millis(170);

/// Every host in `hosts` is converged, in one view whose members are exactly them.
fn all_converged(sim: &Sim, hosts: &[usize]) -> bool {
    let members: nlb_wire::bitmap::MemberSet =
        hosts.iter().map(|&i| sim.hosts[i].config.host.id).collect();
    let views: std::collections::BTreeSet<_> = hosts
        .iter()
        .filter_map(|&i| sim.hosts[i].node.as_ref().map(|n| n.view()))
        .collect();
    views.len() == 1
        && views.iter().all(|&(_, m)| m == members)
        && hosts.iter().all(|&i| {
            sim.hosts[i]
                .node
                .as_ref()
                .is_some_and(|n| n.state() == HostState::Converged)
        })
}

fn converge(sim: &mut Sim, hosts: &[usize]) -> Instant {
    let at = sim.run_until_true(Duration::from_secs(5), |sim| all_converged(sim, hosts));
    at.unwrap_or_else(|| {
        let states: Vec<_> = hosts
            .iter()
            .map(|&i| sim.hosts[i].node.as_ref().map(|n| n.state()))
            .collect();
        panic!("hosts {hosts:?} did not converge: {states:?}")
    })
}

fn assert_safe(sim: &Sim) {
    assert!(
        sim.violations.is_empty(),
        "{} double-ownership moments, first: {:?}",
        sim.violations.len(),
        sim.violations.first()
    );
}

fn every_bucket_owned(sim: &Sim) -> bool {
    (0..2).all(|slot| sim.unowned_buckets(slot) == 0)
}

/// Crash a random host at a random moment: the survivors own every bucket within the
/// bound, and nobody ever shares a bucket.
#[test]
fn failover_after_a_crash_is_within_the_bound() {
    let mut worst = Duration::ZERO;
    for seed in 0..20 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n = rng.random_range(2..=4u8);
        let mut sim = cluster(
            n,
            ClusterMode::Multicast,
            SimConfig {
                seed,
                ..SimConfig::default()
            },
        );
        let hosts: Vec<usize> = (0..usize::from(n)).collect();
        converge(&mut sim, &hosts);
        sim.run_for(Duration::from_micros(rng.random_range(0..50_000)));
        let victim = rng.random_range(0..usize::from(n));
        let crashed_at = sim.now;
        sim.crash(victim);
        let done = sim
            .run_until_true(Duration::from_secs(2), every_bucket_owned)
            .expect("survivors take over");
        let took = done.saturating_since(crashed_at);
        worst = worst.max(took);
        assert!(took <= FAILOVER_BOUND, "seed {seed}: took {took:?}");
        let survivors: Vec<usize> = hosts.iter().copied().filter(|&h| h != victim).collect();
        converge(&mut sim, &survivors);
        assert_safe(&sim);
    }
    eprintln!("worst takeover after a crash: {worst:?} (bound {FAILOVER_BOUND:?})");
}

/// Kill a daemon (its kernel lives on): its kernel stops taking new connections when
/// the lease runs out, before the survivors take over, so no bucket is ever shared.
#[test]
fn killed_daemon_hands_over_through_the_lease() {
    for seed in 0..10 {
        let mut sim = cluster(
            3,
            ClusterMode::Unicast,
            SimConfig {
                seed,
                ..SimConfig::default()
            },
        );
        converge(&mut sim, &[0, 1, 2]);
        let victim = (seed % 3) as usize;
        let killed_at = sim.now;
        sim.kill_daemon(victim);
        let done = sim
            .run_until_true(Duration::from_secs(2), |sim| {
                every_bucket_owned(sim) && sim.hosts[victim].dataplane.lease_until.is_none()
            })
            .expect("survivors take over");
        assert!(done.saturating_since(killed_at) <= FAILOVER_BOUND);
        assert_safe(&sim);
        // The daemon comes back and rejoins.
        sim.start_daemon(victim);
        converge(&mut sim, &[0, 1, 2]);
        assert_safe(&sim);
    }
}

/// Connections keep flowing while a host joins, another drains and stops, and rejoins:
/// not one connection breaks, and every new one finds exactly one host.
#[test]
fn joins_leaves_and_drains_break_no_connection() {
    for seed in 0..4 {
        let mut configs: Vec<_> = (1..=3)
            .map(|id| test_config(id, ClusterMode::Multicast, "", "affinity = \"none\""))
            .collect();
        // Host 4 starts stopped and joins later.
        let mut joiner = test_config(4, ClusterMode::Multicast, "", "affinity = \"none\"");
        joiner.host.initial_state = nlb_core::config::InitialState::Stopped;
        configs.push(joiner);
        let mut sim = Sim::new(
            SimConfig {
                seed,
                ..SimConfig::default()
            },
            configs,
            1,
        );
        converge(&mut sim, &[0, 1, 2]);
        sim.open_random_flows(
            3000,
            Duration::from_secs(10),
            VIP,
            80,
            Duration::from_secs(3),
        );
        sim.run_for(Duration::from_secs(2));
        sim.command(3, Command::Start).unwrap();
        sim.run_for(Duration::from_secs(2));
        assert!(all_converged(&sim, &[0, 1, 2, 3]));
        assert_eq!(
            sim.command(1, Command::DrainStop).unwrap(),
            HostState::Draining
        );
        let stopped = sim.run_until_true(Duration::from_secs(5), |sim| {
            sim.node(1).state() == HostState::Stopped
        });
        assert!(stopped.is_some(), "drainstop never finished");
        sim.command(1, Command::Start).unwrap();
        sim.run_for(Duration::from_secs(8));
        assert_safe(&sim);
        let broken = sim.flows.values().filter(|f| f.broken).count();
        assert_eq!(broken, 0, "seed {seed}: {broken} connections broke");
        let unserved = sim.flows.values().filter(|f| f.host.is_none()).count();
        assert_eq!(
            unserved, 0,
            "seed {seed}: {unserved} connections never found a host"
        );
        let retried = sim.flows.values().filter(|f| f.syns > 1).count();
        eprintln!("seed {seed}: 3000 connections, none broken, {retried} needed a SYN retry");
        // Host 2 served nothing new while draining: everything after it was accepted elsewhere.
        assert!(sim.hosts.iter().all(|h| h.conntrack.is_empty()));
    }
}

/// 20% of heartbeats lost at random for 10 simulated minutes: nobody is declared dead,
/// and the view never changes.
#[test]
fn no_false_failover_at_20_percent_heartbeat_loss() {
    let minutes: u64 = std::env::var("NLB_SIM_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10);
    for seed in [1, 2] {
        let mut sim = cluster(
            3,
            ClusterMode::Multicast,
            SimConfig {
                seed,
                heartbeat_loss: 0.2,
                ..SimConfig::default()
            },
        );
        let converged_at = converge(&mut sim, &[0, 1, 2]);
        sim.run_for(Duration::from_secs(60 * minutes));
        let downs = sim.events_matching(|e| matches!(e, Event::PeerDown { .. }));
        let views = sim
            .events_matching(|e| matches!(e, Event::ViewInstalled { .. }))
            .into_iter()
            .filter(|&(at, _)| at > converged_at)
            .count();
        assert!(
            downs.is_empty(),
            "seed {seed}: false failovers at {downs:?}"
        );
        assert_eq!(views, 0, "seed {seed}: the view changed");
        assert!(all_converged(&sim, &[0, 1, 2]));
        assert_safe(&sim);
    }
}

/// A partition splits host 1 from hosts 2 and 3, then heals. Each side serves on its
/// own (double ownership across the split is unavoidable without a quorum), and after
/// the heal the cluster converges back with no bucket shared.
#[test]
fn partitions_heal_without_lasting_double_ownership() {
    for seed in 0..6 {
        let mut sim = cluster(
            3,
            ClusterMode::Multicast,
            SimConfig {
                seed,
                ..SimConfig::default()
            },
        );
        converge(&mut sim, &[0, 1, 2]);
        if seed % 2 == 0 {
            sim.partition(&[&[0], &[1, 2]]);
        } else {
            // Asymmetric: host 1 cannot hear hosts 2 and 3, but they hear it.
            sim.block(&[1, 2], &[0]);
        }
        sim.run_for(Duration::from_secs(2));
        sim.heal();
        let healed_at = sim.now;
        converge(&mut sim, &[0, 1, 2]);
        let settled = sim.now;
        sim.run_for(Duration::from_secs(2));
        let lasting: Vec<_> = sim
            .violations
            .iter()
            .filter(|v| {
                v.at > settled || (!v.partitioned && v.at > healed_at + Duration::from_millis(50))
            })
            .collect();
        assert!(lasting.is_empty(), "seed {seed}: {:?}", lasting.first());
        assert!(every_bucket_owned(&sim));
        let owned: usize = (0..3).map(|i| sim.node(i).owned()[0].len()).sum();
        assert_eq!(owned, 256, "seed {seed}");
        eprintln!(
            "seed {seed}: converged {:?} after the heal",
            settled.saturating_since(healed_at)
        );
    }
}

/// A host that starts with an id already in use stays out and says why; the others keep
/// serving.
#[test]
fn duplicate_host_id_stays_out() {
    let configs = vec![
        test_config(1, ClusterMode::Multicast, "", ""),
        test_config(2, ClusterMode::Multicast, "", ""),
        test_config(2, ClusterMode::Multicast, "", ""),
    ];
    let mut sim = Sim::new(SimConfig::default(), configs, 0);
    // The third host's NIC differs from the second's.
    sim.hosts[2].mac = nlb_wire::MacAddr([0x52, 0x54, 0, 0, 1, 2]);
    sim.hosts[2].node = None;
    converge(&mut sim, &[0, 1]);
    sim.start_daemon(2);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.node(2).state(), HostState::Misconfigured);
    assert_eq!(
        sim.node(2).misconfig(),
        Some(&Misconfig::DuplicateHostId {
            mac: sim.hosts[1].mac
        })
    );
    assert!(all_converged(&sim, &[0, 1]));
    assert!(every_bucket_owned(&sim));
    assert!(sim.node(2).owned().iter().all(|b| b.is_empty()));
    assert_safe(&sim);
}

/// A host whose rules differ from the cluster's goes misconfigured and names the field;
/// the consistent hosts keep serving.
#[test]
fn misconfigured_host_names_the_differing_field() {
    let configs = vec![
        test_config(1, ClusterMode::Multicast, "", ""),
        test_config(2, ClusterMode::Multicast, "", ""),
        test_config(3, ClusterMode::Multicast, "", "affinity = \"network\""),
    ];
    let mut sim = Sim::new(SimConfig::default(), configs, 0);
    sim.hosts[2].node = None;
    converge(&mut sim, &[0, 1]);
    sim.start_daemon(2);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.node(2).state(), HostState::Misconfigured);
    match sim.node(2).misconfig() {
        Some(Misconfig::ConfigMismatch { field, .. }) => {
            assert_eq!(field, "[[rule]] number 1")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(all_converged(&sim, &[0, 1]));
    assert!(every_bucket_owned(&sim));
    assert_safe(&sim);
}

/// A live migration moves a host to another switch port: nobody fails over, and the
/// switch learns the new port from the host's next frame.
#[test]
fn port_move_keeps_the_cluster_whole() {
    let mut sim = cluster(3, ClusterMode::Unicast, SimConfig::default());
    converge(&mut sim, &[0, 1, 2]);
    let moved_at = sim.now;
    let new_port = sim.move_port(1);
    sim.run_for(Duration::from_secs(1));
    let downs = sim
        .events_matching(|e| matches!(e, Event::PeerDown { .. }))
        .into_iter()
        .filter(|&(at, _)| at > moved_at)
        .count();
    assert_eq!(downs, 0);
    assert_eq!(sim.switch.learned_port(sim.hosts[1].mac), Some(new_port));
    assert!(all_converged(&sim, &[0, 1, 2]));
    assert_safe(&sim);
}

/// In IGMP mode behind a snooping switch, frames to the cluster MAC reach only the
/// hosts; in multicast mode they reach a bystander too. No host ever sends from a
/// cluster MAC, so the switch never learns one.
#[test]
fn igmp_snooping_spares_bystanders_and_no_cluster_mac_is_learned() {
    for (mode, snooping) in [(ClusterMode::Igmp, true), (ClusterMode::Multicast, true)] {
        let mut sim = cluster(
            3,
            mode,
            SimConfig {
                igmp_snooping: snooping,
                ..SimConfig::default()
            },
        );
        converge(&mut sim, &[0, 1, 2]);
        sim.open_random_flows(
            200,
            Duration::from_secs(1),
            VIP,
            80,
            Duration::from_millis(500),
        );
        sim.run_for(Duration::from_secs(2));
        match mode {
            ClusterMode::Igmp => assert_eq!(sim.bystander_cluster_frames, 0),
            _ => assert!(sim.bystander_cluster_frames > 0),
        }
        let cluster_macs: Vec<_> = ClusterMode::ALL
            .iter()
            .map(|&m| cluster_mac(VIP, m))
            .collect();
        assert!(!sim.switch.learned_any(&cluster_macs));
        assert!(sim.flows.values().all(|f| f.host.is_some()));
        assert_safe(&sim);
    }
}

/// 64 hosts: a crash is absorbed within the same bound. Also reports the heartbeat
/// traffic of the whole cluster.
#[test]
fn sixty_four_hosts_fail_over_within_the_bound() {
    let mut sim = cluster(64, ClusterMode::Multicast, SimConfig::default());
    let hosts: Vec<usize> = (0..64).collect();
    converge(&mut sim, &hosts);
    let (bytes_before, at_before) = (sim.heartbeat_wire_bytes, sim.now);
    sim.run_for(Duration::from_secs(1));
    let per_second = (sim.heartbeat_wire_bytes - bytes_before) as f64
        / sim.now.saturating_since(at_before).as_secs_f64();
    eprintln!(
        "64 hosts send {:.0} bytes/s of heartbeats ({:.1} Mbit/s)",
        per_second,
        per_second * 8.0 / 1e6
    );
    let crashed_at = sim.now;
    sim.crash(17);
    let done = sim
        .run_until_true(Duration::from_secs(2), every_bucket_owned)
        .expect("survivors take over");
    let took = done.saturating_since(crashed_at);
    eprintln!("64 hosts: takeover after a crash in {took:?}");
    assert!(took <= FAILOVER_BOUND, "took {took:?}");
    assert_safe(&sim);
}

/// A single-host rule goes whole to the live host with the lowest handling priority, and
/// to the next one when that host fails. Traffic no rule covers goes to the lowest id.
#[test]
fn single_host_rules_follow_handling_priority() {
    // Priorities are the reverse of the ids: host 3 serves first.
    let configs = (1..=3u8)
        .map(|id| {
            test_config(
                id,
                ClusterMode::Multicast,
                "",
                &format!("mode = \"single\"\npriority = {}", 4 - id),
            )
        })
        .collect();
    let mut sim = Sim::new(SimConfig::default(), configs, 0);
    converge(&mut sim, &[0, 1, 2]);
    let owned = |sim: &Sim, host: usize, slot: usize| sim.node(host).owned()[slot].len();
    assert_eq!(
        (owned(&sim, 2, 0), owned(&sim, 1, 0), owned(&sim, 0, 0)),
        (256, 0, 0)
    );
    // The fallback rule (slot 1) belongs to the lowest host id.
    assert_eq!(
        (owned(&sim, 0, 1), owned(&sim, 1, 1), owned(&sim, 2, 1)),
        (256, 0, 0)
    );
    sim.crash(2);
    sim.run_until_true(Duration::from_secs(1), every_bucket_owned)
        .expect("the next priority takes over");
    assert_eq!(owned(&sim, 1, 0), 256);
    sim.crash(0);
    sim.run_until_true(Duration::from_secs(1), every_bucket_owned)
        .expect("the last host takes everything");
    assert_eq!((owned(&sim, 1, 0), owned(&sim, 1, 1)), (256, 256));
    assert_safe(&sim);
}

/// Draining a rule on one host moves its buckets to the others without breaking its
/// connections; disabling a rule drops that rule's connections on that host only.
#[test]
fn rule_drain_and_disable() {
    use nlb_core::node::RuleSelector;
    let configs = (1..=3)
        .map(|id| test_config(id, ClusterMode::Multicast, "", "affinity = \"none\""))
        .collect();
    let mut sim = Sim::new(SimConfig::default(), configs, 0);
    converge(&mut sim, &[0, 1, 2]);
    sim.open_random_flows(600, Duration::from_secs(2), VIP, 80, Duration::from_secs(4));
    sim.run_for(Duration::from_secs(1));
    sim.command(1, Command::DrainRule(RuleSelector::Index(0)))
        .unwrap();
    sim.run_for(Duration::from_millis(500));
    assert_eq!(sim.node(1).owned()[0].len(), 0);
    assert_eq!(
        sim.node(0).owned()[0].len() + sim.node(2).owned()[0].len(),
        256
    );
    assert!(
        !sim.hosts[1].conntrack.is_empty(),
        "host 2 keeps its connections"
    );
    sim.run_for(Duration::from_secs(6));
    assert_eq!(sim.flows.values().filter(|f| f.broken).count(), 0);
    // Enable again: host 2 gets a share back.
    sim.command(1, Command::EnableRule(RuleSelector::All))
        .unwrap();
    converge(&mut sim, &[0, 1, 2]);
    assert!((85..=86).contains(&sim.node(1).owned()[0].len()));
    // Disable: host 2 drops that rule's connections, the others keep theirs.
    sim.open_random_flows(300, Duration::from_secs(1), VIP, 80, Duration::from_secs(5));
    sim.run_for(Duration::from_secs(2));
    let on_host_2 = sim.hosts[1].conntrack.len();
    assert!(on_host_2 > 0);
    sim.command(1, Command::DisableRule(RuleSelector::Index(0)))
        .unwrap();
    sim.run_for(Duration::from_millis(200));
    let broken: Vec<usize> = sim
        .flows
        .values()
        .filter(|f| f.broken)
        .filter_map(|f| f.host)
        .collect();
    assert_eq!(broken.len(), on_host_2);
    assert!(broken.iter().all(|&h| h == 1));
    assert_eq!(
        sim.node(0).owned()[0].len() + sim.node(2).owned()[0].len(),
        256
    );
    assert_safe(&sim);
}

/// The switch forgets a MAC after its ageing time and floods frames to it again.
#[test]
fn switch_ages_out_learned_macs() {
    let mut sim = cluster(
        2,
        ClusterMode::Multicast,
        SimConfig {
            mac_ageing: Duration::from_secs(1),
            ..SimConfig::default()
        },
    );
    converge(&mut sim, &[0, 1]);
    assert_eq!(sim.switch.learned_port(sim.hosts[0].mac), Some(0));
    // While the host talks, the entry stays fresh; once it crashes, it ages out.
    sim.crash(0);
    sim.run_for(Duration::from_secs(2));
    assert!(sim.switch.is_stale(sim.now, sim.hosts[0].mac));
    assert!(!sim.switch.is_stale(sim.now, sim.hosts[1].mac));
}

/// A reload that changes only this host's weight moves only the buckets the new weight
/// asks for; one that changes the cluster-wide part is refused with the field.
#[test]
fn reload_applies_host_weights_and_refuses_cluster_changes() {
    let mut sim = cluster(3, ClusterMode::Multicast, SimConfig::default());
    converge(&mut sim, &[0, 1, 2]);
    let before: Vec<usize> = (0..3).map(|i| sim.node(i).owned()[0].len()).collect();
    let lighter = test_config(1, ClusterMode::Multicast, "", "weight = 50");
    let now = sim.now;
    sim.hosts[0]
        .node
        .as_mut()
        .unwrap()
        .reload(now, lighter)
        .unwrap();
    sim.run_for(Duration::from_millis(500));
    assert!(all_converged(&sim, &[0, 1, 2]));
    let after: Vec<usize> = (0..3).map(|i| sim.node(i).owned()[0].len()).collect();
    // Weights 50, 100, 100 over 256 buckets: 51.2, 102.4, 102.4. Rounded down that is
    // 51, 102, 102; the bucket left over stays with host 1, which holds more than 51
    // already, rather than moving to another host.
    assert_eq!(after, vec![52, 102, 102], "before {before:?}");
    assert_safe(&sim);
    let other_mode = test_config(1, ClusterMode::Unicast, "", "");
    let refused = sim.hosts[0]
        .node
        .as_mut()
        .unwrap()
        .reload(sim.now, other_mode);
    assert!(matches!(refused, Err(nlb_core::node::ReloadError::Mode)));
}

/// Freeze a daemon (SIGSTOP, a paused VM) for lengths around the lease and the failure
/// window, under a steady stream of new connections, in 2- and 3-host clusters. Whatever
/// order the thawed daemon sees its overdue timeout and its queued frames in, no bucket
/// is ever accepted by two hosts, no connection breaks (the frozen host's kernel keeps
/// its own), the host that stalled owns nothing until it shares a view with the others,
/// and the cluster converges again with every bucket owned.
#[test]
fn a_frozen_daemon_rejoins_without_sharing_a_bucket() {
    // Defaults: heartbeat 10 ms, lease and stall threshold 75 ms, window 150 ms. A pause
    // under 65 ms (75 less a period) never stalls; one over 75 ms always does.
    let pauses_ms = [40, 60, 100, 140, 160, 300, 1000, 5000];
    let mut stalls_seen = 0;
    for (trial, &pause_ms) in pauses_ms.iter().enumerate() {
        for n in [2u8, 3] {
            let seed = trial as u64 * 10 + u64::from(n);
            let mut sim = cluster(
                n,
                ClusterMode::Multicast,
                SimConfig {
                    seed,
                    ..SimConfig::default()
                },
            );
            let hosts: Vec<usize> = (0..usize::from(n)).collect();
            converge(&mut sim, &hosts);
            let pause = Duration::from_millis(pause_ms);
            sim.open_random_flows(
                400,
                pause + Duration::from_secs(2),
                VIP,
                80,
                Duration::from_millis(300),
            );
            sim.run_for(Duration::from_millis(20));
            let victim = usize::from(n) - 1;
            let frozen_at = sim.now;
            sim.freeze(victim, pause);
            sim.run_until_true(pause + Duration::from_secs(1), |sim| !sim.is_frozen(victim))
                .expect("the daemon thaws");
            let stalled = sim
                .events_matching(|e| matches!(e, Event::Stalled { .. }))
                .iter()
                .any(|&(at, index)| index == victim && at >= frozen_at);
            if pause > Duration::from_millis(75) {
                assert!(
                    stalled,
                    "{pause_ms} ms pause: the host did not notice its stall"
                );
                stalls_seen += 1;
                // It owns nothing until it shares a view with every other host.
                let others: Vec<usize> = hosts.iter().copied().filter(|&h| h != victim).collect();
                let mut claimed_early = false;
                sim.run_until_true(Duration::from_secs(2), |sim| {
                    let node = sim.node(victim);
                    let owns = node.owned().iter().any(|b| !b.is_empty());
                    let shared = others.iter().all(|&o| sim.node(o).view() == node.view());
                    claimed_early |= owns && !shared;
                    all_converged(sim, &hosts)
                })
                .expect("the cluster converges again");
                assert!(
                    !claimed_early,
                    "{pause_ms} ms pause: claimed before sharing a view"
                );
            } else {
                assert!(
                    !stalled,
                    "{pause_ms} ms pause is within the lease: no stall"
                );
            }
            converge(&mut sim, &hosts);
            sim.run_for(pause + Duration::from_secs(3));
            assert!(every_bucket_owned(&sim), "{pause_ms} ms, {n} hosts");
            assert_safe(&sim);
            let broken = sim.flows.values().filter(|f| f.broken).count();
            assert_eq!(broken, 0, "{pause_ms} ms, {n} hosts: connections broke");
            let served = sim.flows.values().filter(|f| f.host.is_some()).count();
            assert_eq!(
                served,
                sim.flows.len(),
                "{pause_ms} ms: every flow found a host"
            );
        }
    }
    assert!(stalls_seen >= 10);
}

/// An attacker on a bystander port of a keyed 3-host cluster, for 3 s under a stream of
/// new connections: captured heartbeats replayed verbatim and under rotating source
/// MACs, captured heartbeats with a byte flipped, untagged heartbeats rebuilt with hostile
/// fields, and heartbeats from thousands of fresh MACs. No view changes, no host goes
/// misconfigured, no bucket is ever shared, no connection breaks, every flow finds a
/// host, and the peer tables stay within their caps.
#[test]
fn an_attacker_on_the_segment_changes_nothing() {
    use nlb_wire::bitmap::BucketBitmap;
    use nlb_wire::ethernet::EthernetFrame;
    use nlb_wire::heartbeat::{HeartbeatPacket, HeartbeatRepr};
    for seed in 0..3u64 {
        let configs = (1..=3)
            .map(|id| test_config(id, ClusterMode::Multicast, "key_file = \"/k\"", ""))
            .collect();
        let mut sim = Sim::new(
            SimConfig {
                seed,
                key: Some(b"the simulated cluster's secret, 32 bytes+".to_vec()),
                ..SimConfig::default()
            },
            configs,
            1,
        );
        converge(&mut sim, &[0, 1, 2]);
        let views: Vec<_> = (0..3).map(|i| sim.node(i).view()).collect();
        sim.open_random_flows(
            600,
            Duration::from_secs(3),
            VIP,
            80,
            Duration::from_millis(200),
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let end = sim.now + Duration::from_secs(3);
        let mut sent = 0u32;
        while sim.now < end {
            let log: Vec<Vec<u8>> = sim.heartbeat_log.iter().cloned().collect();
            let mut frame = log[rng.random_range(0..log.len())].clone();
            let fresh_mac = [
                0x02,
                0xee,
                (sent >> 16) as u8,
                (sent >> 8) as u8,
                sent as u8,
                1,
            ];
            match sent % 4 {
                0 => {}
                1 => frame[6..12].copy_from_slice(&fresh_mac),
                2 => {
                    let at = rng.random_range(14..frame.len());
                    frame[at] ^= rng.random_range(1..=255u8);
                }
                _ => {
                    let eth = EthernetFrame::parse(&frame).unwrap();
                    let mut repr = HeartbeatRepr::parse(
                        &HeartbeatPacket::new_checked(eth.payload).unwrap(),
                        None,
                    )
                    .unwrap();
                    repr.view_epoch = u32::MAX - rng.random_range(0..2);
                    repr.sequence = u64::MAX;
                    for rule in &mut repr.rules {
                        let mut all = BucketBitmap::new(256);
                        (0..256).for_each(|b| all.insert(b));
                        rule.owned = all.clone();
                        rule.target = all;
                    }
                    frame = repr.to_frame(
                        nlb_wire::MacAddr(fresh_mac),
                        eth.dst,
                        nlb_wire::ethernet::ETHERTYPE_NLB_HEARTBEAT,
                        None,
                    );
                }
            }
            sim.inject(0, frame);
            sent += 1;
            sim.run_for(Duration::from_micros(250));
        }
        sim.run_for(Duration::from_secs(1));
        let now = sim.now;
        for (i, view) in views.iter().enumerate() {
            let node = sim.node(i);
            assert_eq!(node.view(), *view, "seed {seed}: host {i}'s view changed");
            assert!(
                node.misconfig().is_none(),
                "seed {seed}: {:?}",
                node.misconfig()
            );
            assert!(node.members(now).len() <= 1 + 2 * 64);
            let dropped: u64 = node.stats().heartbeats_dropped.values().sum();
            assert!(
                dropped > u64::from(sent) / 2,
                "seed {seed}: {dropped} of {sent}"
            );
        }
        assert_safe(&sim);
        assert!(every_bucket_owned(&sim));
        assert_eq!(sim.flows.values().filter(|f| f.broken).count(), 0);
        assert!(sim.flows.values().all(|f| f.host.is_some()));
        eprintln!("seed {seed}: {sent} hostile frames, nothing changed");
    }
}

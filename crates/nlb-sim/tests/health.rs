//! Health checks in the simulator: a down check moves only its host's share, keeps or
//! cuts that host's connections as its action says, never black-holes a rule, and never
//! lets two hosts share a bucket.

use nlb_core::check::{Health, Probe};
use nlb_core::node::Event;
use nlb_core::time::Instant;
use nlb_sim::{Sim, SimConfig, test_config};
use nlb_wire::addressing::ClusterMode;
use nlb_wire::heartbeat::HostState;
use std::net::Ipv4Addr;
use std::time::Duration;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

/// Three hosts whose rule (TCP 80, affinity none) is guarded by one check, `fall` 2 and
/// `rise` 2, with `action`.
fn cluster(action: &str) -> Sim {
    let rule = format!(
        "affinity = \"none\"\n[[check]]\nname = \"web\"\ntype = \"tcp\"\ntarget = \"198.18.0.10:80\"\nfall = 2\nrise = 2\naction = \"{action}\"\n"
    );
    let configs = (1..=3)
        .map(|id| test_config(id, ClusterMode::Multicast, "", &rule))
        .collect();
    Sim::new(SimConfig::default(), configs, 0)
}

fn converge(sim: &mut Sim, hosts: &[usize]) -> Instant {
    sim.run_until_true(Duration::from_secs(5), |sim| {
        hosts
            .iter()
            .all(|&i| sim.node(i).state() == HostState::Converged)
    })
    .unwrap_or_else(|| panic!("hosts {hosts:?} did not converge"))
}

fn owned(sim: &Sim, host: usize) -> usize {
    sim.node(host).owned()[0].len()
}

fn fail(sim: &mut Sim, host: usize) -> Option<Health> {
    sim.check_result(host, 0, Probe::Fail("connection refused".into()))
}

fn assert_safe(sim: &Sim) {
    assert!(
        sim.violations.is_empty(),
        "{} double-ownership moments, first: {:?}",
        sim.violations.len(),
        sim.violations.first()
    );
}

#[test]
fn a_down_check_drains_only_its_host_and_it_comes_back_after_rise() {
    let mut sim = cluster("drain");
    converge(&mut sim, &[0, 1, 2]);
    let before: Vec<usize> = (0..3).map(|h| owned(&sim, h)).collect();
    sim.open_random_flows(600, Duration::from_secs(2), VIP, 80, Duration::from_secs(4));
    sim.run_for(Duration::from_secs(1));

    // One failure is not enough (fall = 2).
    assert_eq!(fail(&mut sim, 1), None);
    sim.run_for(Duration::from_millis(300));
    assert_eq!(owned(&sim, 1), before[1]);
    assert_eq!(fail(&mut sim, 1), Some(Health::Down));
    sim.run_until_true(Duration::from_secs(1), |sim| owned(sim, 1) == 0)
        .expect("host 2 leaves the rule");
    converge(&mut sim, &[0, 1, 2]);
    assert_eq!(owned(&sim, 0) + owned(&sim, 2), 256);
    // Only host 2's buckets moved: the others kept theirs and took a share of its.
    assert!(owned(&sim, 0) > before[0] && owned(&sim, 2) > before[2]);
    assert!(
        !sim.hosts[1].conntrack.is_empty(),
        "drain keeps host 2's connections"
    );
    // Its peers see why in its heartbeats: no panic anywhere.
    assert!(!(0..3).any(|h| sim.node(h).check_panic(0)));

    // Passing once is not enough (rise = 2), twice brings it back.
    assert_eq!(sim.check_result(1, 0, Probe::Pass), None);
    sim.run_for(Duration::from_millis(300));
    assert_eq!(owned(&sim, 1), 0);
    assert_eq!(sim.check_result(1, 0, Probe::Pass), Some(Health::Up));
    converge(&mut sim, &[0, 1, 2]);
    assert!((85..=86).contains(&owned(&sim, 1)), "{}", owned(&sim, 1));
    sim.run_for(Duration::from_secs(6));
    assert_eq!(sim.flows.values().filter(|f| f.broken).count(), 0);
    assert_safe(&sim);
    let down = sim.events_matching(
        |e| matches!(e, Event::CheckChanged { health: Health::Down, name, .. } if name == "web"),
    );
    assert_eq!(down.iter().map(|&(_, h)| h).collect::<Vec<_>>(), vec![1]);
}

#[test]
fn a_check_down_on_every_host_keeps_the_rule_served() {
    let mut sim = cluster("drain");
    converge(&mut sim, &[0, 1, 2]);
    for host in [1, 2] {
        fail(&mut sim, host);
        fail(&mut sim, host);
    }
    converge(&mut sim, &[0, 1, 2]);
    assert_eq!(owned(&sim, 0), 256, "host 1 is the only healthy one");
    // The last healthy host fails too: nobody leaves, everybody serves (panic).
    fail(&mut sim, 0);
    assert_eq!(fail(&mut sim, 0), Some(Health::Down));
    sim.run_for(Duration::from_millis(500));
    converge(&mut sim, &[0, 1, 2]);
    assert!((0..3).all(|h| sim.node(h).check_panic(0)));
    let shares: Vec<usize> = (0..3).map(|h| owned(&sim, h)).collect();
    assert_eq!(shares.iter().sum::<usize>(), 256, "{shares:?}");
    assert!(shares.iter().all(|&s| (85..=86).contains(&s)), "{shares:?}");
    assert_eq!(
        sim.events_matching(|e| matches!(e, Event::CheckPanic { active: true, .. }))
            .len(),
        3
    );
    // Host 3 recovers: the panic ends and it takes everything.
    sim.check_result(2, 0, Probe::Pass);
    sim.check_result(2, 0, Probe::Pass);
    sim.run_for(Duration::from_millis(500));
    converge(&mut sim, &[0, 1, 2]);
    assert!(!(0..3).any(|h| sim.node(h).check_panic(0)));
    assert_eq!(owned(&sim, 2), 256);
    assert_safe(&sim);
}

#[test]
fn action_stop_cuts_the_hosts_connections_of_the_rule() {
    let mut sim = cluster("stop");
    converge(&mut sim, &[0, 1, 2]);
    sim.open_random_flows(300, Duration::from_secs(1), VIP, 80, Duration::from_secs(5));
    sim.run_for(Duration::from_secs(2));
    let on_host_2 = sim.hosts[1].conntrack.len();
    assert!(on_host_2 > 0);
    fail(&mut sim, 1);
    fail(&mut sim, 1);
    sim.run_for(Duration::from_millis(300));
    let broken: Vec<usize> = sim
        .flows
        .values()
        .filter(|f| f.broken)
        .filter_map(|f| f.host)
        .collect();
    assert_eq!(broken.len(), on_host_2);
    assert!(broken.iter().all(|&h| h == 1));
    assert_eq!(owned(&sim, 0) + owned(&sim, 2), 256);
    assert_safe(&sim);
}

#[test]
fn results_for_checks_that_do_not_exist_are_ignored() {
    let mut sim = cluster("drain");
    converge(&mut sim, &[0, 1, 2]);
    assert_eq!(sim.check_result(1, 7, Probe::Fail("stale".into())), None);
    for _ in 0..10 {
        sim.check_result(1, usize::MAX, Probe::Fail("x".into()));
    }
    sim.run_for(Duration::from_millis(300));
    assert!((85..=86).contains(&owned(&sim, 1)));
}

/// A standby with weight 0 takes no share, so it does not count as a host that would
/// serve the rule: when every other host's check is down, the rule is in panic and
/// served, not left to nobody.
#[test]
fn a_weight_zero_standby_does_not_block_the_panic_rule() {
    let check = "[[check]]\nname = \"web\"\ntype = \"tcp\"\ntarget = \"198.18.0.10:80\"\nfall = 1\nrise = 1\n";
    let configs = (1..=3)
        .map(|id| {
            let weight = if id == 1 { "weight = 0\n" } else { "" };
            test_config(id, ClusterMode::Multicast, "", &format!("{weight}{check}"))
        })
        .collect();
    let mut sim = Sim::new(SimConfig::default(), configs, 0);
    converge(&mut sim, &[0, 1, 2]);
    assert_eq!(owned(&sim, 0), 0, "weight 0 takes nothing");
    for host in [1, 2] {
        assert_eq!(
            sim.check_result(host, 0, Probe::Fail("refused".into())),
            Some(Health::Down)
        );
    }
    sim.run_for(Duration::from_millis(500));
    converge(&mut sim, &[0, 1, 2]);
    assert!((0..3).all(|h| sim.node(h).check_panic(0)));
    assert_eq!(owned(&sim, 1) + owned(&sim, 2), 256);
    assert_eq!(sim.unowned_buckets(0), 0);
    assert_safe(&sim);
}

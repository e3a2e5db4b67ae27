//! The simulator records what the core decided: a SYN that two hosts accept is a
//! violation with the rule slot and bucket of the hosts' `Decision`, whatever the rule's
//! affinity, and flows no rule covers fall to the fallback rule's slot.

mod common;

use nlb_core::config::{Affinity, Config};
use nlb_core::filter::{Flow, RuleRef, bucket_for, cluster_seed};
use nlb_sim::{Sim, SimConfig, test_config};
use nlb_wire::addressing::ClusterMode;
use std::net::Ipv4Addr;
use std::time::Duration;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

/// Two hosts with rule 1 (TCP port 80) of `affinity`, split so that each owns every
/// bucket, then a SYN to port 80 and one to port 443 (no rule: the fallback rule).
/// Both hosts accept each SYN; the violations must name the flow's slot and bucket.
fn double_accept(affinity: &str) {
    let configs: Vec<Config> = (1..=2)
        .map(|id| {
            test_config(
                id,
                ClusterMode::Multicast,
                "",
                &format!("affinity = \"{affinity}\""),
            )
        })
        .collect();
    let config = configs[0].clone();
    let mut sim = Sim::new(SimConfig::default(), configs, 1);
    sim.run_for(Duration::from_secs(1));
    sim.partition(&[&[0], &[1]]);
    sim.run_for(Duration::from_secs(1));
    for host in 0..2 {
        for slot in 0..=config.rules.len() {
            assert_eq!(
                sim.node(host).owned()[slot].len(),
                256,
                "{affinity}: host {host}"
            );
        }
    }
    let src = Ipv4Addr::new(198, 18, 200, 7);
    let flows = [(80, RuleRef::Configured(0)), (443, RuleRef::Fallback)];
    let mut ids = Vec::new();
    for (port, rule) in flows {
        let id = sim.open_flow(src, 41234, VIP, port, Duration::from_secs(5));
        ids.push((id, port, rule));
    }
    sim.run_for(Duration::from_millis(10));
    for (id, port, rule) in ids {
        let flow = sim.flows[&id].flow;
        let recorded: Vec<_> = sim
            .violations
            .iter()
            .filter(|v| v.flow == Some(id))
            .collect();
        assert_eq!(recorded.len(), 1, "{affinity}, port {port}: {recorded:?}");
        let violation = recorded[0];
        assert_eq!(violation.hosts, vec![0, 1], "{affinity}, port {port}");
        assert!(violation.partitioned);
        assert_eq!(
            violation.slot,
            rule.slot(config.rules.len()),
            "{affinity}, port {port}"
        );
        assert_eq!(
            Some(violation.bucket),
            bucket_for(&config, &flow),
            "{affinity}, port {port}"
        );
        let affinity = rule.rule(&config).affinity;
        assert_eq!(
            violation.bucket,
            affinity.bucket(&flow, cluster_seed(&config))
        );
    }
}

/// The flow of [`double_accept`] hashes to different buckets under each affinity, so a
/// simulator that hashed every flow as affinity single would report the wrong one.
#[test]
fn the_test_flow_tells_the_affinities_apart() {
    let flow = Flow {
        src: Ipv4Addr::new(198, 18, 200, 7),
        src_port: 41234,
        dst: VIP,
        dst_port: 80,
        protocol: nlb_core::config::Protocol::Tcp,
    };
    let seed = cluster_seed(&test_config(1, ClusterMode::Multicast, "", ""));
    let single = Affinity::Single.bucket(&flow, seed);
    assert_ne!(Affinity::None.bucket(&flow, seed), single);
    assert_ne!(Affinity::Network.bucket(&flow, seed), single);
}

#[test]
fn violations_carry_the_bucket_of_affinity_none() {
    double_accept("none");
}

#[test]
fn violations_carry_the_bucket_of_affinity_network() {
    double_accept("network");
}

#[test]
fn violations_carry_the_bucket_of_affinity_single() {
    double_accept("single");
}

/// A rule drained on one host: its connections break, the fallback rule's do not.
#[test]
fn disabling_a_rule_drops_only_that_rules_connections() {
    let mut sim = common::cluster(1, ClusterMode::Multicast, SimConfig::default());
    sim.run_for(Duration::from_secs(1));
    let src = Ipv4Addr::new(198, 18, 200, 8);
    let on_rule = sim.open_flow(src, 40000, VIP, 80, Duration::from_secs(60));
    let on_fallback = sim.open_flow(src, 40001, VIP, 443, Duration::from_secs(60));
    sim.run_for(Duration::from_millis(10));
    assert_eq!(sim.flows[&on_rule].host, Some(0));
    assert_eq!(sim.flows[&on_fallback].host, Some(0));
    let config = sim.hosts[0].config.clone();
    let selector = nlb_core::node::RuleSelector::Index(0);
    sim.command(0, nlb_core::node::Command::DisableRule(selector))
        .expect("disable rule 1");
    sim.run_for(Duration::from_millis(10));
    assert!(sim.flows[&on_rule].broken, "{config:?}");
    assert!(!sim.flows[&on_fallback].broken);
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
}

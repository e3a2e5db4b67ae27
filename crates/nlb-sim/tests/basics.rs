//! First checks of the simulator and the core together.

mod common;

use common::cluster;
use nlb_sim::SimConfig;
use nlb_wire::addressing::ClusterMode;
use nlb_wire::heartbeat::HostState;
use std::time::Duration;

#[test]
fn three_hosts_converge_and_split_every_bucket() {
    let mut sim = cluster(3, ClusterMode::Multicast, SimConfig::default());
    let converged = sim.run_until_true(Duration::from_secs(3), |sim| {
        (0..3).all(|i| sim.node(i).state() == HostState::Converged)
    });
    assert!(
        converged.is_some(),
        "not converged: {:?}",
        (0..3).map(|i| sim.node(i).state()).collect::<Vec<_>>()
    );
    for slot in 0..2 {
        assert_eq!(sim.unowned_buckets(slot), 0, "slot {slot}");
    }
    let shares: Vec<usize> = (0..3).map(|i| sim.node(i).owned()[0].len()).collect();
    assert_eq!(shares.iter().sum::<usize>(), 256);
    assert!(shares.iter().all(|&s| (85..=86).contains(&s)), "{shares:?}");
    assert!(
        sim.violations.is_empty(),
        "{:?}",
        &sim.violations[..sim.violations.len().min(5)]
    );
}

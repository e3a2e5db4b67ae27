//! Planned changes under load lose nothing (issue test 6).

use crate::{CLIENTS, world};
use nlb_lab::load::{Attempt, Seen};
use nlb_lab::segment::client_addresses;
use nlb_linux::netns::require_root;
use nlb_wire::addressing::ClusterMode;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// 6. Planned changes lose nothing: under keep-alive and new-connection load, host 2
///    drains (its keep-alive sessions go on, new connections go elsewhere), stops, starts
///    again, and a fourth host joins. Zero failed requests, zero resets.
#[test]
fn planned_changes_lose_nothing() {
    if !require_root("planned_changes_lose_nothing") {
        return;
    }
    let world = world(ClusterMode::Multicast, 4);
    world.start(&[0, 1, 2]);
    world.wait_converged(&[0, 1, 2]);
    let keepalive_sources: Vec<Ipv4Addr> = client_addresses(CLIENTS).take(8).collect();
    let load = world.load(&keepalive_sources);
    std::thread::sleep(Duration::from_millis(500));

    let drained = Instant::now();
    let answer = world.ctl(1, "drainstop").unwrap();
    assert_eq!(answer["state"], "draining", "{answer}");
    world.wait_for("host 2's buckets to move", Duration::from_secs(5), |w| {
        let owned = |i: usize| {
            w.ctl(i, "query")
                .map(|q| q["owned_buckets"][0].as_u64().unwrap_or(0))
        };
        owned(1) == Some(0) && owned(0).zip(owned(2)).is_some_and(|(a, b)| a + b == 256)
    });
    let handed_off = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    // The keep-alive sessions end; the drain completes.
    let Seen {
        new: attempts_a,
        keepalive,
    } = load.finish();
    world.wait_for("host 2 to finish draining", Duration::from_secs(5), |w| {
        w.ctl(1, "query").is_some_and(|q| q["state"] == "stopped")
    });
    let load = world.load(&[]);
    assert_eq!(world.ctl(1, "stop").unwrap()["state"], "stopped");
    world.start(&[1]);
    world.wait_converged(&[0, 1, 2]);
    world.start(&[3]);
    world.wait_converged(&[0, 1, 2, 3]);
    std::thread::sleep(Duration::from_millis(500));
    let attempts_b = load.finish().new;

    let all: Vec<&Attempt> = attempts_a
        .iter()
        .chain(&attempts_b)
        .chain(&keepalive)
        .collect();
    let failed: Vec<_> = all.iter().filter(|a| a.answer.is_err()).collect();
    let retried = all
        .iter()
        .filter(|a| a.took > Duration::from_millis(500))
        .count();
    eprintln!(
        "planned changes: {} requests ({} keep-alive), {} failed, {retried} needed a SYN retry",
        all.len(),
        keepalive.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} failed, first {:?}",
        failed.len(),
        failed.first()
    );
    assert!(
        keepalive
            .iter()
            .any(|a| a.answer.as_deref() == Ok("host2") && a.started > handed_off),
        "host 2 kept serving its keep-alive sessions while draining"
    );
    let new_to_host2 = attempts_a
        .iter()
        .filter(|a| a.started > handed_off && a.answer.as_deref() == Ok("host2"))
        .count();
    assert_eq!(
        new_to_host2, 0,
        "host 2 took new connections while draining"
    );
    assert!(
        attempts_b
            .iter()
            .any(|a| a.answer.as_deref() == Ok("host4")),
        "host 4 serves"
    );
    let _ = drained;
}

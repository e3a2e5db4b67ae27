//! Health checks on the real kernel (issue 14): a host whose server dies leaves its
//! clients to the others within `fall × interval` plus convergence and takes them back
//! when the server returns; a check down on every host keeps the VIP served; an exec
//! check that hangs is killed at its timeout.

use crate::common::{HostSetup, World};
use crate::{CLIENTS, world_with};
use nlb_lab::load::{Attempt, served_by};
use nlb_linux::netns::require_root;
use nlb_wire::addressing::ClusterMode;
use std::time::{Duration, Instant};

const INTERVAL_MS: u64 = 100;
const FALL: u64 = 2;

/// A `[[check]]` table probing `target` over TCP every 100 ms, fall 2, rise 2.
fn tcp_check(target: &str) -> String {
    format!(
        "[[check]]\nname = \"web\"\ntype = \"tcp\"\ntarget = \"{target}\"\ninterval_ms = {INTERVAL_MS}\ntimeout_ms = 50\nfall = {FALL}\nrise = 2\n"
    )
}

fn with_check(check: String) -> impl Fn(u8) -> HostSetup {
    move |_| HostSetup {
        tail: Some(check.clone()),
        ..HostSetup::default()
    }
}

/// Host `index`'s check, from `nlb query --json`.
fn check_of(world: &World, index: usize) -> serde_json::Value {
    world
        .ctl(index, "query")
        .map(|q| q["checks"][0].clone())
        .unwrap_or_default()
}

fn wait_check(world: &World, index: usize, health: &str, limit: Duration) {
    world.wait_for(&format!("host {} check {health}", index + 1), limit, |w| {
        check_of(w, index)["health"] == health
    });
}

fn owned(world: &World, index: usize) -> u64 {
    world
        .ctl(index, "query")
        .and_then(|q| q["owned_buckets"][0].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_dead_server_moves_only_its_clients_and_they_come_back() {
    if !require_root("a_dead_server_moves_only_its_clients_and_they_come_back") {
        return;
    }
    let mut world = world_with(
        ClusterMode::Multicast,
        3,
        with_check(tcp_check("198.18.0.10:80")),
    );
    world.start_all();
    let load = world.load(&[]);
    std::thread::sleep(Duration::from_millis(800));

    // Host 2's server dies.
    let died = Instant::now();
    world.kill_server(1);
    wait_check(&world, 1, "down", Duration::from_secs(3));
    world.wait_for("host 2 out of the rule", Duration::from_secs(3), |w| {
        owned(w, 1) == 0
    });
    let moved = died.elapsed();
    world.wait_converged(&[0, 1, 2]);
    // The others see why host 2 left: its heartbeats say its check is down.
    let members = world.ctl(0, "query").unwrap()["members"].clone();
    let host2 = members
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == 2))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        host2["check_down_rules"],
        serde_json::json!([0]),
        "{members}"
    );
    std::thread::sleep(Duration::from_millis(1000));

    // It comes back, and takes its share back.
    let returned = Instant::now();
    world.restart_server(1);
    wait_check(&world, 1, "up", Duration::from_secs(3));
    world.wait_for("host 2 serves again", Duration::from_secs(3), |w| {
        owned(w, 1) > 0
    });
    world.wait_converged(&[0, 1, 2]);
    std::thread::sleep(Duration::from_millis(1000));
    let attempts = load.finish().new;

    let host2_clients = served_by(&attempts, "host2", died);
    assert!(
        !host2_clients.is_empty() && host2_clients.len() < usize::from(CLIENTS),
        "host 2 served {} clients",
        host2_clients.len()
    );
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| a.answer.is_err()).collect();
    eprintln!(
        "health: {} requests, {} failed, host 2 out {moved:?} after its server died",
        attempts.len(),
        failed.len()
    );
    // Only host 2's clients failed, only while its check had not yet gone down and the
    // cluster moved its buckets: fall × interval, one timeout, and convergence.
    let bound = Duration::from_millis(FALL * INTERVAL_MS + 50) + Duration::from_millis(700);
    for attempt in &failed {
        assert!(
            host2_clients.contains(&attempt.src),
            "a client of another host failed: {attempt:?}"
        );
        assert!(
            attempt.started >= died && attempt.started < died + bound,
            "a request failed {:?} after the server died: {attempt:?}",
            attempt.started.saturating_duration_since(died)
        );
    }
    assert!(moved < bound, "host 2 left after {moved:?}");
    // While host 2's server was down its clients were served by the others.
    let during = |a: &&Attempt| a.started > died + bound && a.started < returned;
    assert!(
        attempts
            .iter()
            .filter(during)
            .filter(|a| host2_clients.contains(&a.src))
            .all(|a| a.answer.is_ok() && !a.answered_by("host2")),
    );
    // After it returned, nothing failed and host 2 answered again.
    assert!(
        attempts
            .iter()
            .filter(|a| a.started >= returned)
            .all(|a| a.answer.is_ok())
    );
    assert!(
        attempts
            .iter()
            .any(|a| a.started > returned && a.answered_by("host2")),
        "host 2 never answered after its server returned"
    );
    let log = world.log(1);
    assert!(
        log.contains("nlb.check_down") && log.contains("nlb.check_up"),
        "{log}"
    );
    assert!(!world.logs().contains("nlb.check_panic"));
}

#[test]
fn a_check_down_on_every_host_keeps_the_vip_served() {
    if !require_root("a_check_down_on_every_host_keeps_the_vip_served") {
        return;
    }
    // Nothing listens on port 81: a typo in the target, the same on every host.
    let world = world_with(
        ClusterMode::Multicast,
        2,
        with_check(tcp_check("198.18.0.10:81")),
    );
    world.start_all();
    for index in [0, 1] {
        wait_check(&world, index, "down", Duration::from_secs(3));
    }
    world.wait_for("the panic rule on both", Duration::from_secs(3), |w| {
        [0, 1].iter().all(|&i| check_of(w, i)["panic"] == true)
    });
    world.wait_converged(&[0, 1]);
    world.assert_all_served();
    assert!((0..2).all(|i| owned(&world, i) > 0));
    let logs = world.logs();
    assert!(logs.contains("nlb.check_panic"), "{logs}");
    let error = check_of(&world, 0)["last_error"].clone();
    assert!(
        error.as_str().is_some_and(|e| e.contains("198.18.0.10:81")),
        "{error}"
    );
}

#[test]
fn a_hanging_exec_check_is_killed_at_its_timeout() {
    if !require_root("a_hanging_exec_check_is_killed_at_its_timeout") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let check = format!(
        "[[check]]\nname = \"stuck\"\ntype = \"exec\"\nshell = true\ntarget = \"echo $$ >> {}; exec sleep 30\"\ninterval_ms = 1000\ntimeout_ms = 500\nfall = 1\nrise = 1\n",
        pids.display()
    );
    let world = world_with(ClusterMode::Multicast, 1, with_check(check));
    world.start_all();
    world.wait_for("three runs", Duration::from_secs(8), |w| {
        check_of(w, 0)["runs"].as_u64().unwrap_or(0) >= 3
    });
    let check = check_of(&world, 0);
    assert_eq!(check["health"], "down", "{check}");
    assert_eq!(check["last_error"], "timed out after 500 ms", "{check}");
    // Every run's program is gone (killed at its timeout, and reaped), not sleeping on.
    let started: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|line| line.trim().parse().unwrap())
        .collect();
    assert!(started.len() >= 3, "{started:?}");
    let alive = |pid: &i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat.rsplit(')').next().map(|s| s.trim().to_owned()))
            .is_some_and(|state| !state.starts_with('Z') && !state.starts_with('X'))
    };
    // The newest run may still be within its 500 ms.
    let old = &started[..started.len() - 1];
    assert!(!old.iter().any(alive), "runs left behind: {started:?}");
    // A single host whose only check is down keeps serving (the panic rule).
    world.assert_all_served();
}

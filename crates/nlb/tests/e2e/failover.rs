//! Unplanned failures under load: a link down, a killed daemon (issue test 5), a paused
//! one (12), and the failover figures for BENCHMARKS.md.

use crate::world;
use nlb_lab::load::last_trouble;
use nlb_linux::netns::require_root;
use nlb_wire::addressing::ClusterMode;
use std::time::{Duration, Instant};

/// 5. Failover while a client opens a new connection every 10 ms: a host's link goes
///    down, then a daemon is killed. Connections recover within a few hundred ms, and
///    the killed daemon's host takes no new connection once its lease has ended.
#[test]
fn failover_on_link_down_and_daemon_kill() {
    if !require_root("failover_on_link_down_and_daemon_kill") {
        return;
    }
    let mut world = world(ClusterMode::Multicast, 3);
    world.start_all();
    let load = world.load(&[]);
    std::thread::sleep(Duration::from_millis(500));

    // Host 3's link goes down.
    let link_down = Instant::now();
    world.hosts[2]
        .ns
        .ip(&["link", "set", "eth0", "down"])
        .unwrap();
    world.wait_converged(&[0, 1]);
    std::thread::sleep(Duration::from_millis(1500));

    // Host 2's daemon is killed; its kernel keeps the last ruleset, lease included.
    let killed = Instant::now();
    world.kill_daemon(1);
    world.wait_converged(&[0]);
    std::thread::sleep(Duration::from_millis(1500));
    let attempts = load.finish().new;

    let link_outage = last_trouble(&attempts, link_down, killed);
    let kill_outage = last_trouble(&attempts, killed, Instant::now());
    eprintln!(
        "failover: {} connections; outage after link down {link_outage:?}, after SIGKILL {kill_outage:?}",
        attempts.len()
    );
    // Every connection got an answer in the end (a dropped SYN is retried by TCP).
    let failed: Vec<_> = attempts.iter().filter(|a| a.answer.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} failed, first {:?}",
        failed.len(),
        failed.first()
    );
    assert!(link_outage < Duration::from_millis(1500), "{link_outage:?}");
    assert!(kill_outage < Duration::from_millis(1500), "{kill_outage:?}");
    // Once the killed daemon's lease (75 ms) has run out, its host takes nothing new.
    let lease_end = killed + Duration::from_millis(100);
    let late: Vec<_> = attempts
        .iter()
        .filter(|a| a.started > lease_end && a.answer.as_deref() == Ok("host2"))
        .collect();
    assert!(
        late.is_empty(),
        "host 2 answered after its lease: {:?}",
        late.first()
    );
    // And after the link went down, host 3 answered nothing.
    assert!(
        attempts
            .iter()
            .filter(|a| a.started > link_down)
            .all(|a| a.answer.as_deref() != Ok("host3"))
    );
}

/// Failover figures for BENCHMARKS.md, not a pass/fail test: `NLB_TRIALS` (default 20)
/// link-down and SIGKILL failures of one host of three, each under a new connection
/// every 10 ms, with the outage of each. Run by hand:
///
/// ```sh
/// sudo cargo test --release -p nlb --test e2e -- --ignored --nocapture failover_trials
/// ```
#[test]
#[ignore]
fn failover_trials() {
    if !require_root("failover_trials") {
        return;
    }
    let trials: usize = std::env::var("NLB_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(20);
    let mut results: Vec<(&str, Vec<Duration>)> =
        vec![("link down", Vec::new()), ("SIGKILL", Vec::new())];
    let mut world = world(ClusterMode::Multicast, 3);
    world.start_all();
    for trial in 0..trials {
        for (kind, outages) in &mut results {
            let victim = 2 - trial % 2; // alternate hosts 2 and 3
            let load = world.load(&[]);
            std::thread::sleep(Duration::from_millis(300));
            let failed_at = Instant::now();
            if *kind == "link down" {
                world.hosts[victim]
                    .ns
                    .ip(&["link", "set", "eth0", "down"])
                    .unwrap();
            } else {
                world.kill_daemon(victim);
            }
            let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
            world.wait_converged(&survivors);
            std::thread::sleep(Duration::from_millis(1200));
            let attempts = load.finish().new;
            outages.push(last_trouble(&attempts, failed_at, Instant::now()));
            // Restore the host and let the cluster settle.
            if *kind == "link down" {
                world.hosts[victim]
                    .ns
                    .ip(&["link", "set", "eth0", "up"])
                    .unwrap();
            } else {
                world.start_daemon(victim);
                world.start(&[victim]);
            }
            world.wait_converged(&[0, 1, 2]);
        }
    }
    println!("| failure | trials | median | p99 | max |\n|---|---|---|---|---|");
    for (kind, mut outages) in results {
        outages.sort();
        let pick = |q: f64| outages[((outages.len() - 1) as f64 * q).round() as usize];
        println!(
            "| {kind} | {} | {:.0} ms | {:.0} ms | {:.0} ms |",
            outages.len(),
            pick(0.5).as_secs_f64() * 1e3,
            pick(0.99).as_secs_f64() * 1e3,
            outages.last().unwrap().as_secs_f64() * 1e3
        );
    }
}

/// 12. A paused daemon (SIGSTOP, as a frozen VM or a swap storm would) comes back as a
///     joiner: in a 2-host and a 3-host cluster under a new connection every 10 ms, for
///     pauses below the lease, between the lease and the failure window, and well past
///     it. The paused host owns nothing from the moment it notices its stall until it
///     has installed a view with every other host, and no client request fails.
#[test]
fn a_paused_daemon_rejoins_as_a_joiner() {
    if !require_root("a_paused_daemon_rejoins_as_a_joiner") {
        return;
    }
    use nix::sys::signal::Signal;
    for hosts in [2u8, 3] {
        let world = world(ClusterMode::Multicast, hosts);
        world.start_all();
        let all: Vec<usize> = (0..usize::from(hosts)).collect();
        let victim = usize::from(hosts) - 1;
        let load = world.load(&[]);
        std::thread::sleep(Duration::from_millis(300));
        // The lease and stall threshold are 75 ms, the failure window 150 ms.
        let mut paused_at = Vec::new();
        // A pause costs new connections two short gaps, as any failover and hand-back
        // does today (issue 16): from the lease's end to the takeover, and at the
        // hand-back when the host rejoins. A client whose SYN falls in one retries 1 s
        // later; pauses are spaced so that the retry never meets the next gap (1000 ms
        // would put the rejoin about 1 s after the first gap), which is what a 3 s
        // connect timeout could not survive.
        for pause_ms in [40u64, 110, 300, 1500] {
            let skip = world.log(victim).lines().count();
            paused_at.push((pause_ms, Instant::now()));
            world.signal_daemon(victim, Signal::SIGSTOP);
            // The pause itself: the daemon must not run for this long.
            std::thread::sleep(Duration::from_millis(pause_ms));
            world.signal_daemon(victim, Signal::SIGCONT);
            world.wait_converged(&all);
            let lines = world.log_lines_from(victim, skip);
            let stalled = lines.iter().position(|l| l.contains("nlb.stalled"));
            if pause_ms >= 100 {
                let stalled = stalled.unwrap_or_else(|| {
                    panic!(
                        "{hosts} hosts, {pause_ms} ms: no stall noticed:\n{}",
                        lines.join("\n")
                    )
                });
                // From the stall on, the first claim comes with a view of everyone: no
                // view without them before it, and the full view installed in the same
                // step (a step logs its ownership, then its events) or before.
                let members: Vec<String> = all.iter().map(|i| (i + 1).to_string()).collect();
                let full = format!("members={{{}}}", members.join(", "));
                let after = &lines[stalled..];
                if let Some(claim) = after
                    .iter()
                    .position(|l| l.contains("nlb.ownership") && !l.contains("owned=[0, 0]"))
                {
                    let step_end = after[claim + 1..]
                        .iter()
                        .position(|l| l.contains("nlb.ownership"))
                        .map_or(after.len(), |p| claim + 1 + p);
                    let views: Vec<&String> = after[..step_end]
                        .iter()
                        .filter(|l| l.contains("nlb.view_installed"))
                        .collect();
                    assert!(
                        !views.is_empty() && views.iter().all(|l| l.contains(&full)),
                        "{hosts} hosts, {pause_ms} ms: claimed before a view with everyone:\n{}",
                        lines.join("\n")
                    );
                }
            } else {
                assert!(stalled.is_none(), "{pause_ms} ms is within the lease");
            }
            // Spacing, not waiting for an event: SYNs that met this pause's gaps are
            // retried (after 1 s) before the next pause begins.
            std::thread::sleep(Duration::from_millis(1500));
        }
        let attempts = load.finish().new;
        let failed: Vec<_> = attempts.iter().filter(|a| a.answer.is_err()).collect();
        for a in &failed {
            let since: Vec<String> = paused_at
                .iter()
                .map(|(ms, at)| {
                    format!(
                        "{ms}ms pause {:?}",
                        a.started.saturating_duration_since(*at)
                    )
                })
                .collect();
            eprintln!("failed request started after: {since:?} took {:?}", a.took);
        }
        eprintln!(
            "paused daemon, {hosts} hosts: {} connections, {} failed",
            attempts.len(),
            failed.len()
        );
        assert!(
            failed.is_empty(),
            "{hosts} hosts: {} of {} requests failed, first {:?}",
            failed.len(),
            attempts.len(),
            failed.first().map(|a| &a.answer)
        );
    }
}

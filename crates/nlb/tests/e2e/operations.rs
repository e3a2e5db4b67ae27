//! The operator's side: per-rule verbs, suspend and resume, `drainstop --wait`,
//! OpenMetrics, and `nlb lab`.

use crate::common::{HostSetup, VIP, World, nlb, scrape};
use crate::{world, world_with};
use nlb_linux::netns::require_root;
use nlb_wire::addressing::ClusterMode;
use std::process::Command;
use std::time::Duration;

/// The operator's verbs: per-rule drain, enable and disable by VIP:PORT, a refusal for a
/// port no rule covers, `drainstop --wait`, and the error when no daemon answers.
#[test]
fn rule_verbs_and_drainstop_wait() {
    if !require_root("rule_verbs_and_drainstop_wait") {
        return;
    }
    let world = world(ClusterMode::Multicast, 2);
    world.start_all();
    let cli = |index: usize, args: &[&str]| {
        Command::new(nlb())
            .args(args)
            .arg("--socket")
            .arg(&world.hosts[index].socket)
            .output()
            .unwrap()
    };
    let owned = |w: &World, index: usize| {
        w.ctl(index, "query").unwrap()["owned_buckets"][0]
            .as_u64()
            .unwrap()
    };
    assert!(cli(0, &["drain", &format!("{VIP}:80")]).status.success());
    world.wait_for("host 2 to take rule 1 whole", Duration::from_secs(5), |w| {
        owned(w, 0) == 0 && owned(w, 1) == 256
    });
    assert!(cli(0, &["enable", "all"]).status.success());
    world.wait_for(
        "host 1 to get its share back",
        Duration::from_secs(5),
        |w| owned(w, 0) == 128 && owned(w, 1) == 128,
    );
    // Suspend halts everything and refuses other commands until resume.
    let suspended = cli(0, &["suspend", "--json"]);
    assert!(String::from_utf8_lossy(&suspended.stdout).contains("\"state\":\"suspended\""));
    world.wait_for("host 2 to take everything", Duration::from_secs(5), |w| {
        owned(w, 1) == 256
    });
    assert_eq!(owned(&world, 0), 0);
    let refused_stop = cli(0, &["stop"]);
    assert_eq!(refused_stop.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused_stop.stderr).contains("suspended"));
    assert!(cli(0, &["resume"]).status.success());
    world.wait_for("host 1 to rejoin", Duration::from_secs(5), |w| {
        owned(w, 0) == 128 && owned(w, 1) == 128
    });
    let not_suspended = cli(0, &["resume"]);
    assert_eq!(not_suspended.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_suspended.stderr).contains("not suspended"));
    let refused = cli(0, &["disable", &format!("{VIP}:81")]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no rule covers"));

    let drained = cli(1, &["drainstop", "--wait", "--timeout", "5"]);
    assert!(
        drained.status.success(),
        "{}",
        String::from_utf8_lossy(&drained.stderr)
    );
    assert!(String::from_utf8_lossy(&drained.stdout).contains("drained: stopped"));
    world.wait_for("host 1 to take everything", Duration::from_secs(5), |w| {
        owned(w, 0) == 256
    });

    let nobody = Command::new(nlb())
        .args(["query", "--socket"])
        .arg(world.dir.path().join("nobody.sock"))
        .output()
        .unwrap();
    assert_eq!(nobody.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&nobody.stderr);
    assert!(
        stderr.contains("no nlb daemon answers") && stderr.contains("nlb run"),
        "{stderr}"
    );
}

/// OpenMetrics on `[metrics] listen`: state, members, owned buckets, heartbeat counters,
/// and the data plane's packet counters, which move when clients are served.
#[test]
fn metrics_endpoint() {
    if !require_root("metrics_endpoint") {
        return;
    }
    let world = world_with(ClusterMode::Multicast, 2, |_| HostSetup {
        tail: Some("[metrics]\nlisten = \"127.0.0.1:9102\"\n".to_owned()),
        ..HostSetup::default()
    });
    world.start_all();
    for (src, answer) in world.serve_all() {
        answer.unwrap_or_else(|e| panic!("{src}: {e}"));
    }
    let text = scrape(&world.hosts[0].ns).unwrap();
    assert!(text.contains("application/openmetrics-text"), "{text}");
    for want in [
        "nlb_state{state=\"converged\"} 1",
        "nlb_members 2",
        "nlb_owned_buckets{rule=\"1\"} 128",
        "nlb_draining_buckets{rule=\"default\"} ",
        "nlb_drain_count_failures_total 0",
        "nlb_heartbeats_sent_total ",
        "nlb_heartbeats_received_total ",
        "nlb_convergences_total ",
        "nlb_heartbeats_dropped_total{reason=\"bad_tag\"} 0",
        "nlb_heartbeats_dropped_total{reason=\"replay\"} 0",
        "nlb_heartbeats_dropped_total{reason=\"malformed\"} 0",
        "nlb_heartbeats_dropped_total{reason=\"foreign_cluster\"} 0",
        "# EOF",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    let accepted = text
        .lines()
        .find(|l| l.starts_with("nlb_dataplane_packets_total{rule=\"rule1 accept\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(accepted > 0, "no accepted packets counted:\n{text}");
}

/// `nlb lab` tells the whole story and leaves nothing behind.
#[test]
fn the_lab_plays_the_story_and_cleans_up() {
    if !require_root("the_lab_plays_the_story_and_cleans_up") {
        return;
    }
    let out = Command::new(nlb()).arg("lab").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for milestone in [
        "converged in",
        "every one answered by exactly one host",
        "lladdr 03:bf:c6:12:00:0a",
        "took over host 3's clients",
        "0 failed",
        "rejoined",
        "nlb drainstop on host 2",
        "drainstop under load   0 of",
        "nlb cluster 198.18.0.10: multicast mode, 3 hosts",
        // The doctor, watching the client's port all along, finds no error, and host 3's
        // silence while its link was down (checked below).
        "0 errors,",
        "nlb_heartbeat_gap: Host 3 ",
        "removing the namespaces",
    ] {
        assert!(
            text.contains(milestone),
            "missing {milestone:?} in:\n{text}"
        );
    }
    // Every finding the lab lists besides the cluster summary is that one silence.
    let is_kind =
        |word: &str| !word.is_empty() && word.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    let listed: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("           ")?.split_once(": "))
        .map(|(kind, _)| kind)
        .filter(|&kind| is_kind(kind) && kind != "nlb_cluster")
        .collect();
    assert_eq!(listed, ["nlb_heartbeat_gap"], "in:\n{text}");
    let prefix = text
        .split("network namespaces ")
        .nth(1)
        .and_then(|rest| rest.split('*').next())
        .unwrap()
        .to_owned();
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&left.stdout).contains(&prefix));
}

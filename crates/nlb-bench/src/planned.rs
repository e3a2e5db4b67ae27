//! Scenario 2: planned changes under load, nlb against keepalived.
//!
//! Load: 8 keep-alive sessions (a request every 20 ms each, reconnecting after a
//! failure) and a new connection every 10 ms from 40 rotating addresses, from 500 ms
//! before the change until the change is complete and 1 s (nlb) or 1.5 s (keepalived,
//! whose gratuitous ARPs take a moment) more.
//!
//! - nlb, 4 hosts, 3 of them in the cluster, at its defaults: **drainstop** of host 2
//!   (its keep-alive sessions go on; when its buckets have moved and a second has
//!   passed, the sessions end and the drain completes), **rejoin** of host 2 (`start`),
//!   and **add a host** (host 4 starts).
//! - keepalived, 3 hosts (priorities 100, 90, 80), at its defaults: **stop the master**
//!   (SIGTERM: priority-0 advert, VIP removed), **the master returns** (it preempts),
//!   **lower the master's priority** to 50 and reload (SIGHUP), **restore** it (100,
//!   SIGHUP).
//!
//! Counted for each change: requests, failed requests (new connections and keep-alive
//! requests, including a session's failed reconnects), requests that stalled over 500 ms
//! but succeeded, and TCP resets the client received (an nft counter on the client's
//! input, `tcp flags rst`).

use crate::contender::{Cluster, KeepalivedCluster, NlbCluster, NlbTimers, VrrpTimers};
use crate::lab::{CLIENTS, VIP, wait_until};
use crate::report::Table;
use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use nlb_lab::load::{Attempt, Failure, Load, Plan, Seen};
use nlb_lab::segment::client_addresses;
use nlb_linux::command::run;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// One change and what the client saw.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Change {
    /// `nlb` or `keepalived`.
    pub(crate) contender: &'static str,
    /// The change, in words.
    pub(crate) change: &'static str,
    /// Requests of both kinds.
    pub(crate) requests: usize,
    /// Keep-alive requests among them.
    pub(crate) keepalive_requests: usize,
    /// Failed new connections.
    pub(crate) failed_new: usize,
    /// Failed keep-alive requests (and reconnects).
    pub(crate) failed_keepalive: usize,
    /// Failed requests that ended in a reset.
    pub(crate) failed_by_reset: usize,
    /// Succeeded after a stall over 500 ms (a lost SYN).
    pub(crate) stalled: usize,
    /// TCP resets received by the client.
    pub(crate) resets_received: u64,
    /// The first failure's text, if any.
    pub(crate) first_error: Option<String>,
}

/// The whole scenario.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PlannedReport {
    /// Every change, nlb's first.
    pub(crate) changes: Vec<Change>,
}

const RST_TABLE: &str = "table inet nlbbench {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    tcp flags & rst == rst counter\n  }\n}\n";

fn resets(client: &str) -> Result<u64> {
    let out = run(
        "ip",
        &[
            "netns", "exec", client, "nft", "-j", "list", "table", "inet", "nlbbench",
        ],
        None,
    )
    .context("could not read the client's reset counter")?;
    let json: serde_json::Value = serde_json::from_str(&out)?;
    let packets = json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["rule"]["expr"].as_array())
        .flatten()
        .filter_map(|expr| expr["counter"]["packets"].as_u64())
        .sum();
    Ok(packets)
}

/// Runs the load around `change`, made by `act` on `cluster`, and counts.
fn measure<C: Cluster>(
    contender: &'static str,
    change: &'static str,
    cluster: &mut C,
    after: Duration,
    act: impl FnOnce(&mut C) -> Result<()>,
) -> Result<Change> {
    let sources: Vec<_> = client_addresses(CLIENTS).collect();
    let keepalive: Vec<_> = sources.iter().copied().take(8).collect();
    let client = cluster.lab().client().name().to_owned();
    let before = resets(&client)?;
    let load = Load::start(
        cluster.lab().client(),
        Plan::new_connections(SocketAddr::from((VIP, 80)), sources).keepalive(keepalive),
    )
    .context("could not start the client load")?;
    std::thread::sleep(Duration::from_millis(500));
    let acted = act(cluster);
    std::thread::sleep(after);
    let Seen { new, keepalive } = load.finish();
    acted.with_context(|| format!("{contender}: {change}"))?;
    let resets_received = resets(&client)? - before;
    let failed = |list: &[Attempt]| list.iter().filter(|a| a.answer.is_err()).count();
    let all = || new.iter().chain(&keepalive);
    let result = Change {
        contender,
        change,
        requests: new.len() + keepalive.len(),
        keepalive_requests: keepalive.len(),
        failed_new: failed(&new),
        failed_keepalive: failed(&keepalive),
        failed_by_reset: all()
            .filter(|a| matches!(a.answer, Err((Failure::Reset, _))))
            .count(),
        stalled: all().filter(|a| a.answer.is_ok() && !a.prompt()).count(),
        resets_received,
        first_error: all()
            .filter_map(|a| a.answer.as_ref().err())
            .map(|(_, text)| text.clone())
            .next(),
    };
    eprintln!(
        "  {contender}, {change}: {} requests, {} + {} failed, {} resets received",
        result.requests, result.failed_new, result.failed_keepalive, result.resets_received
    );
    Ok(result)
}

fn nlb_changes(nlb: &Path) -> Result<Vec<Change>> {
    let mut cluster = NlbCluster::build(nlb, 4, "multicast", NlbTimers::DEFAULTS, &[1, 2, 3])?;
    cluster.lab.client().nft(RST_TABLE)?;
    let second = Duration::from_millis(1000);
    let mut changes = Vec::new();
    // Drainstop: measured until a second after the hand-off; then the keep-alive
    // sessions end (in `measure`) and the drain completes.
    changes.push(measure(
        "nlb",
        "drainstop host 2",
        &mut cluster,
        second,
        |cluster| {
            let answer = cluster.command(2, "drainstop")?;
            if answer["state"] != "draining" {
                bail!("drainstop answered {answer}");
            }
            wait_until(
                "host 2's buckets to move",
                Duration::from_secs(5),
                Duration::from_millis(10),
                || {
                    let others = cluster.owned(1).zip(cluster.owned(3));
                    Ok(cluster.owned(2) == Some(0) && others.is_some_and(|(a, b)| a + b == 256))
                },
            )
        },
    )?);
    wait_until(
        "host 2 to finish draining",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            Ok(cluster
                .ctl(2, "query")
                .is_some_and(|q| q["state"] == "stopped"))
        },
    )?;
    changes.push(measure(
        "nlb",
        "rejoin host 2 (start)",
        &mut cluster,
        second,
        |cluster| {
            cluster.command(2, "start")?;
            cluster.wait_converged(&[1, 2, 3])
        },
    )?);
    changes.push(measure(
        "nlb",
        "add host 4 (start)",
        &mut cluster,
        second,
        |cluster| {
            cluster.command(4, "start")?;
            cluster.wait_converged(&[1, 2, 3, 4])
        },
    )?);
    Ok(changes)
}

fn keepalived_changes(nlb: &Path) -> Result<Vec<Change>> {
    let mut cluster = KeepalivedCluster::build(nlb, 3, VrrpTimers::Defaults)?;
    cluster.lab.client().nft(RST_TABLE)?;
    let limit = Duration::from_secs(15);
    let after = Duration::from_millis(1500);
    let ka = "keepalived";
    let mut changes = vec![measure(
        ka,
        "stop the master (SIGTERM)",
        &mut cluster,
        after,
        |cluster| {
            cluster.stop_daemon(1)?;
            cluster.wait_vip_on(2, limit)
        },
    )?];
    changes.push(measure(
        ka,
        "the master returns (preempts)",
        &mut cluster,
        after,
        |cluster| {
            cluster.start_daemon(1)?;
            cluster.wait_vip_on(1, limit)
        },
    )?);
    changes.push(measure(
        ka,
        "lower the master's priority to 50 (reload)",
        &mut cluster,
        after,
        |cluster| {
            cluster.write_config(1, Some(50))?;
            cluster.signal(1, Signal::SIGHUP)?;
            cluster.wait_vip_on(2, limit)
        },
    )?);
    changes.push(measure(
        ka,
        "restore its priority (reload)",
        &mut cluster,
        after,
        |cluster| {
            cluster.write_config(1, None)?;
            cluster.signal(1, Signal::SIGHUP)?;
            cluster.wait_vip_on(1, limit)
        },
    )?);
    cluster.ensure_running()?;
    Ok(changes)
}

/// Runs the scenario: nlb's changes, then keepalived's.
pub(crate) fn run_scenario(nlb: &Path) -> Result<PlannedReport> {
    eprintln!("planned: nlb, 3 hosts + 1, defaults");
    let mut changes = nlb_changes(nlb)?;
    eprintln!("planned: keepalived, 3 hosts, defaults");
    changes.extend(keepalived_changes(nlb)?);
    Ok(PlannedReport { changes })
}

/// The Markdown table and the goal.
pub(crate) fn markdown(report: &PlannedReport) -> String {
    let mut table = Table::new(&[
        "contender",
        "change",
        "requests (keep-alive)",
        "failed new connections",
        "failed keep-alive requests",
        "failures that were resets",
        "RSTs received by the client",
        "stalled > 500 ms",
    ]);
    for c in &report.changes {
        table.row(vec![
            c.contender.to_owned(),
            c.change.to_owned(),
            format!("{} ({})", c.requests, c.keepalive_requests),
            c.failed_new.to_string(),
            c.failed_keepalive.to_string(),
            c.failed_by_reset.to_string(),
            c.resets_received.to_string(),
            c.stalled.to_string(),
        ]);
    }
    let count = |who: &str| -> usize {
        report
            .changes
            .iter()
            .filter(|c| c.contender == who)
            .map(|c| c.failed_new + c.failed_keepalive)
            .sum()
    };
    let nlb_failed = count("nlb");
    format!(
        "{}\nnlb: {nlb_failed} failed requests over its changes (goal 0: {}); keepalived: {} \
         (as measured).\n",
        table.markdown(),
        if nlb_failed == 0 { "met" } else { "missed" },
        count("keepalived"),
    )
}

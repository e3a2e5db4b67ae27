//! Scenario 3: the cost of the data path, with wrk.
//!
//! One lab with 3 hosts, each running `nlb serve-http` on port 80 and `nlb run` (hosts
//! 2 and 3 stopped, their bridge ports down, so that no frame is copied to them). wrk
//! (2 threads, 32 keep-alive connections, `--seconds` each) runs in the client's
//! namespace:
//!
//! 1. against host 1's own address (the direct path) and through the VIP of the 1-host
//!    cluster, alternating, `--rounds` times;
//! 2. host 2's port comes up and it joins: direct and VIP of the 2-host cluster, again
//!    alternating;
//! 3. the same with host 3: the 3-host cluster.
//!
//! The direct path is measured in every phase, alternating with the VIP, so that a
//! drift of the machine's load shows in both. Medians of requests/s are compared: each
//! VIP against the median of all direct runs, and the 2- and 3-host clusters against
//! the 1-host cluster. Everything shares the machine's CPUs (client, bridge, hosts), so
//! the ratios are sensitive to other load on the machine.

use crate::contender::{NlbCluster, NlbTimers};
use crate::lab::VIP;
use crate::report::{Summary, Table, thousands};
use anyhow::{Context, Result, bail};
use nlb_lab::segment::host_address;
use nlb_linux::command::run;
use serde::Serialize;
use std::path::Path;

/// One wrk run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WrkRun {
    /// Requests per second.
    pub(crate) rps: f64,
    /// Socket errors (connect, read, write, timeout) and non-2xx answers.
    pub(crate) errors: u64,
}

/// One path's runs.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PathResult {
    /// What was measured.
    pub(crate) path: String,
    /// Every run.
    pub(crate) runs: Vec<WrkRun>,
    /// Requests/s over the runs.
    pub(crate) rps: Summary,
}

/// One cluster mode's results.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ModeResult {
    /// `multicast` or `unicast`.
    pub(crate) mode: String,
    /// Direct runs of every phase together.
    pub(crate) direct: PathResult,
    /// The VIP with 1, 2 and 3 hosts.
    pub(crate) vip: Vec<PathResult>,
    /// VIP (1, 2, 3 hosts) median over the direct median.
    pub(crate) vip_over_direct: Vec<f64>,
    /// 2 and 3 hosts over 1 host.
    pub(crate) over_one_host: Vec<f64>,
}

/// The whole scenario.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DatapathReport {
    /// Seconds per wrk run.
    pub(crate) seconds: u32,
    /// Alternating rounds per phase.
    pub(crate) rounds: usize,
    /// wrk connections.
    pub(crate) connections: u32,
    /// Per mode.
    pub(crate) modes: Vec<ModeResult>,
}

fn wrk(client: &str, url: &str, seconds: u32, connections: u32) -> Result<WrkRun> {
    let duration = format!("{seconds}s");
    let connections = connections.to_string();
    let out = run(
        "ip",
        &[
            "netns",
            "exec",
            client,
            "wrk",
            "-t2",
            "-c",
            &connections,
            "-d",
            &duration,
            url,
        ],
        None,
    )
    .with_context(|| format!("wrk against {url} failed (is wrk installed? apt-get install wrk)"))?;
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{out}"))?;
    let mut errors = 0;
    for line in out.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            errors += rest
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += rest.trim().parse::<u64>().unwrap_or(0);
        }
    }
    Ok(WrkRun { rps, errors })
}

fn path_result(path: String, runs: Vec<WrkRun>) -> Result<PathResult> {
    let rps =
        Summary::of(&runs.iter().map(|r| r.rps).collect::<Vec<_>>()).context("no wrk runs")?;
    Ok(PathResult { path, runs, rps })
}

/// Runs the scenario in each of `modes`.
pub(crate) fn run_scenario(
    nlb: &Path,
    modes: &[String],
    rounds: usize,
    seconds: u32,
    connections: u32,
) -> Result<DatapathReport> {
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let mut results = Vec::new();
    for mode in modes {
        eprintln!("datapath: {mode}, {rounds} rounds of {seconds} s per path and phase");
        let cluster = NlbCluster::build(nlb, 3, mode, NlbTimers::DEFAULTS, &[1])?;
        cluster.lab.port(2, false)?;
        cluster.lab.port(3, false)?;
        let client = cluster.lab.client().name().to_owned();
        let direct_url = format!("http://{}/", host_address(1));
        let vip_url = format!("http://{VIP}/");
        let mut direct = Vec::new();
        let mut vips = Vec::new();
        for hosts in 1..=3u8 {
            if hosts > 1 {
                cluster.lab.port(hosts, true)?;
                cluster.command(hosts, "start")?;
                cluster.wait_converged(&(1..=hosts).collect::<Vec<_>>())?;
            }
            let mut runs = Vec::new();
            for _ in 0..rounds {
                direct.push(wrk(&client, &direct_url, seconds, connections)?);
                runs.push(wrk(&client, &vip_url, seconds, connections)?);
            }
            let result = path_result(format!("VIP, {hosts}-host cluster ({mode})"), runs)?;
            eprintln!(
                "  {}: {} requests/s",
                result.path,
                thousands(result.rps.median)
            );
            vips.push(result);
        }
        let direct = path_result("direct (host 1's own address)".to_owned(), direct)?;
        let vip_over_direct = vips
            .iter()
            .map(|v| v.rps.median / direct.rps.median)
            .collect();
        let over_one_host = vips[1..]
            .iter()
            .map(|v| v.rps.median / vips[0].rps.median)
            .collect();
        results.push(ModeResult {
            mode: mode.clone(),
            direct,
            vip: vips,
            vip_over_direct,
            over_one_host,
        });
    }
    Ok(DatapathReport {
        seconds,
        rounds,
        connections,
        modes: results,
    })
}

/// The Markdown table and the goals.
pub(crate) fn markdown(report: &DatapathReport) -> String {
    let mut table = Table::new(&[
        "mode",
        "direct req/s",
        "VIP, 1 host",
        "VIP / direct",
        "VIP, 2 hosts",
        "2 hosts / direct",
        "2 hosts / 1 host",
        "VIP, 3 hosts",
        "3 hosts / direct",
        "3 hosts / 1 host",
        "wrk errors",
    ]);
    let mut goals = String::new();
    for m in &report.modes {
        let errors: u64 = std::iter::once(&m.direct)
            .chain(&m.vip)
            .flat_map(|p| &p.runs)
            .map(|r| r.errors)
            .sum();
        let vip = |i: usize| m.vip.get(i).map_or("–".into(), |p| thousands(p.rps.median));
        let ratio = |v: Option<&f64>| v.map_or("–".into(), |r| format!("**{r:.2}**"));
        table.row(vec![
            m.mode.clone(),
            thousands(m.direct.rps.median),
            vip(0),
            ratio(m.vip_over_direct.first()),
            vip(1),
            ratio(m.vip_over_direct.get(1)),
            ratio(m.over_one_host.first()),
            vip(2),
            ratio(m.vip_over_direct.get(2)),
            ratio(m.over_one_host.get(1)),
            errors.to_string(),
        ]);
        if let (Some(v), Some(two)) = (m.vip_over_direct.first(), m.over_one_host.first()) {
            goals += &format!(
                "{}: VIP / direct {v:.2} (goal ≥ 0.95: {}), 2 hosts / 1 host {two:.2} (goal ≥ \
                 0.90: {}).\n",
                m.mode,
                if *v >= 0.95 { "met" } else { "missed" },
                if *two >= 0.90 { "met" } else { "missed" },
            );
        }
    }
    format!(
        "{}\nwrk -t2 -c{} -d{}s, {} alternating rounds per phase, medians.\n{goals}",
        table.markdown(),
        report.connections,
        report.seconds,
        report.rounds
    )
}

//! `nlb-bench`: nlb side by side with keepalived and with the direct path, on this
//! machine, in network namespaces it builds and deletes.
//!
//! Scenarios (each one a subcommand; `all` runs them in turn):
//!
//! 1. [`failover`]: unplanned failover (link down, daemon SIGKILL) of 2- and 3-host
//!    clusters, nlb against keepalived, each at its defaults and at its fastest; the
//!    client-side outage under a new connection every 10 ms.
//! 2. [`planned`]: planned changes under keep-alive and new-connection load: nlb's
//!    drainstop, rejoin and added host; keepalived's master switches. Failed requests
//!    and resets.
//! 3. [`datapath`]: wrk requests/s on the direct path, through the VIP of a 1-host nlb
//!    cluster, and through 2- and 3-host clusters on the same machine.
//! 4. [`balance`]: the bucket map's balance and movement for 2 to 64 hosts, computed
//!    from `nlb_core::buckets`.
//! 5. [`health`]: a host's service dies and comes back: nlb's health checks against
//!    keepalived's `track_script` at the same interval, fall and rise; the outage and
//!    the failed requests, with the bare client's floor.
//!
//! Tables are printed as Markdown with the load averages around each scenario;
//! `--json FILE` writes everything as JSON. Run it as root, after
//! `cargo build --release -p nlb -p nlb-bench`, or use `bench/run.sh`, which installs
//! what is missing and runs every benchmark of the repository.
//!
//! Only 198.18.0.0/24 is used, only inside namespaces this process creates; they are
//! deleted when a scenario ends, fails, or is interrupted (Ctrl-C).

mod balance;
mod contender;
mod datapath;
mod failover;
mod health;
mod lab;
mod planned;
mod report;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use report::Machine;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// nlb side by side with keepalived and the direct path, in network namespaces.
#[derive(Debug, Parser)]
#[command(name = "nlb-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Also write the results as JSON to this file.
    #[arg(long, global = true, value_name = "FILE")]
    json: Option<PathBuf>,
    /// The nlb binary (default: `nlb` next to this program, i.e. target/release/nlb).
    #[arg(long, global = true, value_name = "PATH")]
    nlb: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Every scenario in turn.
    All {
        #[command(flatten)]
        failover: FailoverArgs,
        #[command(flatten)]
        datapath: DatapathArgs,
        #[command(flatten)]
        health: HealthArgs,
        /// Smallest run that exercises everything (1-2 trials, 1 s wrk runs): a smoke test.
        #[arg(long)]
        quick: bool,
    },
    /// 1. Unplanned failover: nlb against keepalived (needs keepalived).
    Failover(FailoverArgs),
    /// 2. Planned changes under load: nlb against keepalived (needs keepalived).
    Planned,
    /// 3. Data path cost: direct, VIP, 2 and 3 hosts (needs wrk).
    Datapath(DatapathArgs),
    /// 4. Balance and disruption of the bucket map (no root needed).
    Balance,
    /// 5. A dead service: health checks against keepalived's track_script (needs curl).
    Health(HealthArgs),
}

#[derive(Debug, Clone, Args)]
struct HealthArgs {
    /// Trials per contender and cluster size in the health scenario.
    #[arg(long, default_value_t = 5)]
    health_trials: usize,
    /// Cluster sizes of the health scenario.
    #[arg(long, value_delimiter = ',', default_value = "2,3")]
    health_hosts: Vec<u8>,
}

#[derive(Debug, Clone, Args)]
struct FailoverArgs {
    /// Trials per failure kind for nlb and for keepalived at its fastest.
    #[arg(long, default_value_t = 12)]
    trials: usize,
    /// Trials per failure kind for keepalived at its defaults (about 6 s each).
    #[arg(long, default_value_t = 6)]
    slow_trials: usize,
    /// Cluster sizes.
    #[arg(long, value_delimiter = ',', default_value = "2,3")]
    hosts: Vec<u8>,
    /// Which settings: defaults, fastest.
    #[arg(long, value_delimiter = ',', default_value = "defaults,fastest")]
    settings: Vec<String>,
}

#[derive(Debug, Clone, Args)]
struct DatapathArgs {
    /// Alternating rounds (direct, VIP) per phase.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 2)]
    seconds: u32,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Cluster modes to measure.
    #[arg(long, value_delimiter = ',', default_value = "multicast,unicast")]
    modes: Vec<String>,
}

/// A scenario's results with the machine's load before and after it.
#[derive(Debug, Clone, Serialize)]
struct Timed<T> {
    before: Machine,
    after: Machine,
    seconds: f64,
    results: T,
}

/// Everything one invocation measured.
#[derive(Debug, Default, Serialize)]
struct Report {
    /// The command line.
    command: Vec<String>,
    /// Seconds since the Unix epoch at the start.
    started_unix: u64,
    failover: Option<Timed<failover::FailoverReport>>,
    planned: Option<Timed<planned::PlannedReport>>,
    datapath: Option<Timed<datapath::DatapathReport>>,
    balance: Option<balance::BalanceReport>,
    health: Option<Timed<health::HealthReport>>,
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nlb-bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn nlb_binary(given: Option<PathBuf>) -> Result<PathBuf> {
    let path = match given {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot find this program's path")?
            .with_file_name("nlb"),
    };
    if !path.is_file() {
        anyhow::bail!(
            "no nlb binary at {}: build it with `cargo build --release -p nlb`, or pass --nlb PATH",
            path.display()
        );
    }
    path.canonicalize()
        .with_context(|| format!("cannot resolve {}", path.display()))
}

/// Runs `scenario`, printing its Markdown with the load around it.
fn timed<T>(
    title: &str,
    scenario: impl FnOnce() -> Result<T>,
    markdown: impl Fn(&T) -> String,
) -> Result<Timed<T>> {
    let before = Machine::now();
    let started = Instant::now();
    eprintln!("== {title} ({})", before.describe());
    let result = scenario().with_context(|| format!("scenario {title} failed"))?;
    let timed = Timed {
        after: Machine::now(),
        before,
        seconds: started.elapsed().as_secs_f64(),
        results: result,
    };
    println!(
        "\n## {title}\n\nBefore: {}; after: {}; took {:.0} s.\n\n{}",
        timed.before.describe(),
        timed.after.describe(),
        timed.seconds,
        markdown(&timed.results)
    );
    Ok(timed)
}

fn failover_settings(args: &FailoverArgs) -> Result<Vec<failover::Settings>> {
    args.settings
        .iter()
        .map(|s| match s.as_str() {
            "defaults" => Ok(failover::Settings::Defaults),
            "fastest" => Ok(failover::Settings::Fastest),
            other => anyhow::bail!("unknown --settings {other}: use defaults, fastest or both"),
        })
        .collect()
}

fn run_failover(nlb: &Path, args: &FailoverArgs) -> Result<Timed<failover::FailoverReport>> {
    lab::require_tool("keepalived", "keepalived")?;
    let settings = failover_settings(args)?;
    if let Some(bad) = args.hosts.iter().find(|&&h| !(2..=8).contains(&h)) {
        anyhow::bail!("--hosts {bad}: use cluster sizes from 2 to 8");
    }
    let trials = failover::Trials {
        fast: args.trials.max(1),
        slow: args.slow_trials.max(1),
    };
    timed(
        "1. Unplanned failover",
        || failover::run(nlb, &args.hosts, &settings, trials),
        failover::markdown,
    )
}

fn run_planned(nlb: &Path) -> Result<Timed<planned::PlannedReport>> {
    lab::require_tool("keepalived", "keepalived")?;
    timed(
        "2. Planned changes under load",
        || planned::run_scenario(nlb),
        planned::markdown,
    )
}

fn run_datapath(nlb: &Path, args: &DatapathArgs) -> Result<Timed<datapath::DatapathReport>> {
    lab::require_tool("wrk", "wrk")?;
    for mode in &args.modes {
        if !["multicast", "unicast", "igmp"].contains(&mode.as_str()) {
            anyhow::bail!("unknown mode {mode}: use multicast, unicast or igmp");
        }
    }
    timed(
        "3. Data path cost",
        || {
            datapath::run_scenario(
                nlb,
                &args.modes,
                args.rounds,
                args.seconds,
                args.connections,
            )
        },
        datapath::markdown,
    )
}

fn run_health(nlb: &Path, args: &HealthArgs) -> Result<Timed<health::HealthReport>> {
    lab::require_tool("keepalived", "keepalived")?;
    lab::require_tool("curl", "curl")?;
    if let Some(bad) = args.health_hosts.iter().find(|&&h| !(2..=8).contains(&h)) {
        anyhow::bail!("--health-hosts {bad}: use cluster sizes from 2 to 8");
    }
    timed(
        "5. A dead service: health checks",
        || health::run_scenario(nlb, &args.health_hosts, args.health_trials.max(1)),
        health::markdown,
    )
}

fn run_balance() -> balance::BalanceReport {
    let report = balance::run();
    println!(
        "\n## 4. Balance and disruption\n\n{}",
        balance::markdown(&report)
    );
    report
}

fn run(cli: Cli) -> Result<()> {
    let mut report = Report {
        command: std::env::args().collect(),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        ..Report::default()
    };
    if !matches!(cli.scenario, Scenario::Balance) {
        lab::install_interrupt_cleanup()?;
        lab::require_root()?;
    }
    let nlb = || nlb_binary(cli.nlb.clone());
    match &cli.scenario {
        Scenario::All {
            failover,
            datapath,
            health,
            quick,
        } => {
            let nlb = nlb()?;
            lab::require_tool("keepalived", "keepalived")?;
            lab::require_tool("wrk", "wrk")?;
            let (mut failover, mut datapath) = (failover.clone(), datapath.clone());
            let mut health = health.clone();
            if *quick {
                health.health_trials = 1;
                failover.trials = failover.trials.min(2);
                failover.slow_trials = 1;
                datapath.rounds = 1;
                datapath.seconds = 1;
            }
            report.balance = Some(run_balance());
            report.failover = Some(run_failover(&nlb, &failover)?);
            report.planned = Some(run_planned(&nlb)?);
            report.datapath = Some(run_datapath(&nlb, &datapath)?);
            report.health = Some(run_health(&nlb, &health)?);
        }
        Scenario::Failover(args) => report.failover = Some(run_failover(&nlb()?, args)?),
        Scenario::Planned => report.planned = Some(run_planned(&nlb()?)?),
        Scenario::Datapath(args) => report.datapath = Some(run_datapath(&nlb()?, args)?),
        Scenario::Balance => report.balance = Some(run_balance()),
        Scenario::Health(args) => report.health = Some(run_health(&nlb()?, args)?),
    }
    if let Some(path) = &cli.json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

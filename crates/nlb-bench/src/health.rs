//! Scenario 5: a dead service (issue 14), nlb's health checks against keepalived's
//! `track_script`, side by side.
//!
//! Every host runs `nlb serve-http` on port 80 and a check of its own server, with the
//! same timers for both contenders: an HTTP GET of `http://198.18.0.<id>/` (the host's
//! own address) every second, 300 ms to answer, down after 2 failures in a row, up
//! again after 2 successes. keepalived 2.2's `vrrp_script interval` takes whole seconds
//! only (`interval 0.2` is refused: "must be between 1 and 4294"), so 1 s is the
//! shortest interval both can use.
//!
//! - **nlb** (its defaults: heartbeat 10 ms, tolerance 15): `[[check]] type = "http"`,
//!   `interval_ms = 1000`, `timeout_ms = 300`, `fall = 2`, `rise = 2`, `action =
//!   "drain"`, guarding the port-80 rule. A host whose check is down leaves its buckets
//!   to the others; when it passes twice it takes its share back.
//! - **keepalived**: `vrrp_script { script "/usr/bin/curl -fsS -o /dev/null --max-time
//!   0.3 http://198.18.0.<id>/"; interval 1; timeout 1; fall 2; rise 2 }` tracked by
//!   the instance (weight 0: a failing script is the FAULT state, the VIP moves to the
//!   next priority; preemption brings it back), once at keepalived's default advert
//!   (VRRPv2, 1 s) and once at the shortest (VRRPv3, 10 ms, matching nlb's heartbeat).
//! - An extra row: **nlb with a 200 ms check** (timeout 150 ms, fall and rise 2), which
//!   keepalived cannot match.
//!
//! A trial: the client opens a new connection every 10 ms from 40 rotating addresses
//! (shuffled every trial); after 600 ms (every address answered once, which tells who
//! served whom) the victim's HTTP server gets SIGKILL (nlb: hosts 2, 3, 2, ... in turn;
//! keepalived: the master, host 1, which serves every client). The kill comes right
//! after a run of the victim's check (an nft counter of the SYNs the host sends to its
//! own port 80, polled every 5 ms), so that the next run is a whole interval away:
//! both contenders need their full `fall` × interval to notice, the worst case, and the
//! same for both (killed at a random moment, both would notice up to one interval
//! sooner, and 5 trials would mostly measure where the kill fell). Measured from the
//! kill:
//!
//! - **detected**: nlb: the victim owns no bucket (polled every 20 ms with `nlb
//!   query`); keepalived: another host holds the VIP (polled every 2 ms);
//! - **outage**: until the clients the victim served are served again
//!   ([`nlb_lab::load::outage`]: the first prompt answer to one of them after the last
//!   failed or stalled request);
//! - **failed**: requests started between the kill and the restart that failed
//!   (refused, reset, timed out), and among them those of clients the victim did not
//!   serve.
//!
//! 1.5 s after the detection, and again right after a (failing) run of its check, the
//! server starts again; until 1 s after the victim
//! serves again (nlb: it owns buckets; keepalived: it holds the VIP) the failed and
//! stalled requests are counted as the recovery's, with the time from the restart
//! until the victim answers a client.
//!
//! The bare reference: the same client against one host's own address, no cluster,
//! for the client's own failure and latency floor.

use crate::contender::{KeepalivedCluster, NlbCluster, NlbTimers, VrrpTimers};
use crate::lab::{CLIENTS, Lab, VIP, wait_until};
use crate::report::{Summary, Table, ms};
use anyhow::{Context, Result};
use nlb_lab::load::{Attempt, Load, Plan, outage, served_by};
use nlb_lab::segment::client_addresses;
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

/// Seconds between check runs, both contenders (keepalived's shortest).
const INTERVAL_S: u64 = 1;
/// Time one check run may take.
const TIMEOUT_MS: u64 = 300;
/// Failures before a check is down.
const FALL: u8 = 2;
/// Successes before it is up again.
const RISE: u8 = 2;

/// The `[[check]]` of nlb host `id`.
fn nlb_check(id: u8) -> String {
    nlb_check_every(id, INTERVAL_S * 1000, TIMEOUT_MS)
}

/// The `[[check]]` of nlb host `id` at nlb's own shortest sensible timers, which
/// keepalived cannot match: every 200 ms, 150 ms to answer.
fn nlb_fast_check(id: u8) -> String {
    nlb_check_every(id, FAST_INTERVAL_MS, FAST_TIMEOUT_MS)
}

/// The extra nlb row's check interval.
const FAST_INTERVAL_MS: u64 = 200;
/// The extra nlb row's check timeout.
const FAST_TIMEOUT_MS: u64 = 150;

fn nlb_check_every(id: u8, interval_ms: u64, timeout_ms: u64) -> String {
    format!(
        "\n[[check]]\nname = \"web\"\ntype = \"http\"\ntarget = \"http://198.18.0.{id}:80/\"\n\
         interval_ms = {interval_ms}\ntimeout_ms = {timeout_ms}\nfall = {FALL}\nrise = {RISE}\n\
         rules = [\"{VIP}:80\"]\naction = \"drain\"\n"
    )
}

/// The `vrrp_script` body of keepalived host `id`.
fn keepalived_script(id: u8) -> String {
    format!(
        "  script \"/usr/bin/curl -fsS -o /dev/null --max-time {:.1} http://198.18.0.{id}/\"\n\
         \x20 interval {INTERVAL_S}\n  timeout {INTERVAL_S}\n  fall {FALL}\n  rise {RISE}\n",
        TIMEOUT_MS as f64 / 1000.0
    )
}

/// One trial.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Trial {
    /// The host whose server was killed.
    pub(crate) victim: u8,
    /// Client addresses it served (of 40).
    pub(crate) affected: usize,
    /// Kill → the contender's own sign that it acted (buckets or VIP moved).
    pub(crate) detected_ms: f64,
    /// Kill → the victim's clients served again.
    pub(crate) outage_ms: Option<f64>,
    /// Requests started between the kill and the restart.
    pub(crate) requests: usize,
    /// Failed among them.
    pub(crate) failed: usize,
    /// Failed among them from clients the victim did not serve.
    pub(crate) failed_others: usize,
    /// Answered after more than 500 ms among them.
    pub(crate) stalled: usize,
    /// Restart → the victim answers a client again.
    pub(crate) back_ms: Option<f64>,
    /// Requests started from the restart to the end.
    pub(crate) recovery_requests: usize,
    /// Failed among them.
    pub(crate) recovery_failed: usize,
    /// Stalled among them.
    pub(crate) recovery_stalled: usize,
    /// The first failure's text.
    pub(crate) first_error: Option<String>,
}

/// One contender at one cluster size.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Side {
    /// `nlb` or `keepalived`.
    pub(crate) contender: &'static str,
    /// Its settings, in words.
    pub(crate) settings: String,
    /// Hosts.
    pub(crate) hosts: u8,
    /// Every trial.
    pub(crate) trials: Vec<Trial>,
}

/// The client against one host's own address, nothing in the way.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Bare {
    /// Requests.
    pub(crate) requests: usize,
    /// Failed.
    pub(crate) failed: usize,
    /// Stalled over 500 ms.
    pub(crate) stalled: usize,
    /// Latency of every request, milliseconds.
    pub(crate) latency: Option<Summary>,
}

/// The whole scenario.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HealthReport {
    /// Check interval, timeout, fall and rise, in words.
    pub(crate) check: String,
    /// The bare reference.
    pub(crate) bare: Bare,
    /// Every contender and size.
    pub(crate) sides: Vec<Side>,
}

/// What a trial needs from a contender.
trait Contender {
    fn lab_mut(&mut self) -> &mut Lab;
    fn lab(&self) -> &Lab;
    fn victim(&self, trial: usize) -> u8;
    /// Waits until the contender has acted on the victim's dead service.
    fn wait_moved(&self, victim: u8) -> Result<Instant>;
    /// Waits until the victim is back in service.
    fn wait_back(&self, victim: u8) -> Result<Instant>;
    /// Waits until every host serves and the client is answered.
    fn wait_healthy(&self) -> Result<()>;
    fn logs(&self) -> String;
}

impl NlbCluster {
    fn hosts(&self) -> u8 {
        self.lab.segment.hosts.len() as u8
    }

    /// Every host owns buckets, 256 together.
    fn all_serving(&self) -> bool {
        let owned: Option<Vec<u64>> = (1..=self.hosts()).map(|id| self.owned(id)).collect();
        owned.is_some_and(|o| o.iter().all(|&n| n > 0) && o.iter().sum::<u64>() == 256)
    }
}

impl Contender for NlbCluster {
    fn lab_mut(&mut self) -> &mut Lab {
        &mut self.lab
    }
    fn lab(&self) -> &Lab {
        &self.lab
    }
    fn victim(&self, trial: usize) -> u8 {
        2 + (trial % usize::from(self.hosts() - 1)) as u8
    }
    fn wait_moved(&self, victim: u8) -> Result<Instant> {
        wait_until(
            &format!("host {victim} to give up its buckets"),
            Duration::from_secs(10),
            Duration::from_millis(20),
            || Ok(self.owned(victim) == Some(0)),
        )
        .with_context(|| format!("daemon log of host {victim}:\n{}", self.log(victim)))?;
        Ok(Instant::now())
    }
    fn wait_back(&self, victim: u8) -> Result<Instant> {
        wait_until(
            &format!("host {victim} to take buckets back"),
            Duration::from_secs(10),
            Duration::from_millis(20),
            || Ok(self.owned(victim).is_some_and(|n| n > 0)),
        )
        .with_context(|| format!("daemon log of host {victim}:\n{}", self.log(victim)))?;
        Ok(Instant::now())
    }
    fn wait_healthy(&self) -> Result<()> {
        let all: Vec<u8> = (1..=self.hosts()).collect();
        self.wait_converged(&all)?;
        wait_until(
            "every nlb host to own buckets",
            Duration::from_secs(15),
            Duration::from_millis(20),
            || Ok(self.all_serving()),
        )
    }
    fn logs(&self) -> String {
        crate::contender::Cluster::logs(self)
    }
}

impl Contender for KeepalivedCluster {
    fn lab_mut(&mut self) -> &mut Lab {
        &mut self.lab
    }
    fn lab(&self) -> &Lab {
        &self.lab
    }
    fn victim(&self, _trial: usize) -> u8 {
        1
    }
    fn wait_moved(&self, victim: u8) -> Result<Instant> {
        self.lab.wait_vip_elsewhere(victim, Duration::from_secs(10))
    }
    fn wait_back(&self, victim: u8) -> Result<Instant> {
        wait_until(
            &format!("keepalived to give the VIP back to host {victim}"),
            Duration::from_secs(15),
            Duration::from_millis(2),
            || Ok(self.lab.vip_holders()?.contains(&victim)),
        )
        .with_context(|| format!("keepalived log of host {victim}:\n{}", self.log(victim)))?;
        Ok(Instant::now())
    }
    fn wait_healthy(&self) -> Result<()> {
        crate::contender::Cluster::wait_healthy(self)
    }
    fn logs(&self) -> String {
        crate::contender::Cluster::logs(self)
    }
}

/// A small xorshift generator for shuffling the client addresses.
struct Shuffle(u64);

impl Shuffle {
    fn seeded() -> Shuffle {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Shuffle(nanos | 1)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            items.swap(i, (self.0 % (i as u64 + 1)) as usize);
        }
    }
}

/// Counts the SYNs host `id` sends to its own port 80, i.e. its check's connections (the
/// client only ever connects to the VIP, from outside).
fn count_checks(lab: &Lab, id: u8) -> Result<()> {
    lab.host(id)
        .nft(&format!(
            "table inet nlbbench {{\n  chain output {{\n    type filter hook output priority 0; \
             policy accept;\n    ip daddr 198.18.0.{id} tcp dport 80 tcp flags & (syn | ack) == syn \
             counter\n  }}\n}}\n"
        ))
        .with_context(|| format!("could not add the check counter on host {id}"))?;
    Ok(())
}

/// Host `id`'s check connections so far.
fn checks_run(lab: &Lab, id: u8) -> Result<u64> {
    let out = nlb_linux::command::run(
        "ip",
        &[
            "netns",
            "exec",
            lab.host(id).name(),
            "nft",
            "-j",
            "list",
            "table",
            "inet",
            "nlbbench",
        ],
        None,
    )
    .context("could not read the check counter")?;
    let json: serde_json::Value = serde_json::from_str(&out)?;
    Ok(json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["rule"]["expr"].as_array())
        .flatten()
        .filter_map(|expr| expr["counter"]["packets"].as_u64())
        .sum())
}

/// Waits until host `id`'s check has just connected (its counter moved): the moment
/// right after a run, so that the next one is a whole interval away.
fn after_a_check(lab: &Lab, id: u8) -> Result<()> {
    let start = checks_run(lab, id)?;
    wait_until(
        &format!("host {id}'s check to run"),
        Duration::from_secs(5),
        Duration::from_millis(5),
        || Ok(checks_run(lab, id)? > start),
    )
}

fn since(at: Instant, then: Instant) -> f64 {
    then.saturating_duration_since(at).as_secs_f64() * 1e3
}

fn one_trial(cluster: &mut dyn Contender, trial: usize, sources: &[Ipv4Addr]) -> Result<Trial> {
    cluster
        .wait_healthy()
        .context("the cluster did not settle before a trial")?;
    let victim = cluster.victim(trial);
    let load = Load::start(
        cluster.lab().client(),
        Plan::new_connections(SocketAddr::from((VIP, 80)), sources.iter().copied()),
    )
    .context("could not start the client load")?;
    std::thread::sleep(Duration::from_millis(600));
    after_a_check(cluster.lab(), victim)?;
    let killed = Instant::now();
    cluster.lab_mut().kill_server(victim)?;
    let moved = cluster.wait_moved(victim)?;
    std::thread::sleep(Duration::from_millis(1500));
    after_a_check(cluster.lab(), victim)?;
    let restarted = Instant::now();
    cluster.lab_mut().start_server(victim)?;
    let back = cluster.wait_back(victim)?;
    std::thread::sleep(Duration::from_millis(1000));
    let seen = load.finish();

    let host = format!("host{victim}");
    let affected = served_by(&seen.new, &host, killed);
    let during: Vec<Attempt> = seen
        .new
        .iter()
        .filter(|a| a.started >= killed && a.started < restarted)
        .cloned()
        .collect();
    let recovery: Vec<Attempt> = seen
        .new
        .iter()
        .filter(|a| a.started >= restarted)
        .cloned()
        .collect();
    let failed = |a: &&Attempt| a.answer.is_err();
    let stalled = |a: &&Attempt| a.answer.is_ok() && !a.prompt();
    let result = Trial {
        victim,
        affected: affected.len(),
        detected_ms: since(killed, moved),
        outage_ms: outage(&during, killed, &affected).map(|d| d.as_secs_f64() * 1e3),
        requests: during.len(),
        failed: during.iter().filter(failed).count(),
        failed_others: during
            .iter()
            .filter(failed)
            .filter(|a| !affected.contains(&a.src))
            .count(),
        stalled: during.iter().filter(stalled).count(),
        back_ms: recovery
            .iter()
            .find(|a| a.answered_by(&host))
            .map(|a| since(restarted, a.started)),
        recovery_requests: recovery.len(),
        recovery_failed: recovery.iter().filter(failed).count(),
        recovery_stalled: recovery.iter().filter(stalled).count(),
        first_error: seen
            .new
            .iter()
            .filter(|a| a.started >= killed)
            .find_map(|a| a.answer.as_ref().err())
            .map(|(_, text)| text.clone()),
    };
    eprintln!(
        "    host {victim} ({} clients): detected {:.0} ms, outage {}, {} failed ({} of others), \
         {} stalled of {}; back {} after the restart (VIP/buckets {:.0} ms), {} failed, {} stalled of {}",
        result.affected,
        result.detected_ms,
        result.outage_ms.map_or_else(|| "none".into(), ms),
        result.failed,
        result.failed_others,
        result.stalled,
        result.requests,
        result.back_ms.map_or_else(|| "never".into(), ms),
        since(restarted, back),
        result.recovery_failed,
        result.recovery_stalled,
        result.recovery_requests,
    );
    if std::env::var_os("NLB_BENCH_DEBUG").is_some() {
        let lines: Vec<String> = cluster
            .logs()
            .lines()
            .filter(|l| {
                l.starts_with("---")
                    || ["check", "FAULT", "MASTER", "BACKUP", "view"]
                        .iter()
                        .any(|k| l.contains(k))
            })
            .map(|l| l.chars().take(240).collect())
            .collect();
        eprintln!("{}", lines.join("\n"));
    }
    Ok(result)
}

fn run_trials(cluster: &mut dyn Contender, trials: usize) -> Result<Vec<Trial>> {
    for id in 1..=cluster.lab().segment.hosts.len() as u8 {
        count_checks(cluster.lab(), id)?;
    }
    let mut sources: Vec<Ipv4Addr> = client_addresses(CLIENTS).collect();
    let mut rng = Shuffle::seeded();
    let mut results = Vec::new();
    for trial in 0..trials {
        rng.shuffle(&mut sources);
        results.push(one_trial(cluster, trial, &sources)?);
    }
    cluster.wait_healthy()?;
    Ok(results)
}

/// The bare reference: the client against host 1's own address for `seconds`.
fn bare(nlb: &Path, seconds: u64) -> Result<Bare> {
    let lab = Lab::build(nlb, 1, false)?;
    let target = SocketAddr::from((Ipv4Addr::new(198, 18, 0, 1), 80));
    wait_until(
        "the bare server to answer",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            nlb_lab::segment::inside(lab.client(), || {
                nlb_lab::http::http_get(nlb_lab::segment::CLIENT, target).is_ok()
            })
            .context("could not enter the client's namespace")
        },
    )?;
    let load = Load::start(
        lab.client(),
        Plan::new_connections(target, client_addresses(CLIENTS)),
    )
    .context("could not start the client load")?;
    std::thread::sleep(Duration::from_secs(seconds));
    let seen = load.finish();
    let latencies: Vec<f64> = seen
        .new
        .iter()
        .map(|a| a.took.as_secs_f64() * 1e3)
        .collect();
    let result = Bare {
        requests: seen.new.len(),
        failed: seen.new.iter().filter(|a| a.answer.is_err()).count(),
        stalled: seen
            .new
            .iter()
            .filter(|a| a.answer.is_ok() && !a.prompt())
            .count(),
        latency: Summary::of(&latencies),
    };
    eprintln!(
        "  bare: {} requests, {} failed, {} stalled, latency median {:.2} ms, max {:.2} ms",
        result.requests,
        result.failed,
        result.stalled,
        result.latency.map_or(f64::NAN, |s| s.median),
        result.latency.map_or(f64::NAN, |s| s.max),
    );
    Ok(result)
}

/// Runs the scenario: the bare reference, then for each size nlb, nlb with a 200 ms
/// check (an extra row: keepalived cannot check faster than every second), keepalived
/// at its default advert and keepalived at 10 ms adverts.
pub(crate) fn run_scenario(nlb: &Path, hosts: &[u8], trials: usize) -> Result<HealthReport> {
    eprintln!("health: the bare reference (host 1's own address, no cluster)");
    let bare = bare(nlb, 3)?;
    let check = format!(
        "HTTP GET of the host's own address every {INTERVAL_S} s, timeout {TIMEOUT_MS} ms, \
         fall {FALL}, rise {RISE}"
    );
    let mut sides = Vec::new();
    for &n in hosts {
        let settings = "heartbeat 10 ms, tolerance 15 (defaults); check action drain".to_owned();
        eprintln!("health: nlb, {n} hosts, {settings}");
        let ids: Vec<u8> = (1..=n).collect();
        let trials_nlb = {
            let mut cluster =
                NlbCluster::build_with(nlb, n, "multicast", NlbTimers::DEFAULTS, &ids, &nlb_check)?;
            run_trials(&mut cluster, trials)?
        };
        sides.push(Side {
            contender: "nlb",
            settings,
            hosts: n,
            trials: trials_nlb,
        });
        let fast = format!(
            "heartbeat 10 ms, tolerance 15 (defaults); check every {FAST_INTERVAL_MS} ms, \
             timeout {FAST_TIMEOUT_MS} ms (keepalived: whole seconds only)"
        );
        eprintln!("health: nlb, {n} hosts, {fast}");
        let trials_fast = {
            let mut cluster = NlbCluster::build_with(
                nlb,
                n,
                "multicast",
                NlbTimers::DEFAULTS,
                &ids,
                &nlb_fast_check,
            )?;
            run_trials(&mut cluster, trials)?
        };
        sides.push(Side {
            contender: "nlb",
            settings: fast,
            hosts: n,
            trials: trials_fast,
        });
        for (timers, words) in [
            (VrrpTimers::Defaults, "VRRPv2, advert_int 1 s (default)"),
            (VrrpTimers::Fast, "VRRPv3, advert_int 0.01 s"),
        ] {
            eprintln!("health: keepalived, {n} hosts, {words}");
            let mut cluster =
                KeepalivedCluster::build_tracked(nlb, n, timers, Some(keepalived_script))?;
            let results = run_trials(&mut cluster, trials)?;
            cluster.ensure_running()?;
            sides.push(Side {
                contender: "keepalived",
                settings: words.to_owned(),
                hosts: n,
                trials: results,
            });
        }
    }
    Ok(HealthReport { check, bare, sides })
}

/// `median (min–max)` of `values`, formatted by `f`.
fn spread(values: &[f64], f: impl Fn(f64) -> String) -> String {
    match Summary::of(values) {
        Some(s) if s.min == s.max => f(s.median),
        Some(s) => format!("{} ({}–{})", f(s.median), f(s.min), f(s.max)),
        None => "–".into(),
    }
}

/// The Markdown tables.
pub(crate) fn markdown(report: &HealthReport) -> String {
    let mut out = format!(
        "Check: {}. Medians (ranges) over the trials.\n\n",
        report.check
    );
    let mut table = Table::new(&[
        "hosts",
        "contender",
        "settings",
        "trials",
        "clients moved (of 40)",
        "detected",
        "**outage**",
        "**failed requests**",
        "failed, other clients (sum)",
        "stalled > 500 ms (sum)",
        "back after restart",
        "failed / stalled in recovery (sums)",
    ]);
    let count = |v: usize| format!("{v}");
    for side in &report.sides {
        let t = &side.trials;
        let col = |f: &dyn Fn(&Trial) -> f64| t.iter().map(f).collect::<Vec<f64>>();
        let sum = |f: &dyn Fn(&Trial) -> usize| t.iter().map(f).sum::<usize>().to_string();
        let outages: Vec<f64> = t.iter().filter_map(|t| t.outage_ms).collect();
        let backs: Vec<f64> = t.iter().filter_map(|t| t.back_ms).collect();
        table.row(vec![
            side.hosts.to_string(),
            side.contender.to_owned(),
            side.settings.clone(),
            t.len().to_string(),
            spread(&col(&|t| t.affected as f64), |v| count(v as usize)),
            spread(&col(&|t| t.detected_ms), ms),
            format!(
                "**{}**{}",
                spread(&outages, ms),
                if outages.len() < t.len() {
                    format!(" ({} not served again)", t.len() - outages.len())
                } else {
                    String::new()
                }
            ),
            format!(
                "**{}**",
                spread(&col(&|t| t.failed as f64), |v| count(v as usize))
            ),
            if t.iter().all(|t| t.affected == usize::from(CLIENTS)) {
                "– (the master served all)".into()
            } else {
                sum(&|t| t.failed_others)
            },
            sum(&|t| t.stalled),
            spread(&backs, ms),
            format!(
                "{} / {}",
                sum(&|t| t.recovery_failed),
                sum(&|t| t.recovery_stalled)
            ),
        ]);
    }
    out += &table.markdown();
    let b = &report.bare;
    out += &format!(
        "\nBare reference (the same client against host 1's own address, no cluster, 3 s): \
         {} requests, {} failed, {} stalled; latency median {}, p99 {}, max {}.\n",
        b.requests,
        b.failed,
        b.stalled,
        b.latency
            .map_or("–".into(), |s| format!("{:.2} ms", s.median)),
        b.latency.map_or("–".into(), |s| format!("{:.2} ms", s.p99)),
        b.latency.map_or("–".into(), |s| format!("{:.2} ms", s.max)),
    );
    for &n in report
        .sides
        .iter()
        .map(|s| s.hosts)
        .collect::<std::collections::BTreeSet<u8>>()
        .iter()
    {
        let median = |who: &str, f: &dyn Fn(&Trial) -> Option<f64>| {
            report
                .sides
                .iter()
                .filter(|s| s.hosts == n && s.contender == who)
                .filter_map(|s| Summary::of(&s.trials.iter().filter_map(f).collect::<Vec<_>>()))
                .map(|s| s.median)
                .collect::<Vec<f64>>()
        };
        let nlb_outage = median("nlb", &|t| t.outage_ms);
        let ka_outage = median("keepalived", &|t| t.outage_ms);
        let nlb_failed = median("nlb", &|t| Some(t.failed as f64));
        let ka_failed = median("keepalived", &|t| Some(t.failed as f64));
        let others: usize = report
            .sides
            .iter()
            .filter(|s| s.hosts == n && s.contender == "nlb")
            .flat_map(|s| &s.trials)
            .map(|t| t.failed_others + t.recovery_failed)
            .sum();
        if let (Some(&no), Some(&nf)) = (nlb_outage.first(), nlb_failed.first()) {
            let best_ka = ka_outage.iter().copied().fold(f64::INFINITY, f64::min);
            let fewest_ka = ka_failed.iter().copied().fold(f64::INFINITY, f64::min);
            out += &format!(
                "\n{n} hosts: nlb's median outage {} against keepalived's best {} (goal: at \
                 least as fast: {}); nlb's median failed requests {nf:.0} against keepalived's \
                 fewest {fewest_ka:.0} (goal: fewer: {}); nlb's failed requests of other \
                 clients and during recovery: {others} (goal 0: {}).\n",
                ms(no),
                ms(best_ka),
                if no <= best_ka { "met" } else { "missed" },
                if nf < fewest_ka { "met" } else { "missed" },
                if others == 0 { "met" } else { "missed" },
            );
        }
    }
    out
}

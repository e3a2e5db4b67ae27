//! `nlb lab`: a whole cluster on this machine, in network namespaces, playing its story
//! with live output: convergence, serving, the ARP cache, a failover, a drain, a rejoin,
//! and what `nlb watch`'s analysis saw on the client's port all along.
//!
//! It builds a Linux bridge, three hosts (`--hosts N`) each running a real `nlb run` and a small HTTP
//! server on the VIP, and a client with 30 addresses, all inside namespaces it creates
//! (198.18.0.0/24 only), and removes everything at the end, or on Ctrl-C.

use crate::CliError;
use nlb_lab::http::http_get;
use nlb_lab::load::{Load, Plan, last_trouble};
use nlb_lab::segment::{Segment, client_addresses, inside};
use nlb_linux::netns::NetNs;
use nlb_wire::addressing::{ClusterMode, cluster_mac};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const CLIENTS: u8 = 30;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The cluster mode to show.
    #[arg(long, default_value = "multicast", value_parser = ["unicast", "multicast", "igmp"])]
    mode: String,
    /// How many hosts.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=8))]
    hosts: u8,
    /// Leave the lab running at the end, and print how to reach each host.
    #[arg(long)]
    keep: bool,
}

/// The daemons and servers; stopped when dropped, before the namespaces go.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

struct Lab {
    started: Instant,
    dir: PathBuf,
    segment: Segment,
}

impl Lab {
    fn say(&self, message: impl AsRef<str>) {
        println!(
            "[{:6.2}s] {}",
            self.started.elapsed().as_secs_f64(),
            message.as_ref()
        );
        let _ = std::io::stdout().flush();
    }

    fn socket(&self, id: u8) -> PathBuf {
        self.dir.join(format!("h{id}.sock"))
    }

    fn ctl(&self, id: u8, verb: &str) -> Option<Value> {
        let answer = crate::cmd::ctl::request(&self.socket(id), verb).ok()?;
        Some(answer)
    }

    fn wait(
        &self,
        what: &str,
        limit: Duration,
        ready: impl Fn(&Lab) -> bool,
    ) -> Result<Duration, CliError> {
        let start = Instant::now();
        while !ready(self) {
            if start.elapsed() > limit {
                return Err(CliError::failed(format!(
                    "the lab timed out waiting for {what}; the daemon logs are in {}",
                    self.dir.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(start.elapsed())
    }

    fn converged(&self, ids: &[u8]) -> bool {
        ids.iter().all(|&id| {
            self.ctl(id, "query").is_some_and(|q| {
                q["state"] == "converged" && q["view_members"] == serde_json::json!(ids)
            })
        })
    }

    fn owned(&self, id: u8) -> u64 {
        self.ctl(id, "query")
            .and_then(|q| q["owned_buckets"][0].as_u64())
            .unwrap_or(0)
    }

    fn shares(&self, ids: &[u8]) -> String {
        ids.iter()
            .map(|&id| format!("host {id}: {} buckets", self.owned(id)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn in_client<T: Send>(&self, work: impl FnOnce() -> T + Send) -> Result<T, CliError> {
        inside(&self.segment.client, work)
            .map_err(|e| CliError::failed(format!("entering the client's namespace: {e}")))
    }

    /// A new connection every 10 ms from the client's addresses, each on its own thread.
    fn load(&self) -> Result<Load, CliError> {
        Load::start(
            &self.segment.client,
            Plan::new_connections(SocketAddr::from((VIP, 80)), client_addresses(CLIENTS)),
        )
        .map_err(|e| CliError::failed(format!("starting the client load: {e}")))
    }
}

/// One HTTP request from `src` to the VIP: the name of the host that answered.
fn request(src: Ipv4Addr) -> Result<String, String> {
    http_get(src, SocketAddr::from((VIP, 80)))
}

fn spawn_in(ns: &NetNs, args: &[&str], log: Option<&Path>) -> Result<Child, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failed(format!("cannot find the nlb binary: {e}")))?;
    let stderr = match log {
        Some(path) => {
            Stdio::from(std::fs::File::create(path).map_err(|e| CliError::failed(e.to_string()))?)
        }
        None => Stdio::null(),
    };
    Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(exe)
        .args(args)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| CliError::failed(format!("cannot start {args:?}: {e}")))
}

pub(crate) fn run(args: &Args) -> Result<(), CliError> {
    nlb_lab::segment::can_build().map_err(CliError::failed)?;
    let mode: ClusterMode = args.mode.parse().map_err(CliError::bad_input)?;
    let prefix = format!("nlblab{}", std::process::id() % 100_000);
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = interrupted.clone();
        // Ctrl-C ends the story at the next step; the cleanup still runs.
        let _ = ctrl_c(move || interrupted.store(true, Ordering::Relaxed));
    }
    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&dir).map_err(|e| CliError::failed(e.to_string()))?;
    let started = Instant::now();
    let hosts = args.hosts;
    let mut summary: Vec<(String, String)> = Vec::new();
    println!(
        "nlb lab: a {mode} cluster of {hosts} hosts serving {VIP}, in network namespaces {prefix}-*"
    );
    let segment = Segment::build(&prefix, hosts, CLIENTS, mode == ClusterMode::Igmp)
        .map_err(|e| CliError::failed(format!("building the segment: {e}")))?;
    let lab = Lab {
        started,
        dir,
        segment,
    };
    lab.say(format!(
        "built a Linux bridge, hosts 198.18.0.1-{hosts} and a client with {CLIENTS} addresses"
    ));
    let doctor = Doctor::start(&lab);
    // Secure by default, as a real cluster: one fresh key for this lab, written by the
    // code behind `nlb keygen`, shared by every host.
    let key = lab.dir.join("cluster.key");
    let secret = crate::keyfile::random_secret()
        .map_err(|e| CliError::failed(format!("random bytes for the lab's key: {e}")))?;
    crate::keyfile::write_new(&key, &secret, true)?;
    lab.say(format!(
        "made the cluster key {} (as `nlb keygen` does: 32 random bytes, mode 0600)",
        key.display()
    ));
    let mut processes = Processes(Vec::new());
    for (index, ns) in lab.segment.hosts.iter().enumerate() {
        let id = index as u8 + 1;
        let config = lab.dir.join(format!("h{id}.toml"));
        std::fs::write(
            &config,
            format!(
                "[cluster]\ninterface = \"eth0\"\nvips = [\"{VIP}\"]\nmode = \"{mode}\"\nkey_file = \"{}\"\n\n[host]\nid = {id}\ninitial_state = \"stopped\"\ncontrol_socket = \"{}\"\n\n[[rule]]\nports = \"80\"\nprotocol = \"tcp\"\naffinity = \"single\"\n",
                key.display(),
                lab.socket(id).display()
            ),
        )
        .map_err(|e| CliError::failed(e.to_string()))?;
        let name = format!("host{id}");
        let bind = format!("{VIP}:80");
        processes.0.push(spawn_in(
            ns,
            &["serve-http", "--bind", &bind, "--name", &name],
            None,
        )?);
        let config = config.to_string_lossy().into_owned();
        let run_dir = lab
            .dir
            .join(format!("run{id}"))
            .to_string_lossy()
            .into_owned();
        let log = lab.dir.join(format!("h{id}.log"));
        processes.0.push(spawn_in(
            ns,
            &["run", "--config", &config, "--run-dir", &run_dir],
            Some(&log),
        )?);
    }
    let all: Vec<u8> = (1..=hosts).collect();
    lab.wait("the daemons", Duration::from_secs(10), |lab| {
        all.iter().all(|&id| lab.ctl(id, "query").is_some())
    })?;
    lab.say(format!(
        "{hosts} daemons are up (stopped); starting them together"
    ));
    for &id in &all {
        lab.ctl(id, "start");
    }
    let took = lab.wait("convergence", Duration::from_secs(10), |lab| {
        lab.converged(&all)
    })?;
    lab.say(format!(
        "converged in {} ms (RFC 5227 probes for the VIP, then one view agreed): {}",
        took.as_millis(),
        lab.shares(&all)
    ));
    summary.push(("convergence".to_owned(), format!("{} ms", took.as_millis())));
    if interrupted.load(Ordering::Relaxed) {
        return cleanup(&lab, processes);
    }

    // Serving.
    let answers: Vec<(Ipv4Addr, Result<String, String>)> = lab.in_client(|| {
        client_addresses(CLIENTS)
            .map(|src| (src, request(src)))
            .collect()
    })?;
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for (_, answer) in &answers {
        *tally
            .entry(answer.clone().unwrap_or_else(|e| format!("failed ({e})")))
            .or_default() += 1;
    }
    lab.say(format!(
        "{CLIENTS} clients each asked {VIP}: every one answered by exactly one host"
    ));
    for (host, count) in &tally {
        println!("           {host:<8} {} {count}", "#".repeat(*count));
    }
    summary.push((
        "serving".to_owned(),
        tally
            .iter()
            .map(|(host, count)| format!("{host}: {count}"))
            .collect::<Vec<_>>()
            .join(", "),
    ));
    let neighbour = lab
        .segment
        .client
        .ip(&["neigh", "show", &VIP.to_string()])
        .unwrap_or_default();
    lab.say(format!(
        "the client's ARP cache: {} (the cluster MAC {} answers for every host)",
        neighbour.trim(),
        cluster_mac(VIP, mode)
    ));
    if interrupted.load(Ordering::Relaxed) {
        return cleanup(&lab, processes);
    }

    // Failover under load.
    let victim = hosts;
    let survivors: Vec<u8> = (1..hosts).collect();
    let load = lab.load()?;
    std::thread::sleep(Duration::from_millis(500));
    lab.say(format!(
        "a client now opens a new connection every 10 ms; host {victim} loses its link"
    ));
    let failed_at = Instant::now();
    let victim_ns = &lab.segment.hosts[usize::from(victim) - 1];
    let _ = victim_ns.ip(&["link", "set", "eth0", "down"]);
    lab.wait(
        "the survivors to take over",
        Duration::from_secs(5),
        |lab| lab.converged(&survivors),
    )?;
    std::thread::sleep(Duration::from_millis(1500));
    let (total, failed, outage) = tally_load(load, failed_at);
    lab.say(format!(
        "the other hosts took over host {victim}'s clients: served again after {} ms \
         ({total} connections, {failed} failed; a SYN that hit the gap was retried by TCP). {}",
        outage.as_millis(),
        lab.shares(&survivors)
    ));
    summary.push((
        "failover (link down)".to_owned(),
        format!(
            "clients served again after {} ms, {failed} of {total} failed",
            outage.as_millis()
        ),
    ));
    let _ = victim_ns.ip(&["link", "set", "eth0", "up"]);
    let took = lab.wait("the host to rejoin", Duration::from_secs(10), |lab| {
        lab.converged(&all)
    })?;
    lab.say(format!(
        "host {victim}'s link is back: it rejoined in {} ms. {}",
        took.as_millis(),
        lab.shares(&all)
    ));
    summary.push((
        "rejoin".to_owned(),
        format!("host {victim} back in {} ms", took.as_millis()),
    ));
    if interrupted.load(Ordering::Relaxed) {
        return cleanup(&lab, processes);
    }

    // Drain under load, and restart.
    let others: Vec<u8> = all.iter().copied().filter(|&id| id != 2).collect();
    let load = lab.load()?;
    std::thread::sleep(Duration::from_millis(300));
    let drained_at = Instant::now();
    lab.ctl(2, "drainstop");
    lab.wait("host 2 to drain", Duration::from_secs(10), |lab| {
        lab.ctl(2, "query").is_some_and(|q| q["state"] == "stopped") && lab.converged(&others)
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let (total, failed, _) = tally_load(load, drained_at);
    lab.say(format!(
        "nlb drainstop on host 2 under the same load: no new connections for it, the open \
         ones finished, stopped; {failed} of {total} requests failed. {}",
        lab.shares(&others)
    ));
    summary.push((
        "drainstop under load".to_owned(),
        format!("{failed} of {total} requests failed"),
    ));
    lab.ctl(2, "start");
    let took = lab.wait("host 2 to rejoin", Duration::from_secs(10), |lab| {
        lab.converged(&all)
    })?;
    lab.say(format!(
        "nlb start on host 2: back in {} ms, and only the buckets it takes moved. {}",
        took.as_millis(),
        lab.shares(&all)
    ));
    summary.push((
        "restart".to_owned(),
        format!("host 2 back in {} ms", took.as_millis()),
    ));
    match doctor.finish() {
        Ok((frames, findings)) => {
            let count = |severity| findings.iter().filter(|f| f.severity == severity).count();
            let (errors, warnings) = (
                count(nlb_doctor::Severity::Error),
                count(nlb_doctor::Severity::Warning),
            );
            lab.say(format!(
                "the doctor watched the client's port all along (nlb watch): {frames} frames, \
                 {errors} errors, {warnings} warnings"
            ));
            for finding in findings.iter().filter(|f| {
                f.kind == nlb_doctor::Kind::NlbCluster || f.severity != nlb_doctor::Severity::Info
            }) {
                println!("           {}: {}", finding.kind.name(), finding.message);
            }
            summary.push((
                "doctor (client port)".to_owned(),
                format!("{frames} frames, {errors} errors, {warnings} warnings"),
            ));
        }
        Err(why) => lab.say(format!("the doctor could not watch: {why}")),
    }
    println!("\n  {:<22} result", "step");
    for (step, result) in &summary {
        println!("  {step:<22} {result}");
    }
    println!();
    if args.keep {
        return keep(lab, processes);
    }
    cleanup(&lab, processes)
}

/// Leaves everything running and says how to use it and how to remove it.
fn keep(lab: Lab, processes: Processes) -> Result<(), CliError> {
    let pids: Vec<String> = processes.0.iter().map(|c| c.id().to_string()).collect();
    std::mem::forget(processes);
    let names: Vec<String> = std::iter::once(lab.segment.switch.name().to_owned())
        .chain(lab.segment.hosts.iter().map(|h| h.name().to_owned()))
        .chain(std::iter::once(lab.segment.client.name().to_owned()))
        .collect();
    for (index, host) in lab.segment.hosts.iter().enumerate() {
        println!(
            "host {}: sudo ip netns exec {} bash    (nlb query --socket {})",
            index + 1,
            host.name(),
            lab.socket(index as u8 + 1).display()
        );
    }
    println!(
        "client: sudo ip netns exec {} curl http://{VIP}/",
        lab.segment.client.name()
    );
    println!(
        "to remove it: sudo kill {}; for ns in {}; do sudo ip netns del $ns; done",
        pids.join(" "),
        names.join(" ")
    );
    std::mem::forget(lab.segment);
    Ok(())
}

/// Stops the load; returns (requests, failed, outage after `since`): the outage ends
/// with the last request that failed or needed a SYN retransmission.
fn tally_load(load: Load, since: Instant) -> (usize, usize, Duration) {
    let seen = load.finish();
    let outage = last_trouble(&seen.new, since, Instant::now());
    let failed = seen.new.iter().filter(|a| a.answer.is_err()).count();
    (seen.new.len(), failed, outage)
}

/// The doctor's live analysis on the client's port, from the start of the story to its
/// end (the same socket and analyzer as `nlb watch`, which sends nothing).
struct Doctor {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<(u64, Vec<nlb_doctor::Finding>), String>>,
}

impl Doctor {
    fn start(lab: &Lab) -> Doctor {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        // Opened on a thread in the client's namespace, the socket stays there.
        let socket = inside(&lab.segment.client, || {
            nlb_linux::packet::PacketSocket::observe("eth0")
        });
        let thread = std::thread::spawn(move || {
            let socket = socket
                .map_err(|e| format!("entering the client: {e}"))?
                .map_err(|e| format!("watching the client's eth0: {e}"))?;
            let mut analyzer = nlb_doctor::Analyzer::new(nlb_doctor::Settings {
                vips: vec![VIP],
                ..nlb_doctor::Settings::default()
            });
            let mut buf = vec![0u8; 65536 + 4];
            let mut frames = 0u64;
            while !stop_flag.load(Ordering::Relaxed) {
                match socket.try_recv_tagged(&mut buf) {
                    Ok(frame) => {
                        frames += 1;
                        analyzer.handle_ethernet(frames, super::doctor::now_ns(), &buf[frame]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        analyzer.handle_timeout(super::doctor::now_ns());
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => return Err(format!("watching the client's eth0: {e}")),
                }
            }
            analyzer.handle_timeout(super::doctor::now_ns());
            Ok((frames, analyzer.finish()))
        });
        Doctor { stop, thread }
    }

    fn finish(self) -> Result<(u64, Vec<nlb_doctor::Finding>), String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .unwrap_or_else(|_| Err("the watcher thread panicked".to_owned()))
    }
}

fn cleanup(lab: &Lab, processes: Processes) -> Result<(), CliError> {
    drop(processes);
    lab.say(
        "stopped the daemons (each told its peers and removed its tables); removing the namespaces",
    );
    let _ = std::fs::remove_dir_all(&lab.dir);
    Ok(())
}

/// Turns Ctrl-C into `action` instead of death, so that the lab can clean up: SIGINT is
/// blocked in this thread (and so in the threads it starts later) and a dedicated thread
/// waits for it.
fn ctrl_c(action: impl Fn() + Send + 'static) -> nix::Result<()> {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGINT);
    set.thread_block()?;
    std::thread::spawn(move || {
        if set.wait().is_ok() {
            action();
        }
    });
    Ok(())
}

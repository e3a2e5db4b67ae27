//! `nlb lab`: a whole cluster on this machine, in network namespaces, playing its story
//! with live output: convergence, serving, the ARP cache, a failover, a drain, a rejoin,
//! a web server dying and coming back (each host's `[[check]]` moves its clients away and
//! back), and what `nlb watch`'s analysis saw on the client's port all along. Every host
//! serves its status page on `127.0.0.1:9102` inside its namespace.
//!
//! It builds a Linux bridge, three hosts (`--hosts N`) each running a real `nlb run` and a small HTTP
//! server on the VIP, and a client with 30 addresses, all inside namespaces it creates
//! (198.18.0.0/24 only), and removes everything at the end, or on Ctrl-C.

use crate::CliError;
use nlb_lab::http::http_get;
use nlb_lab::load::{Attempt, Load, Plan, last_trouble, outage, served_by};
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

/// The metrics listener (and status page) of every host, inside its namespace.
const METRICS: &str = "127.0.0.1:9102";
/// The health check of every host: fast, so that the story moves on.
const CHECK_INTERVAL_MS: u64 = 200;
const CHECK_FALL: u64 = 2;
const CHECK_RISE: u64 = 2;

/// Host `id`'s `[[check]]`: an HTTP request to its own server on its own address (not
/// the VIP, which the host's bucket filter guards like any client's traffic).
fn check_table(id: u8) -> String {
    format!(
        "[[check]]\nname = \"web\"\ntype = \"http\"\ntarget = \"http://{}/\"\n\
         interval_ms = {CHECK_INTERVAL_MS}\ntimeout_ms = 100\nfall = {CHECK_FALL}\nrise = {CHECK_RISE}\n\
         action = \"drain\"\n",
        nlb_lab::segment::host_address(id)
    )
}

/// Host `id`'s HTTP server, answering `host<id>` on every address of its namespace: the
/// VIP for the clients, its own address for its health check.
fn spawn_server(ns: &NetNs, id: u8) -> Result<Child, CliError> {
    let name = format!("host{id}");
    spawn_in(
        ns,
        &["serve-http", "--bind", "0.0.0.0:80", "--name", &name],
        None,
    )
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
    // Where each host's `serve-http` is in `processes`.
    let mut servers: Vec<usize> = Vec::new();
    for (index, ns) in lab.segment.hosts.iter().enumerate() {
        let id = index as u8 + 1;
        let config = lab.dir.join(format!("h{id}.toml"));
        std::fs::write(
            &config,
            format!(
                "[cluster]\ninterface = \"eth0\"\nvips = [\"{VIP}\"]\nmode = \"{mode}\"\nkey_file = \"{}\"\n\n[host]\nid = {id}\ninitial_state = \"stopped\"\ncontrol_socket = \"{}\"\n\n[[rule]]\nports = \"80\"\nprotocol = \"tcp\"\naffinity = \"single\"\n\n[metrics]\nlisten = \"{METRICS}\"\n\n{}",
                key.display(),
                lab.socket(id).display(),
                check_table(id)
            ),
        )
        .map_err(|e| CliError::failed(e.to_string()))?;
        servers.push(processes.0.len());
        processes.0.push(spawn_server(ns, id)?);
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
    if interrupted.load(Ordering::Relaxed) {
        return cleanup(&lab, processes);
    }

    // A service dies and comes back: the health check moves its clients.
    health_step(&lab, &mut processes, &servers, &all, &mut summary)?;
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

/// What host `id`'s first check says: `up` or `down`.
fn check_health(lab: &Lab, id: u8) -> Option<String> {
    lab.ctl(id, "query")
        .and_then(|q| q["checks"][0]["health"].as_str().map(str::to_owned))
}

/// `GET path` on the metrics listener of the namespace this thread is in: the status
/// line and the body.
fn get_local(path: &str) -> Result<(String, String), String> {
    use std::io::Read;
    let address: SocketAddr = METRICS.parse().map_err(|e| format!("{e}"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2))
        .map_err(|e| format!("connecting to {METRICS}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {METRICS}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("asking {METRICS}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("reading from {METRICS}: {e}"))?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    Ok((status, body.to_owned()))
}

/// Each bucket's owner in rule 1, as host `id`'s status page sees it (`/status.json`).
fn bucket_owners(lab: &Lab, id: u8) -> Option<Vec<Value>> {
    let ns = &lab.segment.hosts[usize::from(id) - 1];
    let (_, body) = inside(ns, || get_local("/status.json")).ok()?.ok()?;
    let status: Value = serde_json::from_str(&body).ok()?;
    status["rules"][0]["owners"].as_array().cloned()
}

/// How many buckets changed owner between two maps, said for the story.
fn changed(before: &Option<Vec<Value>>, after: &Option<Vec<Value>>) -> String {
    match (before, after) {
        (Some(before), Some(after)) if before.len() == after.len() => {
            let moved = before.iter().zip(after).filter(|(b, a)| b != a).count();
            format!("{moved} buckets changed owner on the status page's map")
        }
        _ => "the status page's map was not readable".to_owned(),
    }
}

/// Host 1's web server dies under load and comes back: its health check goes down after
/// `fall` failed runs and its clients move to the others, then it passes `rise` runs and
/// the host takes its share back. Along the way, what an operator would look at.
fn health_step(
    lab: &Lab,
    processes: &mut Processes,
    servers: &[usize],
    all: &[u8],
    summary: &mut Vec<(String, String)>,
) -> Result<(), CliError> {
    let victim: u8 = 1;
    let name = format!("host{victim}");
    let victim_ns = &lab.segment.hosts[usize::from(victim) - 1];
    let others: Vec<u8> = all.iter().copied().filter(|&id| id != victim).collect();
    let total_owned = |lab: &Lab, ids: &[u8]| ids.iter().map(|&id| lab.owned(id)).sum::<u64>();
    let had = lab.owned(victim);
    let witness = others[0];
    let map_before = bucket_owners(lab, witness);
    let load = lab.load()?;
    std::thread::sleep(Duration::from_millis(600));
    let killed_at = Instant::now();
    let affected = served_by(&load.new_so_far().0, &name, killed_at);
    let server = &mut processes.0[servers[usize::from(victim) - 1]];
    let _ = server.kill();
    let _ = server.wait();
    lab.say(format!(
        "every host checks its own web server ([[check]] http, every {CHECK_INTERVAL_MS} ms, \
         fall {CHECK_FALL}, rise {CHECK_RISE}); under the same load, host {victim}'s server dies \
         (SIGKILL): the host is alive and its heartbeats go on, but {} of the {CLIENTS} \
         clients are its own",
        affected.len()
    ));
    lab.wait(
        &format!("host {victim}'s check to go down"),
        Duration::from_secs(5),
        |lab| check_health(lab, victim).as_deref() == Some("down"),
    )?;
    let down = killed_at.elapsed();
    lab.wait(
        &format!("host {victim}'s buckets to move"),
        Duration::from_secs(5),
        |lab| lab.owned(victim) == 0 && total_owned(lab, &others) == 256,
    )?;
    let moved = killed_at.elapsed();
    std::thread::sleep(Duration::from_millis(1000));
    let until = Instant::now();
    let (seen, _) = load.new_so_far();
    let window: Vec<&Attempt> = seen
        .iter()
        .filter(|a| a.started >= killed_at && a.started < until)
        .collect();
    let failed_theirs = window
        .iter()
        .filter(|a| a.answer.is_err() && affected.contains(&a.src))
        .count();
    let failed_others = window
        .iter()
        .filter(|a| a.answer.is_err() && !affected.contains(&a.src))
        .count();
    let last_failed = last_trouble(&seen, killed_at, until);
    let served_again = outage(&seen, killed_at, &affected).unwrap_or(until - killed_at);
    let map_moved = bucket_owners(lab, witness);
    lab.say(format!(
        "host {victim}'s check failed {CHECK_FALL} runs in a row: down after {} ms; its {had} \
         buckets went to the others after {} ms ({}); its clients were served again after {} \
         ms (fall {CHECK_FALL} x interval {CHECK_INTERVAL_MS} ms: within {} ms of the death, plus \
         convergence). \
         {} requests: {failed_theirs} failed, all from host {victim}'s clients, refused by its \
         dead port (the last {} ms after the kill); {failed_others} from the others' clients. {}",
        down.as_millis(),
        moved.as_millis(),
        changed(&map_before, &map_moved),
        served_again.as_millis(),
        CHECK_FALL * CHECK_INTERVAL_MS,
        window.len(),
        last_failed.as_millis(),
        lab.shares(all)
    ));
    summary.push((
        "service dies (check)".to_owned(),
        format!(
            "check down in {} ms, clients served again after {} ms, {failed_theirs} failed \
             (host {victim}'s clients), {failed_others} others",
            down.as_millis(),
            served_again.as_millis()
        ),
    ));
    // What an operator looks at: the query, the metrics, the status page.
    let socket = lab.socket(victim);
    let query = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            Command::new(exe)
                .args(["query", "--socket"])
                .arg(&socket)
                .stderr(Stdio::null())
                .output()
                .ok()
        })
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    println!(
        "           what an operator sees: `nlb query --socket {}` on host {victim}:",
        socket.display()
    );
    for line in query.lines().filter(|l| l.starts_with("check ")) {
        println!("             {line}");
    }
    let (page, metrics) = inside(victim_ns, || (get_local("/"), get_local("/metrics")))
        .map_err(|e| CliError::failed(format!("entering host {victim}'s namespace: {e}")))?;
    let metric = metrics
        .ok()
        .and_then(|(_, body)| {
            body.lines()
                .find(|l| l.starts_with("nlb_check_up{"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "nlb_check_up (not found)".to_owned());
    let page = page.map_or_else(|e| e, |(status, _)| status);
    println!(
        "             metrics: {metric}; the live status page ({page}): \
         sudo ip netns exec {} curl http://{METRICS}/ (or a browser there; /status.json)",
        victim_ns.name()
    );

    // The server comes back.
    let map_down = bucket_owners(lab, witness);
    let restarted_at = Instant::now();
    processes.0[servers[usize::from(victim) - 1]] = spawn_server(victim_ns, victim)?;
    lab.wait(
        &format!("host {victim}'s check to come up"),
        Duration::from_secs(5),
        |lab| check_health(lab, victim).as_deref() == Some("up"),
    )?;
    let up = restarted_at.elapsed();
    lab.wait(
        &format!("host {victim} to take its buckets back"),
        Duration::from_secs(10),
        |lab| lab.owned(victim) > 0 && total_owned(lab, all) == 256 && lab.converged(all),
    )?;
    let back = restarted_at.elapsed();
    let map_back = bucket_owners(lab, witness);
    std::thread::sleep(Duration::from_millis(1000));
    let seen = load.finish().new;
    let after: Vec<&Attempt> = seen.iter().filter(|a| a.started >= restarted_at).collect();
    let failed = after.iter().filter(|a| a.answer.is_err()).count();
    let served = after.iter().filter(|a| a.answered_by(&name)).count();
    lab.say(format!(
        "host {victim}'s server is back: its check passed {CHECK_RISE} runs in a row, up after \
         {} ms; it took {} buckets back after {} ms ({}); {} requests meanwhile, \
         {failed} failed, {served} answered by host {victim} again. {}",
        up.as_millis(),
        lab.owned(victim),
        back.as_millis(),
        changed(&map_down, &map_back),
        after.len(),
        lab.shares(all)
    ));
    summary.push((
        "service back (check)".to_owned(),
        format!(
            "check up in {} ms, share back in {} ms, {failed} of {} failed",
            up.as_millis(),
            back.as_millis(),
            after.len()
        ),
    ));
    Ok(())
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
        println!(
            "        status page: sudo ip netns exec {} curl http://{METRICS}/",
            host.name()
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

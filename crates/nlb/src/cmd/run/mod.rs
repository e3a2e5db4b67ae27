//! `nlb run --config FILE`: the daemon.
//!
//! A thin shell around [`Node`]: it feeds the node every frame from the cluster
//! interface and every timeout, sends what the node wants sent, turns the node's actions
//! into nft rulesets, and logs its events. It decides nothing itself.
//!
//! # The protocol loop never waits
//!
//! One task, the protocol loop, owns the node. It handles received frames (at most
//! [`FRAMES_PER_WAKEUP`] per wakeup, so timers always run), the node's timers, the lease
//! tick, signals, and requests queued on channels. Nothing it awaits depends on another
//! party's speed:
//!
//! - control-socket and HTTP metrics clients are served in their own tasks
//!   ([`crate::control::serve`], [`crate::metrics::serve`]), with a request size limit and
//!   deadlines; they answer from the [`Snapshot`] the loop publishes after it handled
//!   something, and commands reach the loop on a channel and come back on a oneshot;
//! - kernel work (nft batches, lease refreshes, `ss` counts, nft counter reads) runs off
//!   the loop, on the kernel thread ([`crate::kernel`]) or a blocking task.
//!
//! # Ordering contract
//!
//! 1. **A release is applied before it is announced.** While the kernel may still accept
//!    a bucket that the node no longer owns (an nft batch that releases it is queued or
//!    running), heartbeats (EtherType 0x88B5) are held back; ARP frames go. They go out,
//!    in order, once the batch is done.
//! 2. **Fail closed.** If an nft batch or a lease refresh fails, the host tells the node
//!    its data plane is unhealthy ([`Node::handle_dataplane`]): the node accepts no new
//!    buckets, so it owns nothing and its heartbeats say so. The daemon stops refreshing
//!    the lease, and holds heartbeats back until the lease has run out (until then the
//!    kernel may still accept what it had), retries the whole ruleset every
//!    [`RETRY_INTERVAL`], and reports it (`nlb.dataplane_failed`, `nlb_nft_failures`,
//!    `nlb_dataplane_healthy`). When a retry succeeds, the node is told it is healthy.
//! 3. **A lease is refreshed only for what the node owns now.** Before each refresh the
//!    loop reads the frames already queued (bounded), runs the node's timeouts and
//!    queues the resulting batch; the kernel thread is first in first out, so after a
//!    pause (a stopped VM, say) a release the node decides is applied before the
//!    lease that follows. Frames already queued are read before any timeout is judged.
//!
//! # Watched kernel state
//!
//! The interface is watched over rtnetlink ([`nlb_linux::netlink`]): deleted, the daemon
//! exits non-zero with a message saying so (its supervisor restarts it once the
//! interface is back); down and up are logged; a new MAC makes the host rejoin with it;
//! a VIP removed by hand is put back (`nlb.vip_restored`). Every
//! [`TABLE_CHECK_INTERVAL`] the kernel thread checks that nlb's tables are there and, if
//! one is gone (`nft flush ruleset`), the whole ruleset goes in again
//! (`nlb.tables_restored`); a missing `inet` table is noticed sooner, by the next lease
//! refresh failing. The same check reads `net.ipv4.ip_local_port_range`; if an operator
//! changed it, the tables are replaced (`nlb.local_ports_changed`), since the `netdev`
//! stage defers replies to this host's outbound connections from a VIP by that range
//! (up to one interval late: an outbound connection from a VIP on a port of the new
//! range, opened within it, can be cut).
//!
//! # One daemon per cluster per network namespace
//!
//! The lock is keyed by interface, cluster id and network namespace, the nft tables are
//! named after the interface and the cluster, and a control socket that answers is never
//! taken over.
//!
//! # Modules
//!
//! - `startup.rs`: taking the interface, and giving it back on the way out;
//! - `dataplane.rs`: nft batches and element updates, the lease, held heartbeats,
//!   failing closed;
//! - `drain.rs`: released buckets that still hold this host's connections;
//! - `link.rs`: the watched interface (deleted, up and down, a new MAC, a VIP removed);
//! - `reload.rs`: SIGHUP around the core's reload policy, and successors' incarnations;
//! - `requests.rs`: control requests and the published snapshot;
//! - this file: the arguments, the clock, the loop, and the event log.
//!
//! Start-up order matters: the ARP table goes in before the VIPs are added, so the kernel
//! never answers ARP for a VIP with its own MAC, not even for a moment. On SIGTERM or
//! SIGINT it releases everything, tells its peers it stops, then removes its VIPs and
//! then its tables (in that order, for the same reason).

mod dataplane;
mod drain;
mod health;
mod link;
mod reload;
mod requests;
mod startup;

use crate::CliError;
use crate::cmd::load_config;
use crate::control::{DaemonStats, Snapshot};
use crate::kernel::Kernel;
use nlb_core::config::Config;
use nlb_core::lease::Lease;
use nlb_core::node::{Event, Node};
use nlb_core::time::Instant;
use nlb_linux::packet::AsyncPacketSocket;
use nlb_linux::ruleset::RuleState;
use nlb_wire::heartbeat::{HeartbeatKey, HostState};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The configuration file.
    #[arg(long)]
    config: PathBuf,
    /// Control socket path (default: host.control_socket from the configuration).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Directory for the lock that keeps a second daemon off the interface.
    #[arg(long, default_value = "/run/nlb")]
    run_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn fail(what: &str) -> impl Fn(String) -> CliError + '_ {
    move |err| CliError::failed(format!("{what}: {err}"))
}

/// The daemon's clock: microseconds since it started.
struct Clock {
    start: std::time::Instant,
    start_unix: f64,
}

impl Clock {
    fn new() -> Clock {
        let start_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Clock {
            start: std::time::Instant::now(),
            start_unix,
        }
    }
    fn now(&self) -> Instant {
        Instant(self.start.elapsed().as_micros() as u64)
    }
    fn deadline(&self, at: Instant) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.start + Duration::from_micros(at.micros()))
    }
}

/// The cluster key the configuration names, if it names one.
fn cluster_key(config: &Config) -> Result<Option<HeartbeatKey>, CliError> {
    config.cluster.key_file.as_deref().map(read_key).transpose()
}

fn read_key(path: &Path) -> Result<HeartbeatKey, CliError> {
    crate::keyfile::read(path)
}

pub(crate) fn run(args: &Args) -> Result<(), CliError> {
    let config = load_config(&args.config)?;
    let events = init_logging(args.log_format);
    crate::keyfile::warn_if_keyless(&config);
    if !nix::unistd::geteuid().is_root() {
        return Err(CliError::failed(
            "nlb run needs root (CAP_NET_ADMIN and CAP_NET_RAW) to program nftables and open a \
             raw socket: run it with sudo",
        ));
    }
    let key = cluster_key(&config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| CliError::failed(format!("cannot start the runtime: {err}")))?;
    runtime.block_on(daemon(args, config, key, events))
}

/// Logs to stderr (text or JSON), and keeps the last named events for the status page.
fn init_logging(format: LogFormat) -> crate::events::EventLog {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("NLB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal; plain text for files and the journal.
    use std::io::IsTerminal;
    let events = crate::events::EventLog::default();
    let text = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(events.layer());
    let _ = match format {
        LogFormat::Text => registry.with(text).try_init(),
        LogFormat::Json => registry.with(text.json()).try_init(),
    };
    events
}

/// Frames handled per wakeup of the raw socket, so that timers always run.
pub(crate) const FRAMES_PER_WAKEUP: usize = 64;
/// Frames read before the node's timeouts are judged (queued while the loop did not run).
const FRAMES_BEFORE_TIMEOUT: usize = 256;
/// How often a failed data plane is tried again.
const RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// Heartbeats kept while they are held back; older ones are dropped (peers see loss).
const HELD_HEARTBEATS: usize = 16;
/// How often the snapshot for control and metrics clients is refreshed, at most, when
/// nothing forces it.
const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(20);
/// How often the daemon checks that its nft tables are there (a lease refresh that
/// fails notices a missing `inet` table sooner).
const TABLE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

struct Daemon {
    node: Node,
    socket: Arc<AsyncPacketSocket>,
    /// What the node wants the kernel to do, per rule slot.
    rules: Vec<RuleState>,
    /// What the kernel was last told, successfully.
    applied: Vec<RuleState>,
    /// The buckets that drain (`drain.rs`); `rules` holds them as well.
    drains: drain::Drains,
    /// A [`crate::kernel::Job::LiveBuckets`] is queued.
    live_counting: bool,
    /// The last such count failed (logged when counts start and stop failing).
    drain_count_failing: bool,
    /// The last count of the VIPs' connections failed (logged the same way).
    connection_count_failing: bool,
    /// The batch in flight replaces tables, which sets the kernel's lease afresh.
    tables_in_flight: bool,
    /// `net.ipv4.ip_local_port_range` at start-up (see [`nlb_linux::ruleset`]).
    local_ports: (u16, u16),
    /// The batch on the kernel thread: its id, the rules it applies, and whether it
    /// replaces every table.
    in_flight: Option<(u64, Vec<RuleState>, bool)>,
    /// Whether `rules` changed since the last batch was queued.
    apply_dirty: bool,
    next_apply_id: u64,
    /// Heartbeats held back until a release is applied.
    held: VecDeque<Vec<u8>>,
    /// Whether the data plane does what the node asks; false: failing closed.
    healthy: bool,
    /// When to try a failed data plane again.
    retry_at: Option<tokio::time::Instant>,
    lease_in_flight: bool,
    /// Until when the kernel may honour the last lease refresh.
    lease_until: std::time::Instant,
    counting: bool,
    send_failing: bool,
    checking_tables: bool,
    /// The next batch replaces every table (some went missing).
    full_apply: bool,
    config: Config,
    lease: Lease,
    kernel: Kernel,
    /// A second worker, for the counts of draining buckets' connections (`drain.rs`).
    counter: Kernel,
    connections: u32,
    clock: Clock,
    mac: nlb_wire::MacAddr,
    /// Where the incarnation counter lives (`--run-dir`).
    run_dir: PathBuf,
    stats: DaemonStats,
    snapshots: watch::Sender<Arc<Snapshot>>,
    last_snapshot: std::time::Instant,
    publish_now: bool,
    buf: Vec<u8>,
    /// The health checks running now, their runner and its generation (`health.rs`).
    running_checks: Vec<nlb_core::check::CheckSpec>,
    check_runner: Option<crate::checks::Runner>,
    check_generation: u64,
    check_tx: tokio::sync::mpsc::Sender<crate::checks::CheckResult>,
}

fn log_event(event: &Event) {
    match event {
        Event::StateChanged { from, to } => {
            tracing::info!(event = "nlb.state_changed", from = %from, to = %to)
        }
        Event::ViewInstalled {
            epoch,
            members,
            moved,
        } => tracing::info!(event = "nlb.view_installed", epoch, members = ?members, moved),
        Event::Converged { epoch, duration } => {
            tracing::info!(
                event = "nlb.converged",
                epoch,
                duration_ms = duration.as_secs_f64() * 1e3
            )
        }
        Event::PeerUp { host, mac } => tracing::info!(event = "nlb.peer_up", host, mac = %mac),
        Event::PeerDown { host } => tracing::warn!(event = "nlb.peer_down", host),
        Event::Misconfigured(why) => {
            tracing::error!(event = "nlb.misconfigured", reason = %why)
        }
        Event::HeartbeatDropped {
            reason,
            from,
            count,
        } => {
            tracing::info!(
                event = "nlb.heartbeat_dropped",
                reason = ?reason,
                latest_from = %from,
                count,
                advice = reason.advice()
            )
        }
        Event::Conflict { ip, mac, defended } => {
            tracing::warn!(event = "nlb.conflict", ip = %ip, mac = %mac, defended)
        }
        Event::Stalled { silent } => tracing::warn!(
            event = "nlb.stalled",
            silent_ms = silent.as_secs_f64() * 1e3,
            "this host did not run for longer than its lease (a paused VM, swapping, an \
             overloaded machine): it released its buckets and rejoins"
        ),
        Event::ProbeSeen { ip, mac } => tracing::warn!(
            event = "nlb.probe_seen",
            ip = %ip,
            mac = %mac,
            "someone is probing for our address"
        ),
        Event::CheckChanged {
            name,
            health: nlb_core::check::Health::Down,
            error,
            ..
        } => tracing::warn!(
            event = "nlb.check_down",
            check = %name,
            error = error.as_deref().unwrap_or(""),
            "a health check failed: this host leaves the rules it guards to the others"
        ),
        Event::CheckChanged { name, .. } => tracing::info!(
            event = "nlb.check_up",
            check = %name,
            "a health check passes again: this host takes its share back"
        ),
        Event::CheckPanic { slot, active: true } => tracing::error!(
            event = "nlb.check_panic",
            rule_slot = slot,
            "a check is down on every host that serves this rule: they all keep serving it \
             rather than drop every client; fix the service or the check"
        ),
        Event::CheckPanic {
            slot,
            active: false,
        } => tracing::warn!(
            event = "nlb.check_panic_over",
            rule_slot = slot,
            "a host's check passes again: the rule is served by the healthy hosts only"
        ),
    }
}

/// Runs the daemon until SIGTERM or SIGINT (or the interface is deleted).
async fn daemon(
    args: &Args,
    config: Config,
    key: Option<HeartbeatKey>,
    events: crate::events::EventLog,
) -> Result<(), CliError> {
    let startup::Running {
        mut daemon,
        mut done,
        mut link_events,
        mut requests,
        mut servers,
        mut check_results,
        control_path,
        lock: _lock,
        groups: _groups,
    } = startup::start(args, config, key, events).await?;
    let notifier = nlb_linux::systemd::Notifier::from_env();
    notifier.notify("READY=1");
    let mut watchdog = tokio::time::interval(
        nlb_linux::systemd::Notifier::watchdog_interval().unwrap_or(Duration::from_secs(3600)),
    );
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| fail("signals")(e.to_string()))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| fail("signals")(e.to_string()))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| fail("signals")(e.to_string()))?;
    let mut lease_tick = tokio::time::interval(daemon.lease.refresh);
    lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drain_tick = tokio::time::interval(Duration::from_millis(500));
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut table_tick = tokio::time::interval(TABLE_CHECK_INTERVAL);
    table_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
    let mut exit = Ok(());
    loop {
        let deadline = daemon.clock.deadline(daemon.node.poll_timeout());
        let retry = daemon.retry_at.unwrap_or_else(far);
        let socket = daemon.socket.clone();
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            readable = socket.readable() => {
                let mut guard = readable.map_err(|e| fail("raw socket")(e.to_string()))?;
                match daemon.read_frames(FRAMES_PER_WAKEUP) {
                    // More may be queued: stay ready, and let the other arms run first.
                    Ok(true) => daemon.stats.frame_cap_hits += 1,
                    Ok(false) => guard.clear_ready(),
                    Err(err) => {
                        guard.clear_ready();
                        tracing::warn!(event = "nlb.recv_failed", error = %err);
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => daemon.timeout(),
            _ = lease_tick.tick() => daemon.refresh_lease(),
            Some(finished) = done.recv() => daemon.handle_done(finished),
            _ = tokio::time::sleep_until(retry), if daemon.retry_at.is_some() => {
                daemon.retry_at = None;
                daemon.start_apply();
            }
            Some(request) = requests.recv() => daemon.answer(request),
            Some(result) = check_results.recv() => daemon.check_result(result),
            Some(event) = link_events.recv() => {
                if let Err(err) = daemon.link_event(event) {
                    exit = Err(err);
                    break;
                }
            }
            _ = table_tick.tick() => daemon.check_tables(),
            _ = watchdog.tick() => notifier.notify("WATCHDOG=1"),
            _ = sighup.recv() => {
                notifier.notify("RELOADING=1");
                daemon.reload(&args.config);
                notifier.notify("READY=1");
            }
            _ = drain_tick.tick() => {
                if daemon.node.state() == HostState::Draining {
                    daemon.count_connections();
                }
                daemon.count_live_buckets();
            }
        }
        daemon.flush();
    }

    notifier.notify("STOPPING=1");
    startup::shut_down(&mut daemon, &mut servers, &control_path);
    exit
}

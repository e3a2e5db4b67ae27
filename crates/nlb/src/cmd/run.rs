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
//! refresh failing.
//!
//! # One daemon per cluster per network namespace
//!
//! The lock is keyed by interface, cluster id and network namespace, the nft tables are
//! named after the interface and the cluster, and a control socket that answers is never
//! taken over.
//!
//! Start-up order matters: the ARP table goes in before the VIPs are added, so the kernel
//! never answers ARP for a VIP with its own MAC, not even for a moment. On SIGTERM or
//! SIGINT it releases everything, tells its peers it stops, then removes its VIPs and
//! then its tables (in that order, for the same reason).

use crate::CliError;
use crate::cmd::load_config;
use crate::control::{DaemonStats, Request, Snapshot, Status};
use crate::kernel::{Done, Job, Kernel};
use nlb_core::config::Config;
use nlb_core::lease::Lease;
use nlb_core::node::{Command as NodeCommand, Event, Node, ReloadOutcome};
use nlb_core::time::Instant;
use nlb_linux::host::{
    DaemonLock, add_vip, interface_index, interface_mac, join_group, remove_vip,
};
use nlb_linux::netlink::{LinkEvent, watch_link};
use nlb_linux::nft::apply;
use nlb_linux::packet::{AsyncPacketSocket, PacketSocket};
use nlb_linux::ruleset::{RuleState, Ruleset};
use nlb_wire::addressing::{ClusterMode, cluster_id, cluster_mac, igmp_group};
use nlb_wire::heartbeat::{BucketBitmap, HeartbeatKey, HostState};
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
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
    init_logging(args.log_format);
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
    runtime.block_on(daemon(args, config, key))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NLB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal; plain text for files and the journal.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
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

/// Whether `frame` is an nlb heartbeat (EtherType 0x88B5, tagged or not).
fn is_heartbeat(frame: &[u8]) -> bool {
    let ethertype = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    match ethertype(12) {
        Some(0x8100 | 0x88a8) => ethertype(16) == Some(nlb_wire::ethernet::ETHERTYPE_NLB_HEARTBEAT),
        other => other == Some(nlb_wire::ethernet::ETHERTYPE_NLB_HEARTBEAT),
    }
}

/// Whether the kernel, holding `kernel`, may accept a new connection in a bucket that
/// `wanted` does not own.
fn releases(kernel: &[RuleState], wanted: &[RuleState]) -> bool {
    kernel
        .iter()
        .enumerate()
        .any(|(slot, have)| match wanted.get(slot) {
            Some(want) => have.owned.iter().any(|bucket| !want.owned.contains(bucket)),
            None => !have.owned.is_empty(),
        })
}

struct Daemon {
    node: Node,
    socket: Arc<AsyncPacketSocket>,
    /// What the node wants the kernel to do, per rule slot.
    rules: Vec<RuleState>,
    /// What the kernel was last told, successfully.
    applied: Vec<RuleState>,
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
}

impl Daemon {
    fn ruleset(&self) -> Ruleset<'_> {
        Ruleset {
            config: &self.config,
            rules: &self.rules,
            lease: self.lease.length,
        }
    }

    /// Whether heartbeats must wait: the kernel may still accept a bucket that the node
    /// no longer owns, and the lease has not run out.
    fn hold_heartbeats(&self) -> bool {
        let lease_over = !self.lease_in_flight && std::time::Instant::now() >= self.lease_until;
        if lease_over && !self.healthy {
            return false;
        }
        let in_flight = self
            .in_flight
            .as_ref()
            .map(|(_, rules, _)| rules.as_slice());
        releases(&self.applied, &self.rules)
            || in_flight.is_some_and(|rules| releases(rules, &self.rules))
    }

    /// Sends, applies and logs whatever the node produced.
    fn flush(&mut self) {
        let mut dirty = false;
        while let Some(action) = self.node.poll_action() {
            let nlb_core::node::Action::SetRule {
                rule,
                owned,
                keep_established,
            } = action;
            if let Some(slot) = self.rules.get_mut(rule) {
                *slot = RuleState {
                    owned,
                    keep_established,
                };
                dirty = true;
            }
        }
        if dirty {
            self.apply_dirty = true;
            self.publish_now = true;
            tracing::info!(
                event = "nlb.ownership",
                owned = ?self.rules.iter().map(|r| r.owned.len()).collect::<Vec<_>>()
            );
        }
        self.start_apply();
        let hold = self.hold_heartbeats();
        if !hold {
            while let Some(frame) = self.held.pop_front() {
                self.send(&frame);
            }
        }
        while let Some(frame) = self.node.poll_transmit() {
            if hold && is_heartbeat(&frame) {
                self.stats.heartbeats_held += 1;
                if self.held.len() == HELD_HEARTBEATS {
                    self.held.pop_front();
                }
                self.held.push_back(frame);
            } else {
                self.send(&frame);
            }
        }
        while let Some(event) = self.node.poll_event() {
            log_event(&event);
            self.publish_now = true;
        }
        self.publish();
    }

    /// Sends one frame; a failure is logged when sending starts to fail, not per frame.
    fn send(&mut self, frame: &[u8]) {
        match self.socket.get_ref().send(frame) {
            Ok(()) if self.send_failing => {
                self.send_failing = false;
                tracing::info!(event = "nlb.send_recovered");
            }
            Ok(()) => {}
            Err(err) if !self.send_failing => {
                self.send_failing = true;
                tracing::warn!(event = "nlb.send_failed", error = %err,
                    "frames cannot be sent on the interface; logged once until they can");
            }
            Err(_) => {}
        }
    }

    /// Publishes the snapshot for control and metrics clients, if it is due. Not while
    /// heartbeats are held back: what `nlb query` shows is never ahead of what the peers
    /// have been told (except right after an operator's command, whose answer has
    /// already said the new state).
    fn publish(&mut self) {
        if !self.publish_now && self.last_snapshot.elapsed() < SNAPSHOT_INTERVAL {
            return;
        }
        if !self.held.is_empty() {
            self.publish_now = true;
            return;
        }
        self.publish_snapshot();
    }

    fn publish_snapshot(&mut self) {
        self.publish_now = false;
        self.last_snapshot = std::time::Instant::now();
        self.stats.dataplane_healthy = self.healthy;
        let snapshot = Snapshot {
            node: self.node.clone(),
            now: self.clock.now(),
            epoch_unix: self.clock.start_unix,
            connections: self.connections,
            daemon: self.stats.clone(),
        };
        self.snapshots.send_replace(Arc::new(snapshot));
    }

    /// Queues the batch that makes the kernel do what the node wants, unless one is
    /// running (the next goes when it is done) or a failed data plane waits for its retry.
    fn start_apply(&mut self) {
        if self.in_flight.is_some() || !self.apply_dirty {
            return;
        }
        if !self.healthy
            && self
                .retry_at
                .is_some_and(|at| tokio::time::Instant::now() < at)
        {
            return;
        }
        let batches = self.ruleset().batches();
        // Healthy: only the inet (and netdev) table changes. Failing: everything, since
        // whatever failed may have taken the tables with it.
        let full = !self.healthy || self.full_apply;
        let batches = if full { batches } else { batches[1..].to_vec() };
        self.full_apply = false;
        self.next_apply_id += 1;
        self.in_flight = Some((self.next_apply_id, self.rules.clone(), full));
        self.apply_dirty = false;
        self.kernel.submit(Job::Apply {
            id: self.next_apply_id,
            batches,
        });
    }

    /// A failed apply or lease refresh: fail closed, retry, report.
    fn fail_closed(&mut self, what: &str, error: &str) {
        tracing::error!(event = "nlb.dataplane_failed", what, error = %error,
            "failing closed: this host announces nothing owned and stops refreshing its lease; \
             retrying every {RETRY_INTERVAL:?}; check `nft list ruleset` and the error above");
        // The first retry at once (an `nft flush ruleset` left the kernel wide open),
        // then every RETRY_INTERVAL.
        let wait = if self.healthy {
            Duration::ZERO
        } else {
            RETRY_INTERVAL
        };
        self.retry_at = Some(tokio::time::Instant::now() + wait);
        self.apply_dirty = true;
        if self.healthy {
            self.healthy = false;
            let now = self.clock.now();
            self.node.handle_dataplane(now, false);
        }
        self.publish_now = true;
    }

    /// What the kernel thread finished.
    fn handle_done(&mut self, done: Done) {
        match done {
            Done::Applied { id, result, at } => {
                let Some((sent_id, rules, full)) = self.in_flight.take() else {
                    return;
                };
                debug_assert_eq!(id, sent_id);
                match result {
                    Ok(()) if !self.healthy && !full => {
                        // Queued before the failure: the whole ruleset still has to go in.
                        self.applied = rules;
                        self.apply_dirty = true;
                    }
                    Ok(()) => {
                        self.applied = rules;
                        if !self.healthy {
                            // The whole ruleset went in, the lease set full.
                            self.lease_until = at + self.lease.length;
                            self.healthy = true;
                            self.retry_at = None;
                            tracing::info!(event = "nlb.dataplane_restored");
                            let now = self.clock.now();
                            self.node.handle_dataplane(now, true);
                        }
                    }
                    Err(err) => {
                        self.stats.nft_failures += 1;
                        self.fail_closed("nft batch", &err);
                    }
                }
            }
            Done::Lease { result, at } => {
                self.lease_in_flight = false;
                match result {
                    Ok(()) => self.lease_until = self.lease_until.max(at + self.lease.length),
                    Err(err) => {
                        self.stats.lease_failures += 1;
                        self.fail_closed("lease refresh", &err);
                    }
                }
            }
            Done::VipAdded { vip, result } => match result {
                Ok(()) => {
                    self.stats.vips_restored += 1;
                    self.publish_now = true;
                    tracing::warn!(event = "nlb.vip_restored", vip = %vip,
                        "a VIP was removed from the interface by hand; it is back");
                }
                Err(err) => tracing::error!(event = "nlb.vip_restore_failed", vip = %vip,
                    error = %err, "cannot put the VIP back; check `ip addr` on the interface"),
            },
            Done::Tables { missing } => {
                self.checking_tables = false;
                if !missing.is_empty() {
                    self.stats.tables_restored += 1;
                    self.publish_now = true;
                    tracing::warn!(event = "nlb.tables_restored", missing = ?missing,
                        "nlb's nft tables were removed (nft flush ruleset?); putting them back");
                    self.full_apply = true;
                    self.apply_dirty = true;
                }
            }
            Done::Connections(count) => {
                self.counting = false;
                self.connections = count;
                let now = self.clock.now();
                self.node.handle_connections(now, count);
            }
        }
    }

    /// Reads up to `limit` queued frames into the node; true if the limit was hit.
    fn read_frames(&mut self, limit: usize) -> std::io::Result<bool> {
        for _ in 0..limit {
            match self.socket.get_ref().try_recv(&mut self.buf) {
                Ok(len) => {
                    let now = self.clock.now();
                    self.node.handle_frame(now, &self.buf[..len]);
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(true)
    }

    /// The node's timers, after the frames that queued meanwhile.
    fn timeout(&mut self) {
        if let Err(err) = self.read_frames(FRAMES_BEFORE_TIMEOUT) {
            tracing::warn!(event = "nlb.recv_failed", error = %err);
        }
        let now = self.clock.now();
        self.node.handle_timeout(now);
    }

    /// Refreshes the lease, for what the node owns once it has run its timeouts.
    fn refresh_lease(&mut self) {
        if !self.healthy || self.lease_in_flight {
            return;
        }
        self.timeout();
        self.flush();
        if !self.healthy {
            return;
        }
        self.lease_in_flight = true;
        self.kernel.submit(Job::Lease {
            command: self.ruleset().lease_refresh(),
        });
    }

    /// Checks, off the loop, that nlb's tables are all there.
    fn check_tables(&mut self) {
        if self.checking_tables {
            return;
        }
        self.checking_tables = true;
        let table = self.ruleset().table();
        let mut tables = vec![format!("arp {table}"), format!("inet {table}")];
        if self.config.cluster.mode == ClusterMode::Unicast {
            tables.push(format!("netdev {table}"));
        }
        self.kernel.submit(Job::CheckTables { tables });
    }

    /// Something happened to the interface. `Err` ends the daemon.
    fn link_event(&mut self, event: LinkEvent) -> Result<(), CliError> {
        let interface = self.config.cluster.interface.clone();
        match event {
            LinkEvent::Deleted => {
                tracing::error!(event = "nlb.interface_deleted", interface = %interface);
                return Err(CliError::failed(format!(
                    "the interface {interface} was deleted; nlb exits so that its service \
                     manager restarts it (systemd: Restart=on-failure) once {interface} is back"
                )));
            }
            LinkEvent::State { up, carrier } => {
                if up && carrier {
                    tracing::info!(event = "nlb.link_up", interface = %interface);
                } else {
                    tracing::warn!(event = "nlb.link_down", interface = %interface, up, carrier,
                        "no frames pass; peers will see this host leave, and it will rejoin \
                         when the link is back");
                }
            }
            LinkEvent::Mac(mac) if mac != self.mac => {
                tracing::warn!(event = "nlb.mac_changed", interface = %interface,
                    from = %self.mac, to = %mac, "rejoining the cluster with the new MAC");
                let now = self.clock.now();
                let key = cluster_key(&self.config)?;
                self.mac = mac;
                let stored = self.stored_incarnation();
                self.node = self
                    .node
                    .successor(now, self.config.clone(), mac, key, stored);
                self.publish_now = true;
            }
            LinkEvent::Mac(_) => {}
            LinkEvent::AddressRemoved(ip) if self.config.cluster.vips.contains(&ip) => {
                self.kernel.submit(Job::AddVip { interface, vip: ip });
            }
            LinkEvent::AddressRemoved(_) => {}
        }
        Ok(())
    }

    fn count_connections(&mut self) {
        if !self.counting {
            self.counting = true;
            self.kernel.submit(Job::CountConnections {
                vips: self.config.cluster.vips.clone(),
            });
        }
    }

    /// The stored incarnation counter's next value, for a node started over (reload, new
    /// MAC; [`Node::successor`] keeps it above the current one); `None`, and the reason in
    /// the log, if the counter cannot be written.
    fn stored_incarnation(&self) -> Option<u32> {
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let id = cluster_id(&self.config.cluster.vips);
        match nlb_linux::incarnation::next(
            &self.run_dir,
            &self.config.cluster.interface,
            id,
            now_unix,
        ) {
            Ok(next) => Some(next),
            Err(err) => {
                tracing::error!(event = "nlb.incarnation_failed", error = %err);
                None
            }
        }
    }

    /// SIGHUP: re-reads the configuration, without dropping a connection. What applies
    /// in place, what makes the node rejoin and what is refused is the core's policy
    /// ([`Node::reload`]); this reads the file and the key, advances the incarnation
    /// counter and builds the successor when told to.
    fn reload(&mut self, path: &Path) {
        let config = match load_config(path) {
            Ok(config) => config,
            Err(err) => {
                tracing::error!(event = "nlb.reload_failed", error = %err.message());
                return;
            }
        };
        let now = self.clock.now();
        match self.node.reload(now, config) {
            Ok(ReloadOutcome::InPlace) => {
                self.config = self.node.config().clone();
                tracing::info!(event = "nlb.reloaded", file = %path.display(), reconverge = false);
            }
            Ok(ReloadOutcome::Rejoin(rejoin)) => {
                let key = match cluster_key(&rejoin.config) {
                    Ok(key) => key,
                    Err(err) => {
                        tracing::error!(event = "nlb.reload_failed", error = %err.message());
                        return;
                    }
                };
                let stored = self.stored_incarnation();
                let change = rejoin.to_string();
                self.node = self
                    .node
                    .successor(now, *rejoin.config, self.mac, key, stored);
                self.config = self.node.config().clone();
                let slots = self.config.rules.len() + 1;
                self.rules = vec![
                    RuleState {
                        owned: BucketBitmap::new(nlb_core::buckets::BUCKETS),
                        keep_established: true,
                    };
                    slots
                ];
                self.apply_dirty = true;
                tracing::info!(
                    event = "nlb.reloaded",
                    file = %path.display(),
                    reconverge = true,
                    change = %change
                );
            }
            Err(refused) => {
                tracing::error!(event = "nlb.reload_refused", reason = %refused);
                return;
            }
        }
        self.publish_now = true;
    }

    /// Answers one control request that goes through the node.
    fn answer(&mut self, request: Request) {
        let Request {
            line,
            connections,
            reply,
        } = request;
        if let Some(count) = connections {
            self.connections = count;
            let now = self.clock.now();
            self.node.handle_connections(now, count);
        }
        let answer = self.command(line.trim());
        self.flush();
        // A query after the answer must not show the state before the command.
        self.publish_snapshot();
        let _ = reply.send(answer);
    }

    fn command(&mut self, request: &str) -> String {
        let now = self.clock.now();
        if let Some(flow) = request.strip_prefix("filter ") {
            return crate::control::filter(&self.node, flow).to_string();
        }
        let result = |node: &Node, outcome: Result<HostState, nlb_core::node::CommandError>| {
            match outcome {
                Ok(state) => serde_json::json!({"ok": true, "state": state.to_string()}),
                Err(err) => serde_json::json!({
                    "ok": false, "error": err.to_string(), "state": node.state().to_string()
                }),
            }
            .to_string()
        };
        if let Some((verb, target)) = request.split_once(' ')
            && matches!(verb, "enable" | "disable" | "drain")
        {
            let selector = match crate::control::rule_selector(&self.config, target) {
                Ok(selector) => selector,
                Err(error) => return serde_json::json!({"ok": false, "error": error}).to_string(),
            };
            let command = match verb {
                "enable" => NodeCommand::EnableRule(selector),
                "disable" => NodeCommand::DisableRule(selector),
                _ => NodeCommand::DrainRule(selector),
            };
            let outcome = self.node.handle_command(now, command);
            return result(&self.node, outcome);
        }
        let command = match request {
            "query" => {
                let mut status =
                    Status::of(&self.node, now, self.clock.start_unix, self.connections);
                status.daemon = self.stats.clone();
                return serde_json::to_string(&status).unwrap_or_default();
            }
            "start" => NodeCommand::Start,
            "stop" => NodeCommand::Stop,
            "drainstop" => NodeCommand::DrainStop,
            "suspend" => NodeCommand::Suspend,
            "resume" => NodeCommand::Resume,
            other => {
                return serde_json::json!({"ok": false, "error": format!("unknown request '{other}'")})
                    .to_string();
            }
        };
        let outcome = self.node.handle_command(now, command);
        result(&self.node, outcome)
    }
}

/// Root only (0600), or root and `group` (0660).
fn restrict_socket(path: &Path, group: Option<&str>) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match group {
        None => 0o600,
        Some(name) => {
            let group = nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| {
                    CliError::bad_input(format!(
                        "host.control_group: there is no group named {name}; create it \
                         (groupadd {name}) or remove the key"
                    ))
                })?;
            nix::unistd::chown(path, None, Some(group.gid))
                .map_err(|e| fail("control socket")(format!("{}: {e}", path.display())))?;
            0o660
        }
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| fail("control socket")(format!("{}: {e}", path.display())))
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
    }
}

async fn daemon(args: &Args, config: Config, key: Option<HeartbeatKey>) -> Result<(), CliError> {
    let interface = config.cluster.interface.clone();
    let _lock = DaemonLock::acquire(&args.run_dir, &interface, cluster_id(&config.cluster.vips))
        .map_err(|err| CliError::failed(err.to_string()))?;
    let mac = interface_mac(&interface).map_err(|e| fail("interface")(e.to_string()))?;
    let ifindex = interface_index(&interface).map_err(|e| fail("interface")(e.to_string()))?;

    // The kernel must not answer ARP for a VIP before the VIP exists: tables first.
    let slots = config.rules.len() + 1;
    let rules = vec![
        RuleState {
            owned: BucketBitmap::new(nlb_core::buckets::BUCKETS),
            keep_established: true,
        };
        slots
    ];
    // The lease ends well inside the failure window, so a killed daemon's host stops
    // taking new connections before its peers take its buckets.
    let lease = Lease::from_config(&config);
    let ruleset = Ruleset {
        config: &config,
        rules: &rules,
        lease: lease.length,
    };
    // Leftovers of a daemon killed before table names carried the cluster.
    let _ = apply(&[ruleset.legacy_teardown()]);
    apply(&ruleset.batches()).map_err(|e| fail("nft")(e.to_string()))?;
    let lease_until = std::time::Instant::now() + lease.length;
    for &vip in &config.cluster.vips {
        add_vip(&interface, vip).map_err(|e| fail("adding the VIP")(e.to_string()))?;
    }

    let socket = PacketSocket::bind(&interface).map_err(|e| fail("raw socket")(e.to_string()))?;
    for &vip in &config.cluster.vips {
        socket
            .add_membership(cluster_mac(vip, config.cluster.mode))
            .map_err(|e| fail("receiving the cluster MAC")(e.to_string()))?;
    }
    let _groups = if config.cluster.mode == ClusterMode::Igmp {
        config
            .cluster
            .vips
            .iter()
            .map(|&vip| join_group(igmp_group(vip), ifindex))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail("joining the IGMP group")(e.to_string()))?
    } else {
        Vec::new()
    };
    let socket = socket
        .into_async()
        .map_err(|e| fail("raw socket")(e.to_string()))?;

    let control_path = args
        .socket
        .clone()
        .unwrap_or_else(|| config.host.control_socket.clone());
    if let Some(dir) = control_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // A socket someone answers on is another daemon's (in another network namespace,
    // or of another cluster, configured with the same path): never take it over.
    if std::os::unix::net::UnixStream::connect(&control_path).is_ok() {
        return Err(CliError::failed(format!(
            "another nlb daemon answers on the control socket {}: stop it first, or give \
             this one its own socket (host.control_socket in the configuration, or --socket)",
            control_path.display()
        )));
    }
    let _ = std::fs::remove_file(&control_path);
    let control = UnixListener::bind(&control_path)
        .map_err(|e| fail("control socket")(format!("{}: {e}", control_path.display())))?;
    restrict_socket(&control_path, config.host.control_group.as_deref())?;

    let clock = Clock::new();
    let incarnation = nlb_linux::incarnation::next(
        &args.run_dir,
        &interface,
        cluster_id(&config.cluster.vips),
        clock.start_unix as u64,
    )
    .map_err(|e| fail("incarnation")(e.to_string()))?;
    let node = Node::new(config.clone(), mac, incarnation, key, clock.now());
    tracing::info!(
        event = "nlb.started",
        interface = %interface,
        mac = %mac,
        host = config.host.id,
        mode = %config.cluster.mode,
        vips = ?config.cluster.vips,
        socket = %control_path.display()
    );
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    let kernel = Kernel::spawn(done_tx).map_err(|e| fail("kernel thread")(e.to_string()))?;
    let first = Snapshot {
        node: node.clone(),
        now: clock.now(),
        epoch_unix: clock.start_unix,
        connections: 0,
        daemon: DaemonStats::default(),
    };
    let (snapshots, snapshot_rx) = watch::channel(Arc::new(first));
    let mut daemon = Daemon {
        node,
        socket: Arc::new(socket),
        applied: rules.clone(),
        rules,
        in_flight: None,
        apply_dirty: false,
        next_apply_id: 0,
        held: VecDeque::new(),
        healthy: true,
        retry_at: None,
        lease_in_flight: false,
        lease_until,
        counting: false,
        send_failing: false,
        checking_tables: false,
        full_apply: false,
        config,
        lease,
        kernel,
        connections: 0,
        clock,
        mac,
        run_dir: args.run_dir.clone(),
        stats: DaemonStats::default(),
        snapshots,
        last_snapshot: std::time::Instant::now(),
        publish_now: true,
        buf: vec![0u8; 65536],
    };
    daemon.flush();

    let (link_tx, mut link_events) = tokio::sync::mpsc::unbounded_channel();
    watch_link(ifindex, mac, move |event| link_tx.send(event).is_ok())
        .map_err(|e| fail("watching the interface (netlink)")(e.to_string()))?;
    let (request_tx, mut requests) = tokio::sync::mpsc::channel::<Request>(64);
    let mut servers = tokio::task::JoinSet::new();
    servers.spawn(crate::control::serve(
        control,
        snapshot_rx.clone(),
        request_tx,
    ));
    if let Some(address) = daemon.config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| fail("metrics")(format!("{address}: {e}")))?;
        servers.spawn(crate::metrics::serve(
            listener,
            snapshot_rx,
            daemon.ruleset().table(),
        ));
    }
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
            }
        }
        daemon.flush();
    }

    notifier.notify("STOPPING=1");
    servers.abort_all();
    // Release everything in the kernel first, then tell the peers, then remove the VIPs
    // (the ARP table still keeps the kernel from answering for them), then the tables.
    daemon.kernel.finish();
    let now = daemon.clock.now();
    let _ = daemon.node.handle_command(now, NodeCommand::Stop);
    daemon.node.handle_timeout(now);
    while let Some(nlb_core::node::Action::SetRule {
        rule,
        owned,
        keep_established,
    }) = daemon.node.poll_action()
    {
        if let Some(slot) = daemon.rules.get_mut(rule) {
            *slot = RuleState {
                owned,
                keep_established,
            };
        }
    }
    if let Err(err) = apply(&daemon.ruleset().batches()[1..]) {
        tracing::error!(event = "nlb.nft_failed", error = %err);
    }
    while let Some(frame) = daemon.node.poll_transmit() {
        daemon.send(&frame);
    }
    for &vip in &daemon.config.cluster.vips {
        remove_vip(&interface, vip);
    }
    let _ = apply(&[daemon.ruleset().teardown()]);
    let _ = std::fs::remove_file(&control_path);
    tracing::info!(event = "nlb.stopped");
    exit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(buckets: &[u16]) -> RuleState {
        let mut owned = BucketBitmap::new(nlb_core::buckets::BUCKETS);
        for &bucket in buckets {
            owned.insert(bucket);
        }
        RuleState {
            owned,
            keep_established: true,
        }
    }

    #[test]
    fn a_release_is_a_bucket_the_kernel_has_and_the_node_gave_up() {
        assert!(!releases(&[rule(&[1, 2])], &[rule(&[1, 2, 3])]), "a claim");
        assert!(releases(&[rule(&[1, 2])], &[rule(&[1])]));
        assert!(releases(&[rule(&[]), rule(&[7])], &[rule(&[]), rule(&[])]));
        assert!(!releases(&[rule(&[])], &[rule(&[])]));
    }

    #[test]
    fn heartbeats_are_recognised_tagged_or_not() {
        let mut frame = vec![0u8; 64];
        frame[12..14].copy_from_slice(&[0x88, 0xb5]);
        assert!(is_heartbeat(&frame));
        frame[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!is_heartbeat(&frame), "ARP goes at once");
        frame[12..14].copy_from_slice(&[0x81, 0x00]);
        frame[16..18].copy_from_slice(&[0x88, 0xb5]);
        assert!(is_heartbeat(&frame));
        assert!(!is_heartbeat(&frame[..10]));
    }
}

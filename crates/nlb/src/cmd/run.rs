//! `nlb run --config FILE`: the daemon.
//!
//! A thin shell around [`Node`]: it feeds the node every frame from the cluster
//! interface and every timeout, sends what the node wants sent, turns the node's actions
//! into nft rulesets, and logs its events. It decides nothing itself.
//!
//! Start-up order matters: the ARP table goes in before the VIPs are added, so the kernel
//! never answers ARP for a VIP with its own MAC, not even for a moment. On SIGTERM or
//! SIGINT it tells its peers it stops (one heartbeat), then removes its tables and VIPs.

use crate::CliError;
use crate::cmd::load_config;
use crate::control::Status;
use nlb_core::config::{Config, InitialState};
use nlb_core::node::{Command as NodeCommand, Event, Node};
use nlb_core::time::Instant;
use nlb_linux::host::{
    DaemonLock, add_vip, interface_index, interface_mac, join_group, remove_vip,
};
use nlb_linux::nft::{NftSession, apply};
use nlb_linux::packet::{AsyncPacketSocket, PacketSocket};
use nlb_linux::ruleset::{RuleState, Ruleset};
use nlb_wire::addressing::{ClusterMode, cluster_id, cluster_mac, igmp_group};
use nlb_wire::heartbeat::{BucketBitmap, HeartbeatKey, HostState};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};

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

fn read_key(path: &Path) -> Result<HeartbeatKey, CliError> {
    crate::keyfile::read(path)
}

pub(crate) fn run(args: &Args) -> Result<(), CliError> {
    let config = load_config(&args.config)?;
    init_logging(args.log_format);
    if !nix::unistd::geteuid().is_root() {
        return Err(CliError::failed(
            "nlb run needs root (CAP_NET_ADMIN and CAP_NET_RAW) to program nftables and open a \
             raw socket: run it with sudo",
        ));
    }
    let key = config
        .cluster
        .key_file
        .as_deref()
        .map(read_key)
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| CliError::failed(format!("cannot start the runtime: {err}")))?;
    runtime.block_on(daemon(args, config, key))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NLB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

struct Daemon {
    node: Node,
    socket: AsyncPacketSocket,
    rules: Vec<RuleState>,
    config: Config,
    lease: Duration,
    lease_session: Option<NftSession>,
    connections: u32,
    clock: Clock,
    mac: nlb_wire::MacAddr,
    incarnation: u32,
}

impl Daemon {
    fn ruleset(&self) -> Ruleset<'_> {
        Ruleset {
            config: &self.config,
            rules: &self.rules,
            lease: self.lease,
        }
    }

    /// Sends, applies and logs whatever the node produced.
    fn flush(&mut self) {
        while let Some(frame) = self.node.poll_transmit() {
            if let Err(err) = self.socket.get_ref().send(&frame) {
                tracing::warn!(event = "nlb.send_failed", error = %err);
            }
        }
        let mut dirty = false;
        while let Some(action) = self.node.poll_action() {
            let nlb_core::node::Action::SetRule {
                rule,
                owned,
                keep_established,
            } = action;
            self.rules[rule] = RuleState {
                owned,
                keep_established,
            };
            dirty = true;
        }
        if dirty {
            let batches = self.ruleset().batches();
            if let Err(err) = apply(&batches[1..]) {
                tracing::error!(event = "nlb.nft_failed", error = %err);
            }
            tracing::info!(
                event = "nlb.ownership",
                owned = ?self.rules.iter().map(|r| r.owned.len()).collect::<Vec<_>>()
            );
        }
        while let Some(event) = self.node.poll_event() {
            log_event(&event);
        }
    }

    /// SIGHUP: re-reads the configuration, without dropping a connection.
    ///
    /// - This host's weights and priorities: applied in place; the cluster moves only the
    ///   buckets they move.
    /// - The rest of the cluster-wide part (rules, timers, the key): the node starts over
    ///   with the new file, in its current state, keeping the host's connections (conntrack
    ///   keeps accepting them) while it rejoins and the cluster reconverges. Until every
    ///   host has the new file, the hosts whose file differs from the majority's stay
    ///   misconfigured, and own nothing.
    /// - The interface, the VIPs and the mode: refused, logged; they need a restart.
    fn reload(&mut self, path: &Path) {
        let mut config = match load_config(path) {
            Ok(config) => config,
            Err(err) => {
                tracing::error!(event = "nlb.reload_failed", error = %err.message());
                return;
            }
        };
        let now = self.clock.now();
        let old = &self.config.cluster;
        let new = &config.cluster;
        if (&old.interface, &old.vips, old.mode) != (&new.interface, &new.vips, new.mode)
            || config.host.id != self.config.host.id
        {
            tracing::error!(
                event = "nlb.reload_refused",
                reason = "cluster.interface, cluster.vips, cluster.mode or host.id changed: \
                          restart the daemon (drainstop first to keep connections)"
            );
            return;
        }
        match self.node.reload(now, config.clone()) {
            Ok(()) => {
                self.config = config;
                tracing::info!(event = "nlb.reloaded", file = %path.display(), reconverge = false);
            }
            Err(reason) => {
                let key = match config.cluster.key_file.as_deref().map(read_key).transpose() {
                    Ok(key) => key,
                    Err(err) => {
                        tracing::error!(event = "nlb.reload_failed", error = %err.message());
                        return;
                    }
                };
                config.host.initial_state = match self.node.state() {
                    HostState::Stopped => InitialState::Stopped,
                    HostState::Suspended => InitialState::Suspended,
                    _ => InitialState::Started,
                };
                self.incarnation += 1;
                self.node = Node::new(config.clone(), self.mac, self.incarnation, key, now);
                let slots = config.rules.len() + 1;
                self.rules = vec![
                    RuleState {
                        owned: BucketBitmap::new(nlb_core::buckets::BUCKETS),
                        keep_established: true,
                    };
                    slots
                ];
                self.config = config;
                tracing::info!(
                    event = "nlb.reloaded",
                    file = %path.display(),
                    reconverge = true,
                    change = %reason
                );
            }
        }
    }

    /// Answers one HTTP request on the metrics port with the OpenMetrics text.
    async fn serve_metrics(&mut self, stream: tokio::net::TcpStream) {
        let (reader, mut writer) = stream.into_split();
        let mut request = String::new();
        let read = tokio::time::timeout(
            Duration::from_secs(2),
            BufReader::new(reader).read_line(&mut request),
        )
        .await;
        if !matches!(read, Ok(Ok(_))) {
            return;
        }
        let table = self.ruleset().table();
        let dataplane =
            nlb_linux::command::run("nft", &["-j", "list", "chain", "inet", &table, "pre"], None)
                .map(|json| nlb_linux::ruleset::parse_counters(&json))
                .unwrap_or_default();
        let body = crate::metrics::render(&self.node, self.connections, &dataplane);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            crate::metrics::CONTENT_TYPE,
            body.len()
        );
        let _ = writer.write_all(response.as_bytes()).await;
    }

    fn refresh_lease(&mut self) {
        let command = self.ruleset().lease_refresh();
        let sent = match self.lease_session.as_mut() {
            Some(session) => session.send(&command).is_ok(),
            None => false,
        };
        if !sent {
            // The session died: start another, and refresh through a one-off meanwhile.
            self.lease_session = NftSession::start().ok();
            if let Err(err) = apply(&[command]) {
                tracing::error!(event = "nlb.lease_failed", error = %err);
            }
        }
    }

    fn count_connections(&mut self) {
        let mut total = 0;
        for vip in &self.config.cluster.vips {
            let filter = format!("src {vip}");
            if let Ok(out) =
                nlb_linux::command::run("ss", &["-Htn", "state", "established", &filter], None)
            {
                total += out.lines().filter(|l| !l.trim().is_empty()).count() as u32;
            }
        }
        self.connections = total;
        let now = self.clock.now();
        let _ = self
            .node
            .handle_command(now, NodeCommand::SetConnections(total));
    }

    fn answer(&mut self, request: &str) -> String {
        let now = self.clock.now();
        if let Some(flow) = request.trim().strip_prefix("filter ") {
            return crate::control::filter(&self.node, flow).to_string();
        }
        let request = request.trim();
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
            let answer = match self.node.handle_command(now, command) {
                Ok(state) => serde_json::json!({"ok": true, "state": state.to_string()}),
                Err(err) => {
                    serde_json::json!({"ok": false, "error": err.to_string(), "state": self.node.state().to_string()})
                }
            };
            self.flush();
            return answer.to_string();
        }
        let command = match request {
            "query" => {
                let status = Status::of(&self.node, now, self.clock.start_unix, self.connections);
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
        if command == NodeCommand::DrainStop {
            self.count_connections();
        }
        let answer = match self.node.handle_command(now, command) {
            Ok(state) => serde_json::json!({"ok": true, "state": state.to_string()}),
            Err(err) => {
                serde_json::json!({"ok": false, "error": err.to_string(), "state": self.node.state().to_string()})
            }
        };
        self.flush();
        answer.to_string()
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
            tracing::info!(event = "nlb.heartbeat_dropped", reason = ?reason, latest_from = %from, count)
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
    let lease = nlb_core::lease::ownership_lease(&config);
    let ruleset = Ruleset {
        config: &config,
        rules: &rules,
        lease,
    };
    apply(&ruleset.batches()).map_err(|e| fail("nft")(e.to_string()))?;
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
    let mut daemon = Daemon {
        node,
        socket,
        rules,
        config,
        lease,
        lease_session: NftSession::start().ok(),
        connections: 0,
        clock,
        mac,
        incarnation,
    };
    daemon.flush();

    let metrics = match daemon.config.metrics_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|e| fail("metrics")(format!("{address}: {e}")))?,
        ),
        None => None,
    };
    let notifier = nlb_linux::systemd::Notifier::from_env();
    notifier.notify("READY=1");
    let mut watchdog = tokio::time::interval(
        nlb_linux::systemd::Notifier::watchdog_interval().unwrap_or(Duration::from_secs(3600)),
    );
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| fail("signals")(e.to_string()))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| fail("signals")(e.to_string()))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| fail("signals")(e.to_string()))?;
    let mut lease_tick =
        tokio::time::interval(nlb_core::lease::lease_refresh_period(&daemon.config));
    let mut drain_tick = tokio::time::interval(Duration::from_millis(500));
    let mut buf = vec![0u8; 65536];
    loop {
        let deadline = daemon.clock.deadline(daemon.node.poll_timeout());
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            readable = daemon.socket.readable() => {
                let mut guard = readable.map_err(|e| fail("raw socket")(e.to_string()))?;
                loop {
                    match daemon.socket.get_ref().try_recv(&mut buf) {
                        Ok(len) => {
                            let now = daemon.clock.now();
                            daemon.node.handle_frame(now, &buf[..len]);
                        }
                        Err(err) if err.kind() == ErrorKind::WouldBlock => {
                            guard.clear_ready();
                            break;
                        }
                        Err(err) => {
                            tracing::warn!(event = "nlb.recv_failed", error = %err);
                            break;
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let now = daemon.clock.now();
                daemon.node.handle_timeout(now);
            }
            _ = lease_tick.tick() => {
                // The node judges first: after a stall it releases everything, and the
                // lease must be refreshed with that, never with what it held before.
                let now = daemon.clock.now();
                daemon.node.handle_timeout(now);
                daemon.flush();
                daemon.refresh_lease();
            }
            _ = watchdog.tick() => notifier.notify("WATCHDOG=1"),
            accepted = async {
                match &metrics {
                    Some(listener) => listener.accept().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Ok((stream, _)) = accepted {
                    daemon.serve_metrics(stream).await;
                }
            }
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
            accepted = control.accept() => {
                if let Ok((stream, _)) = accepted {
                    let (reader, mut writer) = stream.into_split();
                    let mut line = String::new();
                    let read = tokio::time::timeout(
                        Duration::from_secs(2),
                        BufReader::new(reader).read_line(&mut line),
                    )
                    .await;
                    if matches!(read, Ok(Ok(_))) {
                        let mut answer = daemon.answer(&line);
                        answer.push('\n');
                        let _ = writer.write_all(answer.as_bytes()).await;
                    }
                }
            }
        }
        daemon.flush();
    }

    notifier.notify("STOPPING=1");
    // Tell the peers at once, then clean up.
    let now = daemon.clock.now();
    let _ = daemon.node.handle_command(now, NodeCommand::Stop);
    daemon.node.handle_timeout(now);
    daemon.flush();
    drop(daemon.lease_session.take());
    let _ = apply(&[Ruleset::teardown(&interface)]);
    for &vip in &daemon.config.cluster.vips {
        remove_vip(&interface, vip);
    }
    let _ = std::fs::remove_file(&control_path);
    tracing::info!(event = "nlb.stopped");
    Ok(())
}

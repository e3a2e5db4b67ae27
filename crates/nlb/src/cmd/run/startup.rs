//! Start-up and shutdown, in the order that keeps the kernel from answering ARP for a
//! VIP with the host's own MAC: the ARP table goes in before the VIPs are added, and on
//! the way out everything is released in the kernel first, then the peers are told, then
//! the VIPs go, then the tables.

use super::dataplane::unowned_rules;
use super::{Clock, Daemon, fail};
use crate::CliError;
use crate::control::{DaemonStats, Request, Snapshot};
use crate::kernel::{Done, Kernel};
use nlb_core::config::Config;
use nlb_core::lease::Lease;
use nlb_core::node::{Command as NodeCommand, Node};
use nlb_linux::host::{
    DaemonLock, add_vip, interface_index, interface_mac, join_group, remove_vip,
};
use nlb_linux::netlink::{LinkEvent, watch_link};
use nlb_linux::nft::apply;
use nlb_linux::packet::PacketSocket;
use nlb_linux::ruleset::{RuleState, Ruleset};
use nlb_wire::addressing::{ClusterMode, cluster_id, cluster_mac, igmp_group};
use nlb_wire::heartbeat::HeartbeatKey;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};

/// A started daemon and what its loop listens to.
pub(super) struct Running {
    pub(super) daemon: Daemon,
    /// Jobs the kernel thread finished.
    pub(super) done: mpsc::UnboundedReceiver<Done>,
    /// The interface's netlink events.
    pub(super) link_events: mpsc::UnboundedReceiver<LinkEvent>,
    /// Control requests that go through the node.
    pub(super) requests: mpsc::Receiver<Request>,
    /// The control and metrics servers.
    pub(super) servers: tokio::task::JoinSet<()>,
    /// Results of the health checks, from their own thread.
    pub(super) check_results: mpsc::Receiver<crate::checks::CheckResult>,
    pub(super) control_path: PathBuf,
    /// Held until the daemon exits: the lock that keeps a second daemon off the
    /// interface, and the IGMP memberships.
    pub(super) lock: DaemonLock,
    pub(super) groups: Vec<socket2::Socket>,
}

/// Takes the interface: tables, VIPs, the raw socket, the control socket, the node, the
/// kernel thread and the servers, in that order.
pub(super) async fn start(
    args: &super::Args,
    config: Config,
    key: Option<HeartbeatKey>,
    events: crate::events::EventLog,
) -> Result<Running, CliError> {
    let interface = config.cluster.interface.clone();
    let _lock = DaemonLock::acquire(&args.run_dir, &interface, cluster_id(&config.cluster.vips))
        .map_err(|err| CliError::failed(err.to_string()))?;
    let mac = interface_mac(&interface).map_err(|e| fail("interface")(e.to_string()))?;
    let ifindex = interface_index(&interface).map_err(|e| fail("interface")(e.to_string()))?;

    // The kernel must not answer ARP for a VIP before the VIP exists: tables first.
    let (rules, mut drains) = unowned_rules(config.rules.len() + 1);
    // The lease ends well inside the failure window, so a killed daemon's host stops
    // taking new connections before its peers take its buckets.
    let lease = Lease::from_config(&config);
    let local_ports = nlb_linux::ruleset::local_port_range();
    let ruleset = Ruleset {
        config: &config,
        rules: &rules,
        lease: lease.length,
        local_ports,
        drain_idle: std::time::Duration::from_millis(u64::from(config.host.drain_idle_ms)),
    };
    // Leftovers of a daemon killed before table names carried the cluster.
    let _ = apply(&[ruleset.legacy_teardown()]);
    apply(&ruleset.batches()).map_err(|e| fail("nft")(e.to_string()))?;
    let lease_until = std::time::Instant::now() + lease.length;
    drains.applied(&rules, std::time::Instant::now());
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
    let (done_tx, done) = tokio::sync::mpsc::unbounded_channel();
    let counter =
        Kernel::spawn(done_tx.clone()).map_err(|e| fail("counting thread")(e.to_string()))?;
    let kernel = Kernel::spawn(done_tx).map_err(|e| fail("kernel thread")(e.to_string()))?;
    let first = Snapshot {
        node: node.clone(),
        now: clock.now(),
        epoch_unix: clock.start_unix,
        connections: 0,
        daemon: DaemonStats::default(),
    };
    let (snapshots, snapshot_rx) = watch::channel(Arc::new(first));
    let (check_tx, check_results) = mpsc::channel(crate::checks::QUEUE);
    let mut daemon = Daemon {
        node,
        socket: Arc::new(socket),
        applied: rules.clone(),
        rules,
        drains,
        live_counting: false,
        drain_count_failing: false,
        connection_count_failing: false,
        tables_in_flight: false,
        local_ports,
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
        counter,
        connections: 0,
        clock,
        mac,
        run_dir: args.run_dir.clone(),
        stats: DaemonStats::default(),
        snapshots,
        last_snapshot: std::time::Instant::now(),
        publish_now: true,
        buf: vec![0u8; 65536],
        running_checks: Vec::new(),
        check_runner: None,
        check_generation: 0,
        check_tx,
    };
    daemon.flush();
    daemon.sync_checks();

    let (link_tx, link_events) = tokio::sync::mpsc::unbounded_channel();
    watch_link(ifindex, mac, move |event| link_tx.send(event).is_ok())
        .map_err(|e| fail("watching the interface (netlink)")(e.to_string()))?;
    let (request_tx, requests) = tokio::sync::mpsc::channel::<Request>(64);
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
            events,
        ));
    }
    Ok(Running {
        daemon,
        done,
        link_events,
        requests,
        servers,
        check_results,
        control_path,
        lock: _lock,
        groups: _groups,
    })
}

/// Releases everything in the kernel first, then tells the peers, then removes the VIPs
/// (the ARP table still keeps the kernel from answering for them), then the tables.
pub(super) fn shut_down(
    daemon: &mut Daemon,
    servers: &mut tokio::task::JoinSet<()>,
    control_path: &Path,
) {
    let interface = daemon.config.cluster.interface.clone();
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
            // On the way out nothing drains: the host stops, and then its tables go.
            *slot = RuleState {
                owned,
                ..RuleState::empty(keep_established)
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
    let _ = std::fs::remove_file(control_path);
    tracing::info!(event = "nlb.stopped");
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

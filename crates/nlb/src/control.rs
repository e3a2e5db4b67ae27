//! The control socket: one request line in, one JSON line out.
//!
//! Requests are a verb: `query`, `start`, `stop`, `drainstop`, `suspend`, `resume`, or
//! `filter SRC SRC_PORT VIP PORT tcp|udp`. Every answer is a JSON object with `ok`; a
//! query answers with the [`Status`], a command with the resulting `state` or an
//! `error`, a filter with the rule, bucket and owners of that flow.
//!
//! [`serve`] runs the socket in its own task, one task per client, so no client can hold
//! up the protocol loop: a request is one line of at most [`MAX_REQUEST`] bytes that
//! must arrive within [`CLIENT_DEADLINE`], and the answer must be taken within as long.
//! `query` and `filter` are answered from the [`Snapshot`] the loop publishes; commands
//! go to the loop over a channel and come back on a oneshot.

use nlb_core::node::Node;
use nlb_core::time::Instant;
use nlb_wire::addressing::cluster_mac;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

/// The longest request line, newline included.
pub(crate) const MAX_REQUEST: u64 = 4096;
/// How long a client may take to send its request, and to take its answer.
pub(crate) const CLIENT_DEADLINE: Duration = Duration::from_secs(2);
/// How many clients are served at once; more are turned away.
const MAX_CLIENTS: usize = 128;
/// How long a command may wait for the loop.
const LOOP_DEADLINE: Duration = Duration::from_secs(5);

/// What the protocol loop publishes after it handled something: a copy of the node and
/// the daemon's own counters. Readers never touch the loop.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) node: Node,
    /// When the node's copy was taken.
    pub(crate) now: Instant,
    /// Unix time of the node's `Instant::ZERO`.
    pub(crate) epoch_unix: f64,
    pub(crate) connections: u32,
    pub(crate) daemon: DaemonStats,
}

/// The daemon's own health and counters, beside the node's. The default is healthy
/// (what an older daemon, which does not send these, was).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct DaemonStats {
    /// Whether the last nft apply and lease refresh succeeded (false: failing closed).
    pub(crate) dataplane_healthy: bool,
    /// nft batches that failed.
    pub(crate) nft_failures: u64,
    /// Lease refreshes that failed.
    pub(crate) lease_failures: u64,
    /// Heartbeats held back until a release was applied.
    pub(crate) heartbeats_held: u64,
    /// Wakeups that hit the per-wakeup frame cap.
    pub(crate) frame_cap_hits: u64,
    /// nft tables found missing and restored.
    pub(crate) tables_restored: u64,
    /// VIPs found removed and re-added.
    pub(crate) vips_restored: u64,
    /// Health-check results dropped because the loop was busy (by runners since replaced).
    #[serde(default)]
    pub(crate) check_results_dropped: u64,
    /// Counts of the connections in draining buckets that failed (`ss`, `nft list
    /// set` or `conntrack -L`).
    #[serde(default)]
    pub(crate) drain_count_failures: u64,
    /// Counts of the VIPs' established connections (`ss`) that failed.
    #[serde(default)]
    pub(crate) connection_count_failures: u64,
    /// Counts of the connections in draining buckets that completed.
    #[serde(default)]
    pub(crate) drain_counts: u64,
    /// Buckets draining now, per rule slot (the fallback rule last).
    #[serde(default)]
    pub(crate) draining_buckets: Vec<u64>,
    /// What the last count of draining buckets' connections read: `ss, recent,
    /// conntrack`, or `ss, recent` without the `conntrack` tool; empty before one.
    #[serde(default)]
    pub(crate) drain_sources: String,
}

impl Default for DaemonStats {
    fn default() -> DaemonStats {
        DaemonStats {
            dataplane_healthy: true,
            nft_failures: 0,
            lease_failures: 0,
            heartbeats_held: 0,
            frame_cap_hits: 0,
            tables_restored: 0,
            vips_restored: 0,
            check_results_dropped: 0,
            drain_count_failures: 0,
            connection_count_failures: 0,
            drain_counts: 0,
            draining_buckets: Vec::new(),
            drain_sources: String::new(),
        }
    }
}

/// A command for the protocol loop, with where to send its answer.
#[derive(Debug)]
pub(crate) struct Request {
    /// The request line, trimmed.
    pub(crate) line: String,
    /// For `drainstop`: the connections counted before it (off the loop).
    pub(crate) connections: Option<u32>,
    pub(crate) reply: oneshot::Sender<String>,
}

/// A member as `nlb query` shows it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct MemberStatus {
    pub(crate) id: u8,
    pub(crate) state: String,
    pub(crate) mac: String,
    pub(crate) buckets: usize,
    pub(crate) last_heard_ms: f64,
    pub(crate) config_matches: bool,
    /// Rule slots for which the member says a health check is down.
    #[serde(default)]
    pub(crate) check_down_rules: Vec<usize>,
}

/// A health check as `nlb query` shows it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct CheckStatus {
    pub(crate) name: String,
    /// `tcp`, `http` or `exec`.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// What it probes, as the file says it.
    pub(crate) target: String,
    /// `up` or `down`.
    pub(crate) health: String,
    /// Whether the last run passed; `None` before the first.
    pub(crate) last_passed: Option<bool>,
    pub(crate) last_error: Option<String>,
    pub(crate) runs: u64,
    pub(crate) transitions: u64,
    /// Time since the verdict last changed, if it did.
    pub(crate) changed_ms_ago: Option<f64>,
    pub(crate) fall: u8,
    pub(crate) rise: u8,
    /// `drain` or `stop`.
    pub(crate) action: String,
    /// Rule slots it guards; `None` for all.
    pub(crate) rules: Option<Vec<usize>>,
    /// Whether it is down but ignored for every rule it guards, because on each every
    /// host that would serve it has a check down for it (the panic rule).
    pub(crate) panic: bool,
    /// The guarded rule slots where it is down but ignored.
    #[serde(default)]
    pub(crate) panic_rules: Vec<usize>,
}

impl CheckStatus {
    /// Every check of `node`, at `now`.
    pub(crate) fn of(node: &Node, now: Instant) -> Vec<CheckStatus> {
        use nlb_core::check::{CheckKind, GuardedRules, Health};
        let configured = node.config().rules.len();
        node.checks()
            .map(|(spec, tracker)| {
                let (kind, target) = match &spec.kind {
                    CheckKind::Tcp { target } => ("tcp", target.to_string()),
                    CheckKind::Http { host, path, .. } => ("http", format!("http://{host}{path}")),
                    // The program only: arguments often carry secrets (`-pPASSWORD`), and
                    // this reaches the status page (`nlb params` shows the whole line).
                    CheckKind::Exec { argv } => (
                        "exec",
                        match argv.len() {
                            0 | 1 => argv.join(" "),
                            _ => format!("{} …", argv[0]),
                        },
                    ),
                };
                let rules = match &spec.rules {
                    GuardedRules::All => None,
                    GuardedRules::Some(slots) => Some(slots.clone()),
                };
                // Ignored only where every guarded rule is in panic; a rule that is not
                // still keeps this host out.
                let guarded: Vec<usize> = (0..configured)
                    .filter(|&slot| spec.rules.guards(slot))
                    .collect();
                let panic_rules: Vec<usize> = guarded
                    .iter()
                    .copied()
                    .filter(|&slot| node.check_panic(slot))
                    .collect();
                let panic = tracker.health == Health::Down
                    && !guarded.is_empty()
                    && panic_rules.len() == guarded.len();
                CheckStatus {
                    name: spec.name.clone(),
                    kind: kind.to_owned(),
                    target,
                    health: match tracker.health {
                        Health::Up => "up",
                        Health::Down => "down",
                    }
                    .to_owned(),
                    last_passed: tracker.last_passed,
                    last_error: tracker.last_error.clone(),
                    runs: tracker.runs,
                    transitions: tracker.transitions,
                    changed_ms_ago: tracker
                        .changed_at
                        .map(|at| now.saturating_since(at).as_secs_f64() * 1e3),
                    fall: spec.fall,
                    rise: spec.rise,
                    action: format!("{:?}", spec.action).to_lowercase(),
                    rules,
                    panic,
                    panic_rules: if tracker.health == Health::Down {
                        panic_rules
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect()
    }
}

/// A conflict as `nlb query` shows it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct ConflictStatus {
    pub(crate) ip: Ipv4Addr,
    pub(crate) mac: String,
    /// Unix time in seconds.
    pub(crate) at: f64,
}

/// The answer to `query`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Status {
    pub(crate) ok: bool,
    pub(crate) host_id: u8,
    pub(crate) state: String,
    pub(crate) mode: String,
    pub(crate) cluster_mac: String,
    pub(crate) vips: Vec<Ipv4Addr>,
    pub(crate) view_epoch: u32,
    pub(crate) view_members: Vec<u8>,
    pub(crate) members: Vec<MemberStatus>,
    /// Buckets this host accepts new connections for, per rule slot (the fallback rule last).
    pub(crate) owned_buckets: Vec<usize>,
    /// The same buckets as ranges, per rule: `0-85, 100`.
    pub(crate) owned_ranges: Vec<String>,
    pub(crate) connections: u32,
    pub(crate) conflicts: Vec<ConflictStatus>,
    /// Recent RFC 5227 probes for a VIP from outside the cluster.
    pub(crate) probe_warnings: Vec<ConflictStatus>,
    pub(crate) misconfigured: Option<String>,
    pub(crate) stats: serde_json::Value,
    /// The daemon's data plane: healthy, or failing closed, and its counters.
    #[serde(default)]
    pub(crate) daemon: DaemonStats,
    /// This host's health checks.
    #[serde(default)]
    pub(crate) checks: Vec<CheckStatus>,
}

fn conflict(info: &nlb_core::node::ConflictInfo, epoch_unix: f64) -> ConflictStatus {
    ConflictStatus {
        ip: info.ip,
        mac: info.mac.to_string(),
        at: epoch_unix + info.at_us as f64 / 1e6,
    }
}

impl Status {
    /// The status of `node` at `now`; `epoch_unix` is the Unix time of `Instant::ZERO`.
    pub(crate) fn of(node: &Node, now: Instant, epoch_unix: f64, connections: u32) -> Status {
        let config = node.config();
        let (view_epoch, view_members) = node.view();
        Status {
            ok: true,
            host_id: node.id(),
            state: node.state().to_string(),
            mode: config.cluster.mode.to_string(),
            cluster_mac: cluster_mac(config.cluster.vips[0], config.cluster.mode).to_string(),
            vips: config.cluster.vips.clone(),
            view_epoch,
            view_members: view_members.iter().collect(),
            members: node
                .members(now)
                .into_iter()
                .map(|m| MemberStatus {
                    id: m.id,
                    state: m.state.to_string(),
                    mac: m.mac.to_string(),
                    buckets: m.buckets,
                    last_heard_ms: m.last_heard_us as f64 / 1000.0,
                    config_matches: m.config_matches,
                    check_down_rules: m.check_down_rules,
                })
                .collect(),
            owned_buckets: node.owned().iter().map(|b| b.len()).collect(),
            owned_ranges: node.owned().iter().map(|b| b.ranges_text()).collect(),
            connections,
            conflicts: node
                .recent_conflicts()
                .map(|c| conflict(c, epoch_unix))
                .collect(),
            probe_warnings: node
                .recent_probes()
                .map(|c| conflict(c, epoch_unix))
                .collect(),
            misconfigured: node.misconfig().map(|m| m.to_string()),
            stats: serde_json::to_value(node.stats()).unwrap_or_default(),
            daemon: DaemonStats::default(),
            checks: CheckStatus::of(node, now),
        }
    }

    /// The status in a snapshot.
    pub(crate) fn of_snapshot(snapshot: &Snapshot) -> Status {
        let mut status = Status::of(
            &snapshot.node,
            snapshot.now,
            snapshot.epoch_unix,
            snapshot.connections,
        );
        status.daemon = snapshot.daemon.clone();
        status
    }
}

/// Serves the control socket until the daemon exits.
pub(crate) async fn serve(
    listener: UnixListener,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    requests: mpsc::Sender<Request>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CLIENTS));
    // Turned-away clients are logged at most once per 10 s, so a flood cannot fill the log.
    let mut last_warned: Option<std::time::Instant> = None;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(event = "nlb.control_accept_failed", error = %err);
                // Out of descriptors, typically: give the clients time to go.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if last_warned.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                last_warned = Some(std::time::Instant::now());
                tracing::warn!(
                    event = "nlb.control_busy",
                    clients = MAX_CLIENTS,
                    "too many control clients at once; new ones are turned away"
                );
            }
            continue;
        };
        let snapshots = snapshots.clone();
        let requests = requests.clone();
        tokio::spawn(async move {
            let _permit = permit;
            client(stream, snapshots, requests).await;
        });
    }
}

async fn client(
    stream: tokio::net::UnixStream,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    requests: mpsc::Sender<Request>,
) {
    let (reader, mut writer) = stream.into_split();
    let mut line = String::new();
    let read = tokio::time::timeout(
        CLIENT_DEADLINE,
        BufReader::new(reader.take(MAX_REQUEST)).read_line(&mut line),
    )
    .await;
    let answer = match read {
        Ok(Ok(0)) | Err(_) => return,
        Ok(Err(err)) => {
            serde_json::json!({"ok": false, "error": format!("bad request: {err}")}).to_string()
        }
        Ok(Ok(_)) if !line.ends_with('\n') => serde_json::json!({
            "ok": false,
            "error": format!("the request is longer than {MAX_REQUEST} bytes or has no newline")
        })
        .to_string(),
        Ok(Ok(_)) => answer(line.trim(), &snapshots, &requests).await,
    };
    let _ = tokio::time::timeout(
        CLIENT_DEADLINE,
        writer.write_all(format!("{answer}\n").as_bytes()),
    )
    .await;
}

async fn answer(
    line: &str,
    snapshots: &watch::Receiver<Arc<Snapshot>>,
    requests: &mpsc::Sender<Request>,
) -> String {
    let snapshot = snapshots.borrow().clone();
    if line == "query" {
        return serde_json::to_string(&Status::of_snapshot(&snapshot)).unwrap_or_default();
    }
    if let Some(flow) = line.strip_prefix("filter ") {
        return filter(&snapshot.node, flow).to_string();
    }
    let connections = if line == "drainstop" {
        let vips = snapshot.node.config().cluster.vips.clone();
        let counted =
            tokio::task::spawn_blocking(move || crate::kernel::count_connections(&vips)).await;
        match counted {
            Ok(Ok(count)) => Some(count),
            // A drainstop that took an unknown count for 0 would stop the host at once and
            // cut every connection.
            Ok(Err(error)) => {
                return serde_json::json!({"ok": false, "error": format!(
                    "cannot count the VIPs' connections ({error}), so a drainstop could not \
                     tell when they end; nothing changed. Fix ss (iproute2), or use `nlb stop` \
                     to end the connections at once")})
                .to_string();
            }
            Err(_) => None,
        }
    } else {
        None
    };
    let (reply, answer) = oneshot::channel();
    let request = Request {
        line: line.to_owned(),
        connections,
        reply,
    };
    if requests.try_send(request).is_err() {
        return serde_json::json!({"ok": false, "error": "the daemon is busy with other commands; try again"})
            .to_string();
    }
    match tokio::time::timeout(LOOP_DEADLINE, answer).await {
        Ok(Ok(answer)) => answer,
        _ => serde_json::json!({
            "ok": false,
            "error": format!("the daemon did not answer within {LOOP_DEADLINE:?}; see its log")
        })
        .to_string(),
    }
}

/// Which host handles a flow now, and why: the answer to `filter`.
pub(crate) fn filter(node: &Node, request: &str) -> serde_json::Value {
    use nlb_core::config::Protocol;
    use nlb_core::filter::{Flow, RuleRef, cluster_seed, decide};
    let parts: Vec<&str> = request.split_whitespace().collect();
    let parsed = (|| {
        let [src, src_port, dst, dst_port, protocol] = parts.as_slice() else {
            return None;
        };
        let protocol = match *protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return None,
        };
        Some(Flow {
            src: src.parse().ok()?,
            src_port: src_port.parse().ok()?,
            dst: dst.parse().ok()?,
            dst_port: dst_port.parse().ok()?,
            protocol,
        })
    })();
    let Some(flow) = parsed else {
        return serde_json::json!({"ok": false, "error": "expected: filter SRC SRC_PORT VIP PORT tcp|udp"});
    };
    let config = node.config();
    let decision = decide(config, node.owned(), cluster_seed(config), &flow);
    let rule = match decision.rule {
        RuleRef::Configured(index) => {
            let r = decision.rule.rule(config);
            format!(
                "rule {} (ports {}-{}, {:?}, {:?})",
                index + 1,
                r.ports.start(),
                r.ports.end(),
                r.protocol,
                r.mode
            )
            .to_lowercase()
        }
        RuleRef::Fallback => {
            "the fallback rule (traffic no rule covers goes to the lowest live host id)".to_owned()
        }
    };
    let affinity = format!("{:?}", decision.affinity).to_lowercase();
    let owners = decision
        .bucket
        .map(|bucket| node.owners_of(decision.slot, bucket))
        .unwrap_or_default();
    serde_json::json!({
        "ok": true,
        "rule": rule,
        "affinity": affinity,
        "bucket": decision.bucket,
        "owners": owners,
        "accepted_here": decision.accept,
        "host_id": node.id(),
    })
}

/// The rules a `VIP:PORT` or `all` names: the configured rule that covers that VIP and
/// port (over TCP, else UDP), or every rule.
pub(crate) fn rule_selector(
    config: &nlb_core::config::Config,
    target: &str,
) -> Result<nlb_core::node::RuleSelector, String> {
    use nlb_core::node::RuleSelector;
    Ok(config
        .rule_named(target)?
        .map_or(RuleSelector::All, RuleSelector::Index))
}

//! OpenMetrics for one host, built from the snapshot the protocol loop publishes and the
//! data plane's nft counters, served over HTTP/1.1 with hyper.
//!
//! Every client connection is its own task: the request head must arrive within
//! [`crate::control::CLIENT_DEADLINE`] and fit in 8 KiB, the whole exchange must end
//! within [`CONNECTION_DEADLINE`], and at most [`MAX_CLIENTS`] are served at once. The
//! nft counters are read off the loop, on a blocking thread, at most once a second.

use crate::control::{DaemonStats, Snapshot};
use http_body_util::Full;
use hyper::body::Bytes;
use nlb_core::node::Node;
use nlb_wire::heartbeat::HostState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore, watch};

/// How long one client connection may last.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// How many clients are served at once; more are turned away.
const MAX_CLIENTS: usize = 64;
/// How old the nft counters may be.
const COUNTERS_MAX_AGE: Duration = Duration::from_secs(1);

type Counters = Arc<Mutex<Option<(std::time::Instant, Arc<Vec<(String, u64)>>)>>>;

/// Serves the metrics port until the daemon exits. `table` is the nft table whose
/// counters are read.
pub(crate) async fn serve(
    listener: TcpListener,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    table: String,
    events: crate::events::EventLog,
) {
    let permits = Arc::new(Semaphore::new(MAX_CLIENTS));
    let counters: Counters = Arc::default();
    let table = Arc::new(table);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(event = "nlb.metrics_accept_failed", error = %err);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let (snapshots, counters, table, events) = (
            snapshots.clone(),
            counters.clone(),
            table.clone(),
            events.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request| {
                let (snapshots, counters, table, events) = (
                    snapshots.clone(),
                    counters.clone(),
                    table.clone(),
                    events.clone(),
                );
                async move {
                    Ok::<_, std::convert::Infallible>(
                        respond(request, &snapshots, &counters, &table, &events).await,
                    )
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(crate::control::CLIENT_DEADLINE)
                .max_buf_size(8192)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
        });
    }
}

async fn respond(
    request: hyper::Request<hyper::body::Incoming>,
    snapshots: &watch::Receiver<Arc<Snapshot>>,
    counters: &Counters,
    table: &str,
    events: &crate::events::EventLog,
) -> hyper::Response<Full<Bytes>> {
    let reply = |status: u16, content_type: &str, body: String| {
        hyper::Response::builder()
            .status(status)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .header(hyper::header::CACHE_CONTROL, "no-store")
            .header("x-content-type-options", "nosniff")
            .header(
                "content-security-policy",
                crate::status::CONTENT_SECURITY_POLICY,
            )
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    if !matches!(*request.method(), hyper::Method::GET | hyper::Method::HEAD) {
        return reply(
            405,
            "text/plain",
            "only GET is served here: GET /metrics, / (the status page), /status.json\n".into(),
        );
    }
    let path = request.uri().path();
    let page = crate::status::asset(path).is_some() || path == "/status.json";
    if page && !crate::status::host_allowed(request.headers().get(hyper::header::HOST)) {
        return reply(
            421,
            "text/plain",
            "the status page answers only to an IP address or localhost as Host\n".into(),
        );
    }
    if let Some((content_type, body)) = crate::status::asset(path) {
        return reply(200, content_type, body.to_owned());
    }
    if path == "/status.json" {
        let snapshot = snapshots.borrow().clone();
        let body = crate::status::status_json(&snapshot, &events.recent());
        return reply(200, "application/json", body.to_string());
    }
    if path != "/metrics" {
        return reply(
            404,
            "text/plain",
            format!("nothing at {path}: GET /metrics, / (the status page), /status.json\n"),
        );
    }
    let dataplane = read_counters(counters, table).await;
    let snapshot = snapshots.borrow().clone();
    let body = render(
        &snapshot.node,
        snapshot.connections,
        &dataplane,
        &snapshot.daemon,
    );
    reply(200, CONTENT_TYPE, body)
}

/// The data plane's counters, read at most once per [`COUNTERS_MAX_AGE`] on a blocking
/// thread; concurrent scrapes share one read.
async fn read_counters(counters: &Counters, table: &str) -> Arc<Vec<(String, u64)>> {
    let mut cached = counters.lock().await;
    if let Some((at, values)) = cached.as_ref()
        && at.elapsed() < COUNTERS_MAX_AGE
    {
        return values.clone();
    }
    let table = table.to_owned();
    // Both stages: the netdev table counts the packets dropped before conntrack
    // (`rule1 drop`, `draining syn`), the inet table the rest.
    let read = tokio::task::spawn_blocking(move || {
        ["netdev", "inet"]
            .iter()
            .flat_map(|family| {
                nlb_linux::command::run("nft", &["-j", "list", "table", family, &table], None)
                    .map(|json| nlb_linux::ruleset::parse_counters(&json))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
    });
    let values = Arc::new(
        tokio::time::timeout(crate::control::CLIENT_DEADLINE, read)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
    );
    *cached = Some((std::time::Instant::now(), values.clone()));
    values
}

/// The content type of the answer.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabel {
    check: String,
}

/// One family per measure of the health checks, labelled by check name (names are
/// validated to fit a label as they are).
fn register_checks(registry: &mut Registry, node: &Node) {
    let up = Family::<CheckLabel, Gauge>::default();
    let runs = Family::<CheckLabel, Counter>::default();
    let failures = Family::<CheckLabel, Gauge>::default();
    let transitions = Family::<CheckLabel, Counter>::default();
    for (spec, tracker) in node.checks() {
        let label = CheckLabel {
            check: spec.name.clone(),
        };
        up.get_or_create(&label)
            .set(i64::from(tracker.health == nlb_core::check::Health::Up));
        runs.get_or_create(&label).inc_by(tracker.runs);
        failures
            .get_or_create(&label)
            .set(i64::from(tracker.failures));
        transitions
            .get_or_create(&label)
            .inc_by(tracker.transitions);
    }
    registry.register(
        "nlb_check_up",
        "Whether a health check is up (1) or down (0)",
        up,
    );
    registry.register("nlb_check_runs", "Runs of a health check", runs);
    registry.register(
        "nlb_check_consecutive_failures",
        "Failures of a health check in a row, up to its fall count",
        failures,
    );
    registry.register(
        "nlb_check_transitions",
        "Times a health check changed between up and down",
        transitions,
    );
    let panic = (0..node.config().rules.len())
        .filter(|&slot| node.check_panic(slot))
        .count();
    gauge(
        registry,
        "nlb_check_panic_rules",
        "Rules served despite down checks, because they are down on every host that serves them",
        panic as i64,
    );
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let metric = Counter::<u64>::default();
    metric.inc_by(value);
    registry.register(name, help, metric);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let metric = Gauge::<i64>::default();
    metric.set(value);
    registry.register(name, help, metric);
}

/// The metrics text. `dataplane` is the packet count of each ruleset rule, by comment.
pub(crate) fn render(
    node: &Node,
    connections: u32,
    dataplane: &[(String, u64)],
    daemon: &DaemonStats,
) -> String {
    let mut registry = Registry::default();
    let stats = node.stats();
    let state = Family::<StateLabel, Gauge>::default();
    for each in HostState::ALL {
        state
            .get_or_create(&StateLabel {
                state: each.name().to_owned(),
            })
            .set(i64::from(node.state() == each));
    }
    registry.register(
        "nlb_state",
        "This host's state: 1 for the current one",
        state,
    );
    gauge(
        &mut registry,
        "nlb_members",
        "Members of the installed view",
        node.view().1.len() as i64,
    );
    gauge(
        &mut registry,
        "nlb_view_epoch",
        "Epoch of the installed view",
        i64::from(node.view().0),
    );
    let rules = node.config().rules.len();
    let label = |slot: usize| RuleLabel {
        rule: if slot < rules {
            (slot + 1).to_string()
        } else {
            "default".to_owned()
        },
    };
    let owned = Family::<RuleLabel, Gauge>::default();
    for (slot, buckets) in node.owned().iter().enumerate() {
        owned.get_or_create(&label(slot)).set(buckets.len() as i64);
    }
    registry.register(
        "nlb_owned_buckets",
        "Buckets this host accepts new connections for",
        owned,
    );
    let draining = Family::<RuleLabel, Gauge>::default();
    for (slot, &buckets) in daemon.draining_buckets.iter().enumerate() {
        draining
            .get_or_create(&label(slot))
            .set(i64::try_from(buckets).unwrap_or(i64::MAX));
    }
    registry.register(
        "nlb_draining_buckets",
        "Buckets this host released and still has connections in (dropped before conntrack only once they have ended)",
        draining,
    );
    register_checks(&mut registry, node);
    gauge(
        &mut registry,
        "nlb_connections",
        "Open connections to the VIPs on this host",
        i64::from(connections),
    );
    counter(
        &mut registry,
        "nlb_heartbeats_sent",
        "Heartbeats sent",
        stats.heartbeats_sent,
    );
    counter(
        &mut registry,
        "nlb_heartbeats_received",
        "Heartbeats accepted",
        stats.heartbeats_received,
    );
    let dropped = Family::<ReasonLabel, Counter>::default();
    for reason in nlb_core::node::DropReason::ALL {
        let count = stats.heartbeats_dropped.get(&reason).copied().unwrap_or(0);
        let reason = serde_json::to_value(reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        dropped.get_or_create(&ReasonLabel { reason }).inc_by(count);
    }
    registry.register(
        "nlb_heartbeats_dropped",
        "Heartbeats dropped, by reason",
        dropped,
    );
    counter(
        &mut registry,
        "nlb_convergences",
        "Convergences completed",
        stats.convergences,
    );
    let last = Gauge::<f64, AtomicU64>::default();
    last.set(stats.last_convergence.map_or(0.0, |d| d.as_secs_f64()));
    registry.register(
        "nlb_last_convergence_seconds",
        "Duration of the last convergence",
        last,
    );
    counter(
        &mut registry,
        "nlb_views_installed",
        "Views installed",
        stats.views_installed,
    );
    counter(
        &mut registry,
        "nlb_conflicts",
        "ARP conflicts seen for a VIP",
        stats.conflicts,
    );
    counter(
        &mut registry,
        "nlb_probes_seen",
        "RFC 5227 probes for a VIP from outside",
        stats.probes_seen,
    );
    counter(
        &mut registry,
        "nlb_arp_replies",
        "ARP replies sent",
        stats.arp_replies_sent,
    );
    counter(
        &mut registry,
        "nlb_arp_announcements",
        "ARP announcements sent",
        stats.arp_announcements_sent,
    );
    let packets = Family::<RuleLabel, Counter>::default();
    for (rule, count) in dataplane {
        packets
            .get_or_create(&RuleLabel { rule: rule.clone() })
            .inc_by(*count);
    }
    registry.register(
        "nlb_dataplane_packets",
        "Packets to the VIPs by data-plane rule (accepted or dropped)",
        packets,
    );
    gauge(
        &mut registry,
        "nlb_dataplane_healthy",
        "1 while nft applies and lease refreshes succeed; 0 while the host fails closed",
        i64::from(daemon.dataplane_healthy),
    );
    for (name, help, value) in [
        (
            "nlb_nft_failures",
            "nft batches that failed",
            daemon.nft_failures,
        ),
        (
            "nlb_lease_failures",
            "Lease refreshes that failed",
            daemon.lease_failures,
        ),
        (
            "nlb_drain_count_failures",
            "Counts of the connections in draining buckets that failed (ss, nft list set, conntrack -L)",
            daemon.drain_count_failures,
        ),
        (
            "nlb_connection_count_failures",
            "Counts of the VIPs' established connections that failed (ss); a drainstop waits",
            daemon.connection_count_failures,
        ),
        (
            "nlb_heartbeats_held",
            "Heartbeats held back until a release was applied",
            daemon.heartbeats_held,
        ),
        (
            "nlb_frame_cap_hits",
            "Wakeups that handled the most frames allowed at once",
            daemon.frame_cap_hits,
        ),
        (
            "nlb_tables_restored",
            "Times nlb's nft tables were found missing and restored",
            daemon.tables_restored,
        ),
        (
            "nlb_vips_restored",
            "Times a VIP was found removed and re-added",
            daemon.vips_restored,
        ),
    ] {
        counter(&mut registry, name, help, value);
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String");
    out
}

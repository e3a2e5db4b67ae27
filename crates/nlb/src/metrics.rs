//! OpenMetrics for one host, built from the node's state and counters and the data
//! plane's nft counters at each scrape.

use nlb_core::node::Node;
use nlb_wire::heartbeat::HostState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

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
pub(crate) fn render(node: &Node, connections: u32, dataplane: &[(String, u64)]) -> String {
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
    let owned = Family::<RuleLabel, Gauge>::default();
    let rules = node.config().rules.len();
    for (slot, buckets) in node.owned().iter().enumerate() {
        let rule = if slot < rules {
            (slot + 1).to_string()
        } else {
            "default".to_owned()
        };
        owned
            .get_or_create(&RuleLabel { rule })
            .set(buckets.len() as i64);
    }
    registry.register(
        "nlb_owned_buckets",
        "Buckets this host accepts new connections for",
        owned,
    );
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
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String");
    out
}

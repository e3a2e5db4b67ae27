//! Clients and their flows: a SYN to the cluster MAC reaches the hosts the switch sends
//! it to, each host's data plane runs [`decide`] on it, and the one host that accepts
//! keeps the connection until it ends. No acceptor: the client retries after TCP's
//! initial RTO. Two or more: a safety violation, recorded with the rule slot and bucket
//! of the hosts' [`Decision`](nlb_core::filter::Decision).

use crate::{Pending, Sim, Violation};
use nlb_core::buckets::BUCKETS;
use nlb_core::config::Protocol;
use nlb_core::filter::{Decision, Flow, cluster_seed, decide};
use nlb_core::time::Instant;
use nlb_wire::addressing::cluster_mac;
use nlb_wire::bitmap::BucketBitmap;
use rand::Rng;
use std::net::Ipv4Addr;
use std::time::Duration;

/// A client connection.
#[derive(Debug, Clone)]
pub struct SimFlow {
    /// The flow's addresses.
    pub flow: Flow,
    /// How long it lasts once a host accepts it.
    pub duration: Duration,
    /// The host that accepted it, if any did yet.
    pub host: Option<usize>,
    /// SYNs sent.
    pub syns: u32,
    /// Whether it broke: its host dropped it before it ended.
    pub broken: bool,
}

impl Sim {
    /// Opens a flow now from `src:src_port` to `dst:dst_port`, lasting `duration` once a
    /// host accepts it.
    pub fn open_flow(
        &mut self,
        src: Ipv4Addr,
        src_port: u16,
        dst: Ipv4Addr,
        dst_port: u16,
        duration: Duration,
    ) -> u64 {
        let flow = Flow {
            src,
            src_port,
            dst,
            dst_port,
            protocol: Protocol::Tcp,
        };
        self.open_flow_at(self.now, flow, duration)
    }

    /// Schedules the SYN of a new flow at `at`.
    pub(crate) fn open_flow_at(&mut self, at: Instant, flow: Flow, duration: Duration) -> u64 {
        let id = self.next_flow;
        self.next_flow += 1;
        self.flows.insert(
            id,
            SimFlow {
                flow,
                duration,
                host: None,
                syns: 0,
                broken: false,
            },
        );
        self.push(at, Pending::Syn { flow: id });
        id
    }

    /// Opens `count` flows from random client addresses in 198.18.128.0/17, spread
    /// evenly over the next `over`, each lasting a random time up to `max_duration`.
    pub fn open_random_flows(
        &mut self,
        count: usize,
        over: Duration,
        dst: Ipv4Addr,
        dst_port: u16,
        max_duration: Duration,
    ) {
        let start = self.now;
        for i in 0..count {
            let offset = over.mul_f64(i as f64 / count.max(1) as f64);
            let src = Ipv4Addr::from(
                u32::from(Ipv4Addr::new(198, 18, 128, 0)) + self.rng.random_range(0..(1 << 15)),
            );
            let flow = Flow {
                src,
                src_port: self.rng.random_range(1024..=65535),
                dst,
                dst_port,
                protocol: Protocol::Tcp,
            };
            let duration = max_duration.mul_f64(self.rng.random_range(0.1..1.0));
            self.open_flow_at(start + offset, flow, duration);
        }
    }

    pub(crate) fn handle_syn(&mut self, id: u64) {
        let now = self.now;
        let Some(flow) = self.flows.get(&id).cloned() else {
            return;
        };
        // The SYN goes to the cluster MAC: the switch decides who sees it.
        let dst_mac = cluster_mac(flow.flow.dst, self.hosts[0].config.cluster.mode);
        let ports = self.switch.forward(now, self.client_port, dst_mac);
        let mut acceptors: Vec<(usize, Decision)> = Vec::new();
        for (index, host) in self.hosts.iter().enumerate() {
            if !host.kernel_up || !ports.contains(&host.port) {
                continue;
            }
            if self.blocked.contains(&(self.client_port, host.port)) {
                continue;
            }
            let owned: Vec<BucketBitmap> = (0..host.dataplane.owned.len())
                .map(|slot| {
                    host.dataplane
                        .effective_owned(now, slot)
                        .cloned()
                        .unwrap_or_else(|| BucketBitmap::new(BUCKETS))
                })
                .collect();
            let decision = decide(&host.config, &owned, cluster_seed(&host.config), &flow.flow);
            if decision.accept {
                acceptors.push((index, decision));
            }
        }
        let entry = self.flows.get_mut(&id).expect("flow exists");
        entry.syns += 1;
        match acceptors.as_slice() {
            [] => {
                // TCP retransmits the SYN after its initial RTO, 1 s.
                self.push(now + Duration::from_secs(1), Pending::Syn { flow: id });
            }
            [(host, _)] => {
                let host = *host;
                entry.host = Some(host);
                let ends = now + entry.duration;
                self.hosts[host].conntrack.insert(id);
                self.push(ends, Pending::FlowEnd { flow: id });
                self.report_connections(host);
            }
            many @ [(_, decision), ..] => {
                entry.broken = true;
                // The hosts share the cluster-wide configuration, so their decisions
                // name one rule slot and one bucket; an accepted flow was hashed.
                let violation = Violation {
                    at: now,
                    slot: decision.slot,
                    bucket: decision.bucket.expect("an accepted flow has a bucket"),
                    hosts: many.iter().map(|&(host, _)| host).collect(),
                    partitioned: !self.blocked.is_empty(),
                    flow: Some(id),
                };
                self.violations.push(violation);
            }
        }
    }

    pub(crate) fn handle_flow_end(&mut self, id: u64) {
        let Some(flow) = self.flows.get(&id) else {
            return;
        };
        if let Some(host) = flow.host
            && self.hosts[host].conntrack.remove(&id)
        {
            self.report_connections(host);
        }
    }
}

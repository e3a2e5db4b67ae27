//! The per-packet work measured by `benches/per_packet.rs` (criterion, wall time) and by
//! `examples/per_packet.rs` (callgrind, instructions): one definition for both.

use nlb_core::buckets::BUCKETS;
use nlb_core::config::{Config, Protocol};
use nlb_core::filter::{Decision, Flow, cluster_seed, decide};
use nlb_wire::bitmap::BucketBitmap;
use nlb_wire::heartbeat::{
    Echo, FIELD_DIGESTS_LEN, HeartbeatKey, HeartbeatPacket, HeartbeatRepr, HostState, RuleStatus,
};
use std::net::Ipv4Addr;

/// A host of a 4-host cluster with two rules (one per-connection, one single affinity).
pub struct Workload {
    /// The host's configuration.
    pub config: Config,
    /// What it accepts per rule slot, the fallback rule last.
    pub owned: Vec<BucketBitmap>,
    /// The cluster's hash seed.
    pub seed: u32,
    /// 1,024 client flows, half to each rule.
    pub flows: Vec<Flow>,
    /// The host's heartbeat.
    pub heartbeat: HeartbeatRepr,
    /// The cluster key.
    pub key: HeartbeatKey,
    /// The heartbeat, encoded and tagged.
    pub frame: Vec<u8>,
}

impl Default for Workload {
    fn default() -> Self {
        Self::new()
    }
}

impl Workload {
    /// Builds the workload.
    pub fn new() -> Workload {
        let config = Config::parse(
            r#"
[cluster]
interface = "eth0"
vips = ["198.18.0.10"]
key_file = "/dev/null"
[host]
id = 1
[[rule]]
ports = "80"
protocol = "tcp"
affinity = "none"
[[rule]]
ports = "443"
protocol = "tcp"
affinity = "single"
"#,
            "bench.toml",
        )
        .expect("a valid configuration");
        // This host owns every fourth bucket of each rule and of the fallback rule.
        let owned: Vec<BucketBitmap> = (0..=config.rules.len())
            .map(|_| {
                let mut bitmap = BucketBitmap::new(BUCKETS);
                for bucket in (0..BUCKETS).step_by(4) {
                    bitmap.insert(bucket);
                }
                bitmap
            })
            .collect();
        let flows = (0..1024u32)
            .map(|i| Flow {
                src: Ipv4Addr::from(0xc612_0000 | ((i * 7919) & 0xffff)),
                src_port: 32768 + (i as u16).wrapping_mul(31),
                dst: Ipv4Addr::new(198, 18, 0, 10),
                dst_port: if i % 2 == 0 { 80 } else { 443 },
                protocol: Protocol::Tcp,
            })
            .collect();
        let rules = owned
            .iter()
            .map(|bitmap| RuleStatus {
                weight: None,
                priority: None,
                enabled: true,
                draining: false,
                check_down: false,
                owned: bitmap.clone(),
                target: bitmap.clone(),
            })
            .collect();
        let heartbeat = HeartbeatRepr {
            cluster_id: cluster_seed(&config),
            host_id: 1,
            state: HostState::Converged,
            incarnation: 3,
            sequence: 1_000_000,
            config_fingerprint: 0x1234_5678_9abc_def0,
            view_epoch: 7,
            heartbeat_ms: 10,
            view_members: [1, 2, 3, 4].into_iter().collect(),
            live_members: [1, 2, 3, 4].into_iter().collect(),
            connections: 100,
            field_digests: [0x5a; FIELD_DIGESTS_LEN],
            sender_mac: Some(nlb_wire::MacAddr([0x52, 0x54, 0, 0, 0, 1])),
            // A four-host cluster: the sender echoes the three others.
            echoes: (2..=4)
                .map(|host_id| Echo {
                    host_id,
                    incarnation: 3,
                    sequence: 999_999,
                })
                .collect(),
            rules,
        };
        let key = HeartbeatKey::derive(b"benchmark secret");
        let mut frame = vec![0u8; heartbeat.buffer_len(true)];
        heartbeat.emit(
            &mut HeartbeatPacket::new_unchecked(&mut frame[..]),
            Some(&key),
        );
        Workload {
            seed: cluster_seed(&config),
            config,
            owned,
            flows,
            heartbeat,
            key,
            frame,
        }
    }

    /// The filter decision for flow `i` (of 1,024).
    pub fn decide(&self, i: usize) -> Decision {
        decide(
            &self.config,
            &self.owned,
            self.seed,
            &self.flows[i % self.flows.len()],
        )
    }

    /// Encodes and tags a heartbeat (3 rules, 256 buckets each) into `out`.
    pub fn encode(&self, out: &mut [u8]) {
        self.heartbeat
            .emit(&mut HeartbeatPacket::new_unchecked(out), Some(&self.key));
    }

    /// Checks and decodes the heartbeat frame, verifying its tag.
    pub fn decode(&self) -> HeartbeatRepr {
        let packet = HeartbeatPacket::new_checked(&self.frame[..]).expect("a whole frame");
        HeartbeatRepr::parse(&packet, Some(&self.key)).expect("a valid heartbeat")
    }
}

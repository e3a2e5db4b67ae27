//! The per-packet decision: does this host accept a new flow?
//!
//! [`decide`] is the reference the nft data plane implements and `nlb filter` explains.
//! It looks only at the flow and at what the host owns. Packets of connections the host
//! already has are accepted by conntrack before this decision, in the kernel.
//!
//! 1. The first rule that covers the destination VIP, port and protocol applies. Traffic
//!    no rule covers falls to the implicit *default rule*, owned by the default host
//!    (the lowest live host id), as in Windows NLB.
//! 2. A disabled rule drops everything.
//! 3. The flow's bucket is `jhash(key) mod BUCKETS` with the cluster seed, where the key
//!    is the rule's affinity: source address and port (none), source address (single),
//!    or source /24 (network).
//! 4. The host accepts the flow if it owns that bucket of that rule.

use crate::buckets::BUCKETS;
use crate::config::{Affinity, Config, Protocol, RuleMode};
use crate::jhash::FlowKey;
use nlb_wire::heartbeat::BucketBitmap;
use std::net::Ipv4Addr;

/// The fields of a packet the decision looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Client address.
    pub src: Ipv4Addr,
    /// Client port.
    pub src_port: u16,
    /// The VIP.
    pub dst: Ipv4Addr,
    /// The service port.
    pub dst_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// Which rule a flow falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "index")]
pub enum RuleRef {
    /// Configured rule `index` (0-based).
    Configured(usize),
    /// The implicit default rule for traffic no rule covers.
    Default,
}

impl RuleRef {
    /// Index into per-rule tables, where the default rule comes after the configured
    /// ones.
    pub fn slot(self, configured: usize) -> usize {
        match self {
            RuleRef::Configured(index) => index,
            RuleRef::Default => configured,
        }
    }
}

/// The outcome, with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// The rule that applied.
    pub rule: RuleRef,
    /// The flow's bucket, if the rule hashes (not for disabled rules).
    pub bucket: Option<u16>,
    /// Whether this host accepts the flow.
    pub accept: bool,
}

/// The cluster-wide hash seed: the cluster id, so that every host of one cluster (and
/// the kernel on each) hashes alike, and two clusters on one segment differ.
pub fn cluster_seed(config: &Config) -> u32 {
    nlb_wire::addressing::cluster_id(&config.cluster.vips)
}

/// The hash key of a flow under an affinity.
pub fn flow_key(flow: &Flow, affinity: Affinity) -> FlowKey {
    match affinity {
        Affinity::None => FlowKey::SourceAddrPort(flow.src, flow.src_port),
        Affinity::Single => FlowKey::SourceAddr(flow.src),
        Affinity::Network => FlowKey::SourceNet24(flow.src),
    }
}

/// The bucket of a flow under an affinity.
pub fn bucket_of(flow: &Flow, affinity: Affinity, seed: u32) -> u16 {
    flow_key(flow, affinity).nft_jhash(u32::from(BUCKETS), seed) as u16
}

/// Decides a new flow. `owned[i]` is what this host accepts for rule `i`, with the
/// default rule last (`owned.len() == config.rules.len() + 1`).
pub fn decide(config: &Config, owned: &[BucketBitmap], seed: u32, flow: &Flow) -> Decision {
    let rule = match config.rule_for(flow.dst, flow.dst_port, flow.protocol) {
        Some(index) => RuleRef::Configured(index),
        None => RuleRef::Default,
    };
    let (mode, affinity) = match rule {
        RuleRef::Configured(index) => (config.rules[index].mode, config.rules[index].affinity),
        RuleRef::Default => (RuleMode::Single, Affinity::Single),
    };
    if mode == RuleMode::Disabled {
        return Decision {
            rule,
            bucket: None,
            accept: false,
        };
    }
    let bucket = bucket_of(flow, affinity, seed);
    let accept = owned
        .get(rule.slot(config.rules.len()))
        .is_some_and(|bitmap| bitmap.contains(bucket));
    Decision {
        rule,
        bucket: Some(bucket),
        accept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            r#"
[cluster]
interface = "eth0"
vips = ["198.18.0.10"]
[host]
id = 1
[[rule]]
ports = "80"
protocol = "tcp"
affinity = "none"
[[rule]]
ports = "25"
protocol = "tcp"
mode = "disabled"
"#,
            "t.toml",
        )
        .unwrap()
    }

    fn flow(src: [u8; 4], src_port: u16, dst_port: u16) -> Flow {
        Flow {
            src: src.into(),
            src_port,
            dst: Ipv4Addr::new(198, 18, 0, 10),
            dst_port,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn owned_bucket_accepts_and_others_drop() {
        let config = config();
        let seed = cluster_seed(&config);
        let f = flow([198, 18, 1, 1], 40000, 80);
        let bucket = bucket_of(&f, Affinity::None, seed);
        let mut mine = BucketBitmap::new(BUCKETS);
        mine.insert(bucket);
        let empty = BucketBitmap::new(BUCKETS);
        let owned = vec![mine, empty.clone(), empty.clone()];
        let d = decide(&config, &owned, seed, &f);
        assert_eq!(
            d,
            Decision {
                rule: RuleRef::Configured(0),
                bucket: Some(bucket),
                accept: true
            }
        );
        let none_owned = vec![empty.clone(), empty.clone(), empty];
        assert!(!decide(&config, &none_owned, seed, &f).accept);
    }

    #[test]
    fn disabled_rule_drops_and_uncovered_goes_to_default_rule() {
        let config = config();
        let seed = cluster_seed(&config);
        let all = {
            let mut b = BucketBitmap::new(BUCKETS);
            (0..BUCKETS).for_each(|i| b.insert(i));
            b
        };
        let owned = vec![all.clone(), all.clone(), all];
        let smtp = decide(&config, &owned, seed, &flow([198, 18, 1, 1], 1000, 25));
        assert_eq!(
            (smtp.rule, smtp.accept, smtp.bucket),
            (RuleRef::Configured(1), false, None)
        );
        let other = decide(&config, &owned, seed, &flow([198, 18, 1, 1], 1000, 443));
        assert_eq!((other.rule, other.accept), (RuleRef::Default, true));
    }

    #[test]
    fn affinity_none_spreads_one_client_over_buckets() {
        let config = config();
        let seed = cluster_seed(&config);
        let buckets: std::collections::BTreeSet<u16> = (0..64)
            .map(|port| {
                bucket_of(
                    &flow([198, 18, 1, 1], 40000 + port, 80),
                    Affinity::None,
                    seed,
                )
            })
            .collect();
        assert!(buckets.len() > 40, "{} buckets", buckets.len());
        let single: std::collections::BTreeSet<u16> = (0..64)
            .map(|port| {
                bucket_of(
                    &flow([198, 18, 1, 1], 40000 + port, 80),
                    Affinity::Single,
                    seed,
                )
            })
            .collect();
        assert_eq!(single.len(), 1);
    }
}

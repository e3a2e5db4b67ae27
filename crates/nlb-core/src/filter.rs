//! The per-packet decision: does this host accept a new flow? The one specification.
//!
//! [`decide`] is the reference the nft data plane implements, `nlb filter` explains, and
//! the simulator runs. It looks only at the flow and at what the host owns. Packets of
//! connections the host already has are accepted by conntrack before this decision, in
//! the kernel.
//!
//! 1. The first rule that covers the destination VIP, port and protocol applies
//!    ([`RuleRef::of`]). Traffic no rule covers falls to the *fallback rule*
//!    ([`Rule::FALLBACK`]): single mode, single affinity, owned by the live host with
//!    the lowest id, as Windows NLB's default host. Per-rule tables (what a host owns,
//!    heartbeat rule slots, `Action::SetRule`) hold the configured rules in file order
//!    and the fallback rule last ([`RuleRef::slot`]).
//! 2. A disabled rule drops everything.
//! 3. The flow's bucket is `jhash(key) mod BUCKETS` with the cluster seed
//!    ([`cluster_seed`]), where the key is the rule's affinity
//!    ([`Affinity::flow_key`]): source address and port (none), source address (single),
//!    or source /24 (network). [`Affinity::nft_hash_expr`] is the same hash written as
//!    the nft expression the ruleset loads into the kernel.
//! 4. The host accepts the flow if it owns that bucket of that rule.
//!
//! The outcome, [`Decision`], carries the rule, its slot, its affinity and the bucket,
//! so that nobody downstream works them out again. [`bucket_for`] is the bucket alone,
//! for tests and tools that predict where a flow goes.

use crate::buckets::BUCKETS;
use crate::config::{Affinity, Config, Protocol, Rule, RuleMode};
use crate::jhash::FlowKey;
use nlb_wire::bitmap::BucketBitmap;
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
    /// The fallback rule ([`Rule::FALLBACK`]) for traffic no configured rule covers.
    Fallback,
}

impl RuleRef {
    /// The rule that covers `flow`: the first configured one, else the fallback rule.
    pub fn of(config: &Config, flow: &Flow) -> RuleRef {
        match config.rule_for(flow.dst, flow.dst_port, flow.protocol) {
            Some(index) => RuleRef::Configured(index),
            None => RuleRef::Fallback,
        }
    }

    /// The rule of slot `slot` of `config`'s per-rule tables, if there is such a slot.
    pub fn from_slot(config: &Config, slot: usize) -> Option<RuleRef> {
        match slot.cmp(&config.rules.len()) {
            std::cmp::Ordering::Less => Some(RuleRef::Configured(slot)),
            std::cmp::Ordering::Equal => Some(RuleRef::Fallback),
            std::cmp::Ordering::Greater => None,
        }
    }

    /// Index into per-rule tables, where the fallback rule comes after the `configured`
    /// ones.
    pub fn slot(self, configured: usize) -> usize {
        match self {
            RuleRef::Configured(index) => index,
            RuleRef::Fallback => configured,
        }
    }

    /// The rule itself: configured rule `index` of `config`, or [`Rule::FALLBACK`].
    ///
    /// # Panics
    /// If `self` is a configured index that `config` does not have.
    pub fn rule(self, config: &Config) -> &Rule {
        match self {
            RuleRef::Configured(index) => &config.rules[index],
            RuleRef::Fallback => &Rule::FALLBACK,
        }
    }
}

impl Affinity {
    /// The hash key of `flow` under this affinity: what [`Affinity::nft_hash_key`]
    /// loads into nft's registers.
    pub fn flow_key(self, flow: &Flow) -> FlowKey {
        match self {
            Affinity::None => FlowKey::SourceAddrPort(flow.src, flow.src_port),
            Affinity::Single => FlowKey::SourceAddr(flow.src),
            Affinity::Network => FlowKey::SourceNet24(flow.src),
        }
    }

    /// The nft expression of the key [`Affinity::flow_key`] hashes: `ip saddr . th
    /// sport` (none), `ip saddr` (single), `ip saddr & 255.255.255.0` (network).
    pub fn nft_hash_key(self) -> &'static str {
        match self {
            Affinity::None => "ip saddr . th sport",
            Affinity::Single => "ip saddr",
            Affinity::Network => "ip saddr & 255.255.255.0",
        }
    }

    /// The nft expression that computes [`Affinity::bucket`] in the kernel:
    /// `jhash <key> mod 256 seed <seed>`.
    pub fn nft_hash_expr(self, seed: u32) -> String {
        format!("jhash {} mod {BUCKETS} seed {seed:#x}", self.nft_hash_key())
    }

    /// The bucket of `flow` under this affinity, with the cluster seed `seed`.
    pub fn bucket(self, flow: &Flow, seed: u32) -> u16 {
        self.flow_key(flow).nft_jhash(u32::from(BUCKETS), seed) as u16
    }
}

/// The outcome, with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// The rule that applied.
    pub rule: RuleRef,
    /// The rule's slot in per-rule tables ([`RuleRef::slot`]).
    pub slot: usize,
    /// The rule's mode.
    pub mode: RuleMode,
    /// The rule's affinity: what the bucket was hashed from.
    pub affinity: Affinity,
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

/// The bucket the cluster puts `flow` in, under the rule that covers it and that rule's
/// affinity, with the cluster's seed; `None` if the rule is disabled. Whoever owns this
/// bucket of [`decide`]'s slot takes the flow.
pub fn bucket_for(config: &Config, flow: &Flow) -> Option<u16> {
    decide(config, &[], cluster_seed(config), flow).bucket
}

/// Decides a new flow. `owned[i]` is what this host accepts for rule slot `i`, with the
/// fallback rule last (`owned.len() == config.rules.len() + 1`); a missing slot owns
/// nothing.
pub fn decide(config: &Config, owned: &[BucketBitmap], seed: u32, flow: &Flow) -> Decision {
    let rule = RuleRef::of(config, flow);
    let slot = rule.slot(config.rules.len());
    let Rule { mode, affinity, .. } = *rule.rule(config);
    let bucket = (mode != RuleMode::Disabled).then(|| affinity.bucket(flow, seed));
    let accept = bucket.is_some_and(|bucket| {
        owned
            .get(slot)
            .is_some_and(|bitmap| bitmap.contains(bucket))
    });
    Decision {
        rule,
        slot,
        mode,
        affinity,
        bucket,
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
[[rule]]
ports = "53"
protocol = "tcp"
affinity = "network"
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
        let bucket = Affinity::None.bucket(&f, seed);
        let mut mine = BucketBitmap::new(BUCKETS);
        mine.insert(bucket);
        let empty = BucketBitmap::new(BUCKETS);
        let owned = vec![mine, empty.clone(), empty.clone(), empty.clone()];
        let d = decide(&config, &owned, seed, &f);
        assert_eq!(
            d,
            Decision {
                rule: RuleRef::Configured(0),
                slot: 0,
                mode: RuleMode::Multiple,
                affinity: Affinity::None,
                bucket: Some(bucket),
                accept: true
            }
        );
        let none_owned = vec![empty.clone(), empty.clone(), empty.clone(), empty];
        assert!(!decide(&config, &none_owned, seed, &f).accept);
    }

    #[test]
    fn disabled_rule_drops_and_uncovered_goes_to_the_fallback_rule() {
        let config = config();
        let seed = cluster_seed(&config);
        let all = {
            let mut b = BucketBitmap::new(BUCKETS);
            (0..BUCKETS).for_each(|i| b.insert(i));
            b
        };
        let owned = vec![all.clone(), all.clone(), all.clone(), all];
        let smtp = decide(&config, &owned, seed, &flow([198, 18, 1, 1], 1000, 25));
        assert_eq!(
            (smtp.rule, smtp.slot, smtp.accept, smtp.bucket),
            (RuleRef::Configured(1), 1, false, None)
        );
        let f = flow([198, 18, 1, 1], 1000, 443);
        let other = decide(&config, &owned, seed, &f);
        assert_eq!((other.rule, other.accept), (RuleRef::Fallback, true));
        assert_eq!(other.slot, config.rules.len());
        assert_eq!(
            (other.mode, other.affinity),
            (Rule::FALLBACK.mode, Rule::FALLBACK.affinity)
        );
        assert_eq!(other.bucket, Some(Affinity::Single.bucket(&f, seed)));
    }

    #[test]
    fn the_fallback_rule_is_single_mode_single_affinity_for_all_traffic() {
        let fallback = Rule::FALLBACK;
        assert_eq!(fallback.mode, RuleMode::Single);
        assert_eq!(fallback.affinity, Affinity::Single);
        assert_eq!((fallback.vip, fallback.ports.clone()), (None, 0..=65535));
        assert_eq!(fallback.protocol, Protocol::Both);
        // No priority: the lowest live host id owns it.
        assert_eq!((fallback.weight, fallback.priority), (None, None));
        // Not the rule that stands in for an empty file, which spreads traffic.
        assert_ne!(fallback, Rule::catch_all());
        assert_eq!(Rule::catch_all().mode, RuleMode::Multiple);
    }

    #[test]
    fn slots_name_the_rules_and_the_fallback_last() {
        let config = config();
        for index in 0..config.rules.len() {
            let rule = RuleRef::from_slot(&config, index).unwrap();
            assert_eq!(rule, RuleRef::Configured(index));
            assert_eq!(rule.slot(config.rules.len()), index);
            assert_eq!(rule.rule(&config), &config.rules[index]);
        }
        let last = RuleRef::from_slot(&config, config.rules.len()).unwrap();
        assert_eq!(last, RuleRef::Fallback);
        assert_eq!(last.rule(&config), &Rule::FALLBACK);
        assert_eq!(RuleRef::from_slot(&config, config.rules.len() + 1), None);
    }

    #[test]
    fn bucket_for_uses_the_covering_rules_affinity() {
        let config = config();
        let seed = cluster_seed(&config);
        for (port, affinity) in [
            (80, Some(Affinity::None)),
            (25, None),
            (53, Some(Affinity::Network)),
            (443, Some(Affinity::Single)),
        ] {
            for i in 0..32u16 {
                let f = flow([198, 18, 2, i as u8], 40000 + i, port);
                assert_eq!(
                    bucket_for(&config, &f),
                    affinity.map(|a| a.bucket(&f, seed)),
                    "port {port}"
                );
            }
        }
    }

    #[test]
    fn the_nft_key_matches_the_flow_key() {
        let f = flow([198, 18, 3, 7], 4242, 80);
        for (affinity, key, flow_key) in [
            (
                Affinity::None,
                "ip saddr . th sport",
                FlowKey::SourceAddrPort(f.src, 4242),
            ),
            (Affinity::Single, "ip saddr", FlowKey::SourceAddr(f.src)),
            (
                Affinity::Network,
                "ip saddr & 255.255.255.0",
                FlowKey::SourceNet24(f.src),
            ),
        ] {
            assert_eq!(affinity.nft_hash_key(), key);
            assert_eq!(affinity.flow_key(&f), flow_key);
            assert_eq!(
                affinity.nft_hash_expr(0x1234),
                format!("jhash {key} mod 256 seed 0x1234")
            );
        }
    }

    #[test]
    fn affinity_none_spreads_one_client_over_buckets() {
        let config = config();
        let seed = cluster_seed(&config);
        let buckets: std::collections::BTreeSet<u16> = (0..64)
            .map(|port| Affinity::None.bucket(&flow([198, 18, 1, 1], 40000 + port, 80), seed))
            .collect();
        assert!(buckets.len() > 40, "{} buckets", buckets.len());
        let single: std::collections::BTreeSet<u16> = (0..64)
            .map(|port| Affinity::Single.bucket(&flow([198, 18, 1, 1], 40000 + port, 80), seed))
            .collect();
        assert_eq!(single.len(), 1);
    }
}

//! The bucket map: which host accepts new connections for each bucket of a rule.
//!
//! Every rule has [`BUCKETS`] buckets; a flow's bucket is `jhash(key) mod BUCKETS`
//! ([`crate::jhash`]). A map is rebuilt from the previous map whenever the agreed
//! membership or the weights change ([`BucketMap::rebalance`]), so that:
//!
//! - each host's share is its weight's share of the buckets, rounded by largest
//!   remainder: with equal weights, shares differ by at most one, so
//!   max/mean ≤ 1 + N/B;
//! - only the buckets that must move do: a departed host's buckets are spread over the
//!   hosts below their share, and a joiner's share is taken from the hosts above theirs.
//!   Nothing else changes owner;
//! - the result is a pure function of the previous map and the weights, so every host
//!   that starts from the same map computes the same one.
//!
//! 256 buckets: 60 (Windows NLB) is too coarse for 64 hosts or uneven weights, and a
//! heartbeat carries two bitmaps per rule, which must fit an Ethernet MTU for 16 rules.

use nlb_wire::bitmap::BucketBitmap;
use std::collections::BTreeMap;

/// Buckets per rule.
pub const BUCKETS: u16 = 256;

/// A host id, 1..=64.
pub type HostId = u8;

/// The owner of every bucket of one rule; `None` means nobody accepts it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BucketMap {
    owners: Vec<Option<HostId>>,
}

impl std::fmt::Debug for BucketMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.shares()).finish()
    }
}

impl Default for BucketMap {
    fn default() -> Self {
        Self::unowned()
    }
}

impl BucketMap {
    /// A map where nobody owns anything.
    pub fn unowned() -> Self {
        BucketMap {
            owners: vec![None; usize::from(BUCKETS)],
        }
    }

    /// A map where `host` owns everything (single-host rules), or nobody does.
    pub fn all_to(host: Option<HostId>) -> Self {
        BucketMap {
            owners: vec![host; usize::from(BUCKETS)],
        }
    }

    /// Builds a map from each host's set of buckets. A bucket claimed by several hosts
    /// goes to the lowest id, so that every host resolves a conflict the same way.
    pub fn from_targets<'a>(targets: impl IntoIterator<Item = (HostId, &'a BucketBitmap)>) -> Self {
        let mut map = Self::unowned();
        for (host, target) in targets {
            for bucket in target.iter() {
                let slot = &mut map.owners[usize::from(bucket)];
                if slot.is_none_or(|owner| host < owner) {
                    *slot = Some(host);
                }
            }
        }
        map
    }

    /// The owner of `bucket`.
    pub fn owner(&self, bucket: u16) -> Option<HostId> {
        self.owners.get(usize::from(bucket)).copied().flatten()
    }

    /// How many buckets `host` owns.
    pub fn share(&self, host: HostId) -> usize {
        self.owners.iter().filter(|&&o| o == Some(host)).count()
    }

    /// Each owner and its number of buckets, by host id.
    pub fn shares(&self) -> BTreeMap<HostId, usize> {
        let mut shares = BTreeMap::new();
        for owner in self.owners.iter().flatten() {
            *shares.entry(*owner).or_default() += 1;
        }
        shares
    }

    /// The buckets `host` owns, as a heartbeat bitmap.
    pub fn buckets_of(&self, host: HostId) -> BucketBitmap {
        let mut bitmap = BucketBitmap::new(BUCKETS);
        for (bucket, owner) in self.owners.iter().enumerate() {
            if *owner == Some(host) {
                bitmap.insert(bucket as u16);
            }
        }
        bitmap
    }

    /// Buckets whose owner differs between the maps and that had an owner in `self`:
    /// the buckets a change takes away from someone.
    pub fn moved_to(&self, next: &BucketMap) -> usize {
        self.owners
            .iter()
            .zip(&next.owners)
            .filter(|(before, after)| before.is_some() && before != after)
            .count()
    }

    /// The map for a new membership and weights, moving as few buckets as possible.
    ///
    /// `weights` lists every member with its weight; members with weight 0, and hosts
    /// not listed, own nothing. If every weight is 0, nobody owns anything.
    pub fn rebalance(&self, weights: &[(HostId, u32)]) -> BucketMap {
        let quotas = quotas(BUCKETS, weights, |host| self.share(host));
        let mut next = self.owners.clone();
        let mut kept: BTreeMap<HostId, usize> = BTreeMap::new();
        // Keep each bucket with its owner while the owner is within its quota. Buckets
        // are visited from the top, so a host above quota gives up its lowest buckets.
        for owner in next.iter_mut().rev() {
            if let Some(host) = *owner {
                let quota = quotas.get(&host).copied().unwrap_or(0);
                let count = kept.entry(host).or_default();
                if *count < quota {
                    *count += 1;
                } else {
                    *owner = None;
                }
            }
        }
        // Hand each free bucket to the host furthest below its quota (lowest id on ties).
        let mut deficits: BTreeMap<HostId, usize> = quotas
            .iter()
            .map(|(&host, &quota)| (host, quota - kept.get(&host).copied().unwrap_or(0)))
            .filter(|&(_, deficit)| deficit > 0)
            .collect();
        for owner in next.iter_mut().filter(|o| o.is_none()) {
            let Some((&host, _)) = deficits
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            else {
                break;
            };
            *owner = Some(host);
            let deficit = deficits.get_mut(&host).expect("host is in deficits");
            *deficit -= 1;
            if *deficit == 0 {
                deficits.remove(&host);
            }
        }
        BucketMap { owners: next }
    }
}

/// Each host's number of buckets: its weight's share of `total`, rounded down, and the
/// buckets left over one each to hosts that already hold more than their share rounded
/// down (so that rounding takes nothing away it need not), then by largest remainder
/// (Hamilton), then to the host that holds more now (`held`), then to the lowest id.
/// Every quota is its exact share rounded down or up, so the balance bound is
/// Hamilton's.
pub fn quotas(
    total: u16,
    weights: &[(HostId, u32)],
    held: impl Fn(HostId) -> usize,
) -> BTreeMap<HostId, usize> {
    let sum: u64 = weights.iter().map(|&(_, w)| u64::from(w)).sum();
    let mut quotas = BTreeMap::new();
    if sum == 0 {
        return quotas;
    }
    let total = u64::from(total);
    let mut remainders = Vec::new();
    let mut given = 0u64;
    for &(host, weight) in weights {
        let exact = total * u64::from(weight);
        let floor = exact / sum;
        given += floor;
        quotas.insert(host, floor as usize);
        if weight > 0 {
            let holds = held(host);
            let keeps_ceiling = holds > floor as usize;
            remainders.push((keeps_ceiling, exact % sum, holds, host));
        }
    }
    remainders.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(b.1.cmp(&a.1))
            .then(b.2.cmp(&a.2))
            .then(a.3.cmp(&b.3))
    });
    for &(_, _, _, host) in remainders.iter().take((total - given) as usize) {
        *quotas.get_mut(&host).expect("host has a quota") += 1;
    }
    quotas
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn equal(hosts: &[HostId]) -> Vec<(HostId, u32)> {
        hosts.iter().map(|&h| (h, 100)).collect()
    }

    #[test]
    fn first_map_is_balanced() {
        let map = BucketMap::unowned().rebalance(&equal(&[1, 2, 3]));
        assert_eq!(map.shares(), BTreeMap::from([(1, 86), (2, 85), (3, 85)]));
    }

    /// With unequal weights, plain largest-remainder rounding could raise an old host's
    /// quota when another joins, moving buckets between hosts that stayed. Growing a
    /// cluster to 64 hosts one at a time, every join moves exactly the joiner's quota.
    #[test]
    fn joins_with_unequal_weights_move_only_the_joiners_share() {
        let weight = |host: HostId| 100 * (1 + u32::from(host - 1) % 4);
        let mut map = BucketMap::unowned().rebalance(&[(1, weight(1))]);
        for joiner in 2..=64 {
            let members: Vec<(HostId, u32)> = (1..=joiner).map(|h| (h, weight(h))).collect();
            let next = map.rebalance(&members);
            assert_eq!(
                map.moved_to(&next),
                next.share(joiner),
                "join of host {joiner}"
            );
            map = next;
        }
    }

    #[test]
    fn leave_moves_only_the_departed_hosts_buckets_evenly() {
        let before = BucketMap::unowned().rebalance(&equal(&[1, 2, 3]));
        let after = before.rebalance(&equal(&[1, 2]));
        assert_eq!(before.moved_to(&after), before.share(3));
        for bucket in 0..BUCKETS {
            if before.owner(bucket) != Some(3) {
                assert_eq!(before.owner(bucket), after.owner(bucket));
            }
        }
        assert_eq!(after.shares(), BTreeMap::from([(1, 128), (2, 128)]));
    }

    #[test]
    fn join_takes_the_fair_share_evenly() {
        let before = BucketMap::unowned().rebalance(&equal(&[1, 2, 3]));
        let after = before.rebalance(&equal(&[1, 2, 3, 4]));
        assert_eq!(after.share(4), 64);
        assert_eq!(before.moved_to(&after), 64);
        for host in 1..=3 {
            let lost = before.share(host) - after.share(host);
            assert!((21..=22).contains(&lost), "host {host} lost {lost}");
        }
    }

    #[test]
    fn weights_and_zero_weight() {
        let map = BucketMap::unowned().rebalance(&[(1, 30), (2, 60), (3, 0)]);
        assert_eq!(map.share(1), 85);
        assert_eq!(map.share(2), 171);
        assert_eq!(map.share(3), 0);
        assert_eq!(
            BucketMap::unowned().rebalance(&[(1, 0)]),
            BucketMap::unowned()
        );
    }

    #[test]
    fn from_targets_prefers_the_lowest_id_on_conflict() {
        let mut a = BucketBitmap::new(BUCKETS);
        a.insert(5);
        let mut b = BucketBitmap::new(BUCKETS);
        b.insert(5);
        b.insert(6);
        let map = BucketMap::from_targets([(4, &b), (2, &a)]);
        assert_eq!(
            (map.owner(5), map.owner(6), map.owner(7)),
            (Some(2), Some(4), None)
        );
    }

    proptest! {
        /// Any sequence of membership changes: the map stays balanced within one bucket,
        /// every bucket has an owner, and each step moves exactly the minimum.
        #[test]
        fn sequences_stay_balanced_and_minimal(steps in proptest::collection::vec(proptest::collection::btree_set(1u8..=64, 1..12), 1..12)) {
            let mut map = BucketMap::unowned();
            for members in steps {
                let members: Vec<HostId> = members.into_iter().collect();
                let next = map.rebalance(&equal(&members));
                let shares = next.shares();
                let max = *shares.values().max().unwrap();
                let min = members.iter().map(|h| shares.get(h).copied().unwrap_or(0)).min().unwrap();
                prop_assert!(max - min <= 1);
                prop_assert!((0..BUCKETS).all(|b| next.owner(b).is_some()));
                // Minimum: what departed hosts held, plus what survivors hold above quota.
                let quota = quotas(BUCKETS, &equal(&members), |h| map.share(h));
                let must_move: usize = map
                    .shares()
                    .iter()
                    .map(|(host, &held)| held.saturating_sub(quota.get(host).copied().unwrap_or(0)))
                    .sum();
                prop_assert_eq!(map.moved_to(&next), must_move);
                let mean = f64::from(BUCKETS) / members.len() as f64;
                prop_assert!(max as f64 / mean <= 1.0 + members.len() as f64 / f64::from(BUCKETS));
                map = next;
            }
        }

        #[test]
        fn weighted_shares_are_proportional(weights in proptest::collection::btree_map(1u8..=64, 0u32..=100, 1..10)) {
            let weights: Vec<(HostId, u32)> = weights.into_iter().collect();
            let map = BucketMap::unowned().rebalance(&weights);
            let sum: u32 = weights.iter().map(|w| w.1).sum();
            for &(host, weight) in &weights {
                let exact = f64::from(BUCKETS) * f64::from(weight) / f64::from(sum.max(1));
                prop_assert!((map.share(host) as f64 - exact).abs() < 1.0);
                if weight == 0 {
                    prop_assert_eq!(map.share(host), 0);
                }
            }
        }
    }
}

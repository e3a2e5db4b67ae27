//! Buckets in hand-off on their old owner: **draining**.
//!
//! The `netdev` stage drops a bucket this host does not own before conntrack
//! ([`nlb_linux::ruleset`]). A bucket it released is not dropped at once: it *drains*
//! (`jump draining` in the rule's map): its packets still reach conntrack, so this
//! host's connections in it go on, while new flows in it are dropped (a TCP SYN at
//! netdev, a new UDP flow after conntrack). Releasing a bucket into draining is a
//! release: the ordering contract treats it as one.
//!
//! How the daemon knows a bucket has drained: off the protocol loop, the kernel thread
//! lists this host's TCP sockets on the VIPs with `ss` (all states in which the peer may
//! still send) and puts each into its rule slot and bucket with
//! [`nlb_core::filter::decide`], the one packet decision
//! ([`crate::kernel::Job::LiveBuckets`], on a worker of its own, so that a slow `ss`
//! never delays an ownership change). A bucket leaves draining when a count that
//! started after the kernel began draining it (when the apply that made it draining
//! had completed, so no new connection could start in it any more) finds no connection
//! in it, and, for a rule that takes UDP (which has no connection `ss` could see), once
//! [`UDP_DRAIN`] has passed too.
//!
//! Limits: connections that are not this host's sockets (a service behind DNAT, say)
//! are not seen, and their buckets drain for TCP as soon as the count finds none; if
//! `ss` fails, nothing leaves draining (it costs conntrack work, not connections).
//!
//! At start-up and after a reload that rejoins, every bucket of every rule drains: a
//! restarted daemon's host keeps the connections it has, and the first count lets go of
//! the buckets that hold none.

use nlb_core::buckets::BUCKETS;
use nlb_wire::bitmap::BucketBitmap;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a released bucket of a rule that takes UDP drains at least: a UDP flow has
/// no socket to count, and conntrack forgets an unanswered one after 30 s.
pub(super) const UDP_DRAIN: Duration = Duration::from_secs(60);

/// The draining buckets of each rule slot.
#[derive(Debug)]
pub(super) struct Drains {
    /// Per slot, bucket → since when the kernel drains it (`None`: not applied yet).
    slots: Vec<BTreeMap<u16, Option<Instant>>>,
}

impl Drains {
    /// Every bucket of `slots` rule slots draining (see the module documentation).
    pub(super) fn all(slots: usize) -> Drains {
        Drains {
            slots: vec![(0..BUCKETS).map(|b| (b, None)).collect(); slots],
        }
    }

    /// The node now wants `owned` for `slot`, where it wanted `before`: what it gave up
    /// drains, what it takes is owned. A slot that keeps no connections drains nothing.
    pub(super) fn owned_changed(
        &mut self,
        slot: usize,
        before: &BucketBitmap,
        owned: &BucketBitmap,
        keep_established: bool,
    ) {
        let Some(draining) = self.slots.get_mut(slot) else {
            return;
        };
        if !keep_established {
            draining.clear();
            return;
        }
        for bucket in before.iter().filter(|&b| !owned.contains(b)) {
            draining.entry(bucket).or_insert(None);
        }
        for bucket in owned.iter() {
            draining.remove(&bucket);
        }
    }

    /// The draining buckets of `slot`.
    pub(super) fn bitmap(&self, slot: usize) -> BucketBitmap {
        let mut out = BucketBitmap::new(BUCKETS);
        if let Some(draining) = self.slots.get(slot) {
            draining.keys().for_each(|&b| out.insert(b));
        }
        out
    }

    /// The kernel took `applied` at `at`: the buckets it drains from then on.
    pub(super) fn applied(&mut self, applied: &[nlb_linux::ruleset::RuleState], at: Instant) {
        for (draining, state) in self.slots.iter_mut().zip(applied) {
            for (&bucket, since) in draining.iter_mut() {
                if since.is_none()
                    && state.draining.contains(bucket)
                    && !state.owned.contains(bucket)
                {
                    *since = Some(at);
                }
            }
        }
    }

    /// Whether any bucket drains.
    pub(super) fn any(&self) -> bool {
        self.slots.iter().any(|slot| !slot.is_empty())
    }

    /// A count that started at `started` found connections in the `live` buckets: the
    /// others that drained since before then are done (a slot that takes UDP also waits
    /// [`UDP_DRAIN`]). True if any bucket left.
    pub(super) fn settle(
        &mut self,
        live: &[BucketBitmap],
        started: Instant,
        now: Instant,
        takes_udp: impl Fn(usize) -> bool,
    ) -> bool {
        let mut changed = false;
        for (slot, draining) in self.slots.iter_mut().enumerate() {
            let Some(live) = live.get(slot) else {
                continue;
            };
            let udp = takes_udp(slot);
            draining.retain(|&bucket, since| {
                let done = since.is_some_and(|since| {
                    since <= started
                        && !live.contains(bucket)
                        && (!udp || now.duration_since(since) >= UDP_DRAIN)
                });
                changed |= done;
                !done
            });
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlb_linux::ruleset::RuleState;

    fn bitmap(buckets: &[u16]) -> BucketBitmap {
        let mut out = BucketBitmap::new(BUCKETS);
        buckets.iter().for_each(|&b| out.insert(b));
        out
    }

    #[test]
    fn a_released_bucket_drains_until_a_later_count_finds_it_empty() {
        let mut drains = Drains::all(2);
        let t0 = Instant::now();
        // Nothing applied yet: no count settles anything.
        assert!(!drains.settle(&[bitmap(&[]), bitmap(&[])], t0, t0, |_| false));
        let mut applied = vec![RuleState::empty(true), RuleState::empty(true)];
        applied[0].draining = drains.bitmap(0);
        applied[1].draining = drains.bitmap(1);
        let t1 = t0 + Duration::from_millis(1);
        drains.applied(&applied, t1);
        // A count that started before the kernel drained them says nothing about them.
        assert!(!drains.settle(&[bitmap(&[]), bitmap(&[])], t0, t1, |_| false));
        // A later one: slot 0 keeps bucket 5 (a connection); slot 1 takes UDP and waits.
        let t2 = t1 + Duration::from_millis(1);
        assert!(drains.settle(&[bitmap(&[5]), bitmap(&[])], t2, t2, |slot| slot == 1));
        assert_eq!(drains.bitmap(0), bitmap(&[5]));
        assert_eq!(drains.bitmap(1).len(), usize::from(BUCKETS));
        let later = t2 + UDP_DRAIN;
        assert!(drains.settle(&[bitmap(&[5]), bitmap(&[7])], later, later, |s| s == 1));
        assert_eq!(drains.bitmap(1), bitmap(&[7]));
        assert!(drains.any());

        // Claimed again: owned, not draining; released: draining, not applied yet.
        drains.owned_changed(0, &bitmap(&[]), &bitmap(&[5, 6]), true);
        assert!(drains.bitmap(0).is_empty());
        drains.owned_changed(0, &bitmap(&[5, 6]), &bitmap(&[6]), true);
        assert_eq!(drains.bitmap(0), bitmap(&[5]));
        assert!(!drains.settle(&[bitmap(&[]), bitmap(&[7])], later, later, |_| false));
        // Stopped: the slot keeps no connections, so nothing drains.
        drains.owned_changed(1, &bitmap(&[]), &bitmap(&[]), false);
        assert!(drains.bitmap(1).is_empty());
    }
}

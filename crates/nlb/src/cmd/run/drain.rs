//! Buckets in hand-off on their old owner: **draining**.
//!
//! The `netdev` stage drops a bucket this host does not own before conntrack
//! ([`nlb_linux::ruleset`]). A bucket it released is not dropped at once: it *drains*
//! (`jump draining_<rule>` in the rule's map): its packets still reach conntrack, so this
//! host's connections in it go on, while new flows in it are dropped (a TCP SYN at
//! netdev, a new UDP flow after conntrack). Releasing a bucket into draining is a
//! release: the ordering contract treats it as one.
//!
//! How the daemon knows a bucket has drained: off the protocol loop, a worker
//! ([`crate::kernel::Job::LiveBuckets`], its own, so that a slow count never delays an
//! ownership change) reads three things, and puts each connection it finds into its
//! rule slot and bucket with [`nlb_core::filter::decide`], the one packet decision
//! (one function for all of them, `live_flow` in `kernel.rs`):
//!
//! - **conntrack's entries** whose original destination is a VIP (`conntrack -L -f ipv4
//!   --orig-dst <VIP>`, streamed: per bucket a bit, no entry kept, at most
//!   16 Mi lines per VIP): every TCP entry but those that are over (`TIME_WAIT`,
//!   `CLOSE`) and every UDP entry, whatever serves it, a socket or a service behind
//!   DNAT (the original tuple is the client's and the VIP's, whatever DNAT made of the
//!   reply). These keep their bucket however long they are idle, as long as conntrack
//!   keeps them, as on `main`, where a released bucket's packets always reached
//!   conntrack;
//! - this host's TCP sockets on the VIPs, from `ss` (all states in which the peer may
//!   still send): a socket whose conntrack entry is gone (idle past conntrack's TCP
//!   timeout) still keeps its bucket;
//! - the kernel's **`recent` set** (in the `inet` table, [`nlb_linux::ruleset`]): a
//!   draining bucket is in it, with a timeout of `[host] drain_idle_ms`, from the
//!   transaction that releases it, and each packet of it that conntrack finds
//!   established restarts that timeout. With conntrack's entries counted it adds no
//!   connection (a packet conntrack finds established has an entry, which the count
//!   lists), only up to `drain_idle_ms` of draining after the last packet; it is what
//!   keeps a non-socket connection's bucket when the `conntrack` tool is missing.
//!
//! A bucket leaves draining when a count that started after the kernel began draining
//! it (when the apply that made it draining had completed, so its `recent` element was
//! in and no new connection could start in it any more) finds it in none of them.
//!
//! Limits: without the `conntrack` tool (Debian package `conntrack`; the daemon says so
//! once in its log, and `nlb query --json` shows `drain_sources` without `conntrack`),
//! a connection that is not a socket of this host (behind DNAT, or UDP) and sends
//! nothing for `drain_idle_ms` loses its bucket, and then its packets are dropped at
//! netdev. If `ss`, `nft` or `conntrack` fails, prints a line it cannot read, or lists
//! more than the bound, nothing leaves draining (it costs conntrack work, not
//! connections).
//!
//! At start-up and after a reload that rejoins, every bucket of every rule drains: a
//! restarted daemon's host keeps the connections it has, and the first count lets go of
//! the buckets that hold none.

use nlb_core::buckets::BUCKETS;
use nlb_wire::bitmap::BucketBitmap;
use std::collections::BTreeMap;
use std::time::Instant;

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

    /// A count that started at `started` found the `live` buckets (conntrack entries,
    /// sockets, or in `recent`): the others that drained since before then are done. True if any
    /// bucket left.
    pub(super) fn settle(&mut self, live: &[BucketBitmap], started: Instant) -> bool {
        let mut changed = false;
        for (slot, draining) in self.slots.iter_mut().enumerate() {
            let Some(live) = live.get(slot) else {
                continue;
            };
            draining.retain(|&bucket, since| {
                let done = since.is_some_and(|since| since <= started && !live.contains(bucket));
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
    use std::time::Duration;

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
        assert!(!drains.settle(&[bitmap(&[]), bitmap(&[])], t0));
        let mut applied = vec![RuleState::empty(true), RuleState::empty(true)];
        applied[0].draining = drains.bitmap(0);
        applied[1].draining = drains.bitmap(1);
        let t1 = t0 + Duration::from_millis(1);
        drains.applied(&applied, t1);
        // A count that started before the kernel drained them says nothing about them.
        assert!(!drains.settle(&[bitmap(&[]), bitmap(&[])], t0));
        // A later one: slot 0 keeps bucket 5 (a socket, or recent), slot 1 all of them.
        let t2 = t1 + Duration::from_millis(1);
        let all = drains.bitmap(1);
        assert!(drains.settle(&[bitmap(&[5]), all], t2));
        assert_eq!(drains.bitmap(0), bitmap(&[5]));
        assert_eq!(drains.bitmap(1).len(), usize::from(BUCKETS));
        let later = t2 + Duration::from_millis(1);
        assert!(drains.settle(&[bitmap(&[5]), bitmap(&[7])], later));
        assert_eq!(drains.bitmap(1), bitmap(&[7]));
        assert!(drains.any());

        // Claimed again: owned, not draining; released: draining, not applied yet.
        drains.owned_changed(0, &bitmap(&[]), &bitmap(&[5, 6]), true);
        assert!(drains.bitmap(0).is_empty());
        drains.owned_changed(0, &bitmap(&[5, 6]), &bitmap(&[6]), true);
        assert_eq!(drains.bitmap(0), bitmap(&[5]));
        assert!(!drains.settle(&[bitmap(&[]), bitmap(&[7])], later));
        // Stopped: the slot keeps no connections, so nothing drains.
        drains.owned_changed(1, &bitmap(&[]), &bitmap(&[]), false);
        assert!(drains.bitmap(1).is_empty());
    }
}

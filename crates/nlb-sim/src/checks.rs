//! The safety property and its record: no two hosts whose kernels run accept new
//! connections for one bucket of one rule.
//!
//! [`Sim::run_until`] checks the data planes after every step that changed one
//! (`check_safety`), and a SYN that two hosts accept is recorded as well, with the
//! flow (see `crate::flows`). Tests assert there are no violations, or, across a
//! partition, that none lasts.

use crate::Sim;
use nlb_core::buckets::BUCKETS;
use nlb_core::time::Instant;
use std::collections::BTreeMap;

/// A safety violation: two hosts accept new connections for one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// When.
    pub at: Instant,
    /// Rule slot.
    pub slot: usize,
    /// Bucket.
    pub bucket: u16,
    /// The hosts (indices) that both accept it.
    pub hosts: Vec<usize>,
    /// Whether a partition was in force.
    pub partitioned: bool,
    /// The flow whose SYN the hosts all accepted, if the violation was seen that way
    /// (its slot and bucket are then the flow's); `None` when the data planes overlap.
    pub flow: Option<u64>,
}

impl Sim {
    pub(crate) fn check_safety(&mut self) {
        if !std::mem::take(&mut self.dataplane_dirty) {
            return;
        }
        let now = self.now;
        let slots = self.hosts.first().map_or(0, |h| h.dataplane.owned.len());
        for slot in 0..slots {
            let mut holders: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
            for (index, host) in self.hosts.iter().enumerate() {
                if !host.kernel_up {
                    continue;
                }
                if let Some(owned) = host.dataplane.effective_owned(now, slot) {
                    for bucket in owned.iter() {
                        holders.entry(bucket).or_default().push(index);
                    }
                }
            }
            for (bucket, hosts) in holders {
                if hosts.len() > 1 {
                    self.violations.push(Violation {
                        at: now,
                        slot,
                        bucket,
                        hosts,
                        partitioned: !self.blocked.is_empty(),
                        flow: None,
                    });
                }
            }
        }
    }

    /// For each rule slot, the buckets no running host accepts.
    pub fn unowned_buckets(&self, slot: usize) -> usize {
        let now = self.now;
        (0..BUCKETS)
            .filter(|&bucket| {
                !self.hosts.iter().any(|h| {
                    h.kernel_up
                        && h.dataplane
                            .effective_owned(now, slot)
                            .is_some_and(|owned| owned.contains(bucket))
                })
            })
            .count()
    }
}

//! Bit sets the cluster shares: host ids ([`MemberSet`]) and buckets ([`BucketBitmap`]).
//!
//! The heartbeat carries both on the wire; the core's views and ownership, the kernel
//! ruleset and the simulator use the same types, so that a bucket set means one thing
//! from the frame to the nft set.

use crate::{Error, Result};
use std::fmt;

/// Highest host id; ids are 1..=64 so that a member set fits in a `u64`.
pub const MAX_HOST_ID: u8 = 64;
/// Most buckets a rule can have.
pub const MAX_BUCKETS: u16 = 4096;

/// A set of host ids 1..=64, bit `h - 1` for host `h`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MemberSet(pub u64);

impl MemberSet {
    /// No hosts.
    pub const EMPTY: MemberSet = MemberSet(0);

    /// Whether `host` (1..=64) is in the set. Ids outside 1..=64 never are.
    pub const fn contains(self, host: u8) -> bool {
        host >= 1 && host <= MAX_HOST_ID && self.0 & (1 << (host - 1)) != 0
    }

    /// Adds `host`; ids outside 1..=64 are ignored.
    pub fn insert(&mut self, host: u8) {
        if (1..=MAX_HOST_ID).contains(&host) {
            self.0 |= 1 << (host - 1);
        }
    }

    /// Removes `host`.
    pub fn remove(&mut self, host: u8) {
        if (1..=MAX_HOST_ID).contains(&host) {
            self.0 &= !(1 << (host - 1));
        }
    }

    /// Number of hosts.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Host ids in increasing order.
    pub fn iter(self) -> impl Iterator<Item = u8> {
        (1..=MAX_HOST_ID).filter(move |&host| self.contains(host))
    }
}

impl FromIterator<u8> for MemberSet {
    fn from_iter<I: IntoIterator<Item = u8>>(iter: I) -> Self {
        let mut set = MemberSet::EMPTY;
        for host in iter {
            set.insert(host);
        }
        set
    }
}

impl fmt::Debug for MemberSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A set of buckets `0..count`, as carried in a rule record.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct BucketBitmap {
    count: u16,
    bytes: Vec<u8>,
}

impl BucketBitmap {
    /// An empty set over `count` buckets (at most [`MAX_BUCKETS`]; larger counts are
    /// clamped).
    pub fn new(count: u16) -> Self {
        let count = count.min(MAX_BUCKETS);
        BucketBitmap {
            count,
            bytes: vec![0; bitmap_len(count)],
        }
    }

    /// The number of buckets the set ranges over.
    pub const fn bucket_count(&self) -> u16 {
        self.count
    }

    /// Whether `bucket` is in the set.
    pub fn contains(&self, bucket: u16) -> bool {
        bucket < self.count && self.bytes[usize::from(bucket / 8)] & (1 << (bucket % 8)) != 0
    }

    /// Adds `bucket`; buckets outside `0..count` are ignored.
    pub fn insert(&mut self, bucket: u16) {
        if bucket < self.count {
            self.bytes[usize::from(bucket / 8)] |= 1 << (bucket % 8);
        }
    }

    /// Removes `bucket`; buckets outside `0..count` are ignored.
    pub fn remove(&mut self, bucket: u16) {
        if bucket < self.count {
            self.bytes[usize::from(bucket / 8)] &= !(1 << (bucket % 8));
        }
    }

    /// Buckets in the set, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.count).filter(|&bucket| self.contains(bucket))
    }

    /// The set as runs of consecutive buckets, `(first, last)` inclusive, in order.
    pub fn ranges(&self) -> Vec<(u16, u16)> {
        let mut ranges: Vec<(u16, u16)> = Vec::new();
        for bucket in self.iter() {
            match ranges.last_mut() {
                Some((_, last)) if *last + 1 == bucket => *last = bucket,
                _ => ranges.push((bucket, bucket)),
            }
        }
        ranges
    }

    /// The set as text, as nft writes it: `0-85, 100, 200-210`.
    pub fn ranges_text(&self) -> String {
        self.ranges()
            .iter()
            .map(|&(first, last)| {
                if first == last {
                    first.to_string()
                } else {
                    format!("{first}-{last}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Number of buckets in the set.
    pub fn len(&self) -> usize {
        self.bytes
            .iter()
            .map(|byte| byte.count_ones() as usize)
            .sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.iter().all(|&byte| byte == 0)
    }

    /// The wire bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Reads a bitmap from wire bytes, rejecting bits set beyond `count`, which an
    /// honest sender never writes.
    pub(crate) fn from_wire(count: u16, bytes: &[u8]) -> Result<Self> {
        if !count.is_multiple_of(8) {
            let last = bytes[bytes.len() - 1];
            if last >> (count % 8) != 0 {
                return Err(Error::Malformed(
                    "bucket bitmap has bits beyond the bucket count",
                ));
            }
        }
        Ok(BucketBitmap {
            count,
            bytes: bytes.to_vec(),
        })
    }
}

impl fmt::Debug for BucketBitmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BucketBitmap({}/{})", self.len(), self.count)
    }
}

pub(crate) fn bitmap_len(count: u16) -> usize {
    usize::from(count).div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::BucketBitmap;

    #[test]
    fn buckets_come_and_go_and_out_of_range_ones_are_ignored() {
        let mut bitmap = BucketBitmap::new(256);
        bitmap.insert(7);
        bitmap.insert(8);
        bitmap.insert(300);
        assert_eq!(bitmap.iter().collect::<Vec<_>>(), vec![7, 8]);
        bitmap.remove(7);
        bitmap.remove(300);
        assert_eq!(bitmap.iter().collect::<Vec<_>>(), vec![8]);
        bitmap.remove(8);
        assert!(bitmap.is_empty());
    }
}

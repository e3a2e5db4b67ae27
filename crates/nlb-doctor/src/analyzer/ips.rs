//! The per-IP table of the ARP analysis: what is known about each IP (per VLAN), split in
//! two by how often it is touched.
//!
//! The contract: an IP has one slot, given on first sight, in the order IPs are first
//! seen (the addresses of a sweep are neighbours in memory), and never taken back; its
//! state is `hot[slot]` and `cold[slot]`. [`IpHot`] holds what every request and reply
//! for the IP reads or writes (the askers, the owner and when it last spoke, whether
//! requests are waiting), in two cache lines; [`IpCold`] holds the rest (the MAC before
//! the owner, the waiting requests' first frame and askers, probes), read when something
//! changes. On a busy network the table is far larger than the caches, so every frame
//! costs the lines it touches: before the split, a state was four of them.
//!
//! The map from IP to slot holds the IP's `unanswered_request` record too: a request for
//! an IP that went unanswered then loads the state and the record at once, not the
//! record after the state (both miss the caches on a network with thousands of dead
//! addresses).
//!
//! At most `max` slots are given ([`Settings::max_tracked`](super::Settings)), and never
//! more than 2^32 (slots are 32 bits).

use crate::model::Kept;
use nlb_wire::MacAddr;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;

/// Askers remembered per requested IP, for matching replies.
pub(super) const ASKER_SLOTS: usize = 8;

/// Where an IP's requests stand since it last answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Episode {
    /// None waiting.
    #[default]
    Closed,
    /// Requests are waiting, the reply timeout has not passed (details in
    /// [`IpCold::waiting`]).
    Waiting,
    /// The timeout passed: the episode is raised in the IP's `unanswered_request` record
    /// ([`Tracked::unanswered`]), which counts its further requests.
    Raised,
}

/// The part of an IP's state that every request and reply for it touches: two cache
/// lines, the first read by every frame (askers' IPs, owner, episode), the second written
/// by every request (askers' times). `repr(C)` keeps the fields in this order.
#[derive(Debug, Clone, Default)]
#[repr(C, align(64))]
pub(super) struct IpHot {
    /// Recent requests for this IP: asker IPs (here) and times (`asker_ts`), one slot per
    /// asker; the first `asker_len` slots are in use. A reply nobody asked for reads the
    /// IPs alone.
    asker_ips: [u32; ASKER_SLOTS],
    /// When `owner` last claimed the IP.
    pub(super) owner_last_ts: i64,
    /// When the current episode began (unless it is closed).
    pub(super) episode_ts: i64,
    pub(super) owner: Option<MacAddr>,
    asker_next: u8,
    asker_len: u8,
    pub(super) episode: Episode,
    /// Some MAC probed for the IP ([`IpCold::last_probe`] says which, and when).
    pub(super) probed: bool,
    asker_ts: [i64; ASKER_SLOTS],
}

// The layout above is the point of the split.
const _: () = assert!(std::mem::size_of::<IpHot>() == 128);
const _: () = assert!(std::mem::size_of::<(u64, Tracked)>() == 16);

impl IpHot {
    /// Remembers that `asker` asked for this IP at `ts`: its own slot if it has one,
    /// else a free one, else the oldest.
    pub(super) fn note_asker(&mut self, asker: Ipv4Addr, ts: i64) {
        let asker = u32::from(asker);
        let used = usize::from(self.asker_len);
        let slot = if let Some(slot) = self.asker_ips[..used].iter().position(|&ip| ip == asker) {
            slot
        } else if used < ASKER_SLOTS {
            self.asker_len += 1;
            used
        } else {
            self.asker_next = self.asker_next.wrapping_add(1);
            usize::from(self.asker_next.wrapping_sub(1)) % ASKER_SLOTS
        };
        self.asker_ips[slot] = asker;
        self.asker_ts[slot] = ts;
    }

    /// Whether `target` (a reply's target IP) asked for this IP within `memory` of
    /// `now`. Only a matching asker's time is read.
    pub(super) fn was_asked(&self, target: Ipv4Addr, now: i64, memory: i64) -> bool {
        let used = usize::from(self.asker_len);
        let target = u32::from(target);
        (self.asker_ips[..used].iter().zip(&self.asker_ts[..used]))
            .any(|(&asker, &ts)| asker == target && now - ts <= memory)
    }
}

/// The waiting requests of an episode, for raising it once its timeout passes.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Waiting {
    pub(super) first_frame: u64,
    pub(super) last_frame: u64,
    pub(super) last_ts: i64,
    pub(super) requests: u32,
    pub(super) asker_ip: u32,
    pub(super) asker_mac: MacAddr,
}

/// The part of an IP's state read when something changes.
#[derive(Debug, Clone, Default)]
pub(super) struct IpCold {
    /// Its [`ip_key`](super::ip_key).
    pub(super) key: u64,
    /// The MAC before `owner`, for A → B → A.
    pub(super) previous: Option<MacAddr>,
    /// `owner` took the IP over with a gratuitous ARP: not a duplicate unless `previous`
    /// claims it again.
    pub(super) takeover: bool,
    /// The current episode's requests while it is [`Episode::Waiting`].
    pub(super) waiting: Waiting,
    /// The `unexpected_reply` record of this IP and a MAC, the latest one to make one.
    pub(super) unexpected: Option<(MacAddr, Kept)>,
    /// The latest probe for the IP (set with [`IpHot::probed`]).
    pub(super) last_probe: Option<(MacAddr, i64)>,
}

/// Hashes [`ip_key`](super::ip_key)s so that the 64 addresses of an aligned block (one
/// VLAN, `a.b.c.0/26` and so on) land in 64 neighbouring buckets: a sweep (a scan, a
/// storm) then reads a few cache lines of the map, not one per address. The block itself
/// is placed by a seeded hash, as any key, so what the addresses are decides nothing
/// else. (Std's map takes a key's bucket from the hash's low bits and a tag to tell keys
/// apart from its top seven: the offset in the block goes into the low bits as it is,
/// and spread into the top ones.)
#[derive(Clone, Default)]
struct BlockHash(foldhash::fast::RandomState);

impl BuildHasher for BlockHash {
    type Hasher = BlockHasher;
    fn build_hasher(&self) -> BlockHasher {
        BlockHasher {
            block: self.0.build_hasher(),
            offset: 0,
        }
    }
}

struct BlockHasher {
    block: foldhash::fast::FoldHasher<'static>,
    offset: u64,
}

impl Hasher for BlockHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.block.write(bytes);
    }

    fn write_u64(&mut self, key: u64) {
        self.block.write_u64(key >> 6);
        self.offset = key & 63;
    }

    fn finish(&self) -> u64 {
        let spread = self.offset.wrapping_mul(0x9e37_79b9_7f4a_7c15) & (0x7f << 57);
        self.block.finish() ^ self.offset ^ spread
    }
}

/// What the map holds for a tracked IP.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tracked {
    pub(super) slot: u32,
    /// This IP's `unanswered_request` record, once it has one: episodes after the first
    /// find it without a lookup by identity.
    pub(super) unanswered: Option<Kept>,
}

/// The table: slots by [`ip_key`](super::ip_key), and the states.
#[derive(Default)]
pub(super) struct IpTable {
    /// The map's entries are small (16 bytes), so it stays in cache with tens of
    /// thousands of addresses.
    slots: HashMap<u64, Tracked, BlockHash>,
    pub(super) hot: Vec<IpHot>,
    pub(super) cold: Vec<IpCold>,
}

impl IpTable {
    /// The slot of IP `key`, if it is tracked.
    pub(super) fn slot(&self, key: u64) -> Option<u32> {
        self.slots.get(&key).map(|tracked| tracked.slot)
    }

    /// IP `key`'s slot and record, if it is tracked.
    pub(super) fn tracked_mut(&mut self, key: u64) -> Option<&mut Tracked> {
        self.slots.get_mut(&key)
    }

    /// The slots and records of every tracked IP, in no particular order.
    pub(super) fn all(&self) -> impl Iterator<Item = &Tracked> {
        self.slots.values()
    }

    /// IP `key`'s slot and record, given a slot on first sight unless `max` slots are
    /// given already (then `None`).
    pub(super) fn tracked_or_new(&mut self, key: u64, max: usize) -> Option<Tracked> {
        // Slots are 32 bits: no memory holds 2^32 states anyway.
        let full = self.slots.len() >= max.min(u32::MAX as usize);
        match self.slots.entry(key) {
            Entry::Occupied(entry) => Some(*entry.get()),
            Entry::Vacant(_) if full => None,
            Entry::Vacant(entry) => {
                // Not full, so it fits.
                let slot = self.hot.len() as u32;
                self.hot.push(IpHot::default());
                self.cold.push(IpCold {
                    key,
                    ..IpCold::default()
                });
                let tracked = Tracked {
                    slot,
                    unanswered: None,
                };
                Some(*entry.insert(tracked))
            }
        }
    }
}

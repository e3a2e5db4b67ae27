//! Heartbeat authentication and anti-replay.
//!
//! # Threat model
//!
//! An attacker on the segment can send any frame with any Ethernet source, and can
//! capture and re-send any heartbeat.
//!
//! - **With a cluster key** (every host has the same `key_file`), a receiver accepts a
//!   heartbeat only if its tag is right ([`Error::BadTag`](crate::Error::BadTag)). The tag covers the sender's
//!   MAC, so a captured heartbeat re-sent under another source MAC fails
//!   ([`Error::Malformed`](crate::Error::Malformed): MAC and Ethernet source differ) or fails the tag. Re-sent
//!   under its own MAC it is not newer than what the receiver accepted ([`AntiReplay`]).
//!   And a heartbeat counts as a sign of life only while it echoes the receiver's own
//!   incarnation and a sequence the receiver sent within its failure window (nlb-core's
//!   node documents the rule): a capture older than the window, replayed to a receiver
//!   that restarted or forgot the sender, proves nothing, so a dead host cannot be kept
//!   alive and a live one cannot be evicted by replays. What remains to an attacker
//!   without the key: dropping or delaying frames (as any switch could); flooding, which
//!   costs the receivers a counted drop per frame and no state; and, against availability
//!   only, replaying a dead host's old heartbeats to a receiver that forgot it (which
//!   then leaves that host's old buckets alone while the replays last) or sending bad
//!   tags to a host that never joined (which then waits, reporting a key mismatch).
//! - **Without a key** (`insecure_no_key = true`), a receiver checks only the format and
//!   the configuration: it accepts any well-formed heartbeat, so anyone on the segment can
//!   pose as a host, claim buckets and split the cluster. It still never panics, never
//!   grows its state beyond its caps, and logs a flood as counted drops. Use a key.

use super::TAG_LEN;
use std::fmt;

/// The shared cluster secret, as a BLAKE3 key.
#[derive(Clone, PartialEq, Eq)]
pub struct HeartbeatKey([u8; 32]);

impl HeartbeatKey {
    /// Derives the key from the contents of the cluster key file. Any length works;
    /// BLAKE3's key derivation spreads it over 32 bytes.
    pub fn derive(secret: &[u8]) -> Self {
        HeartbeatKey(blake3::derive_key("nlb heartbeat key v2", secret))
    }

    pub(super) fn tag(&self, covered: &[u8]) -> [u8; TAG_LEN] {
        let hash = blake3::keyed_hash(&self.0, covered);
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&hash.as_bytes()[..TAG_LEN]);
        tag
    }
}

impl fmt::Debug for HeartbeatKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeartbeatKey(..)")
    }
}

/// Compares tags without an early exit, so that timing does not reveal how many leading
/// bytes of a forged tag were right.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why [`AntiReplay::check`] rejected a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// The newest (incarnation, sequence) accepted before.
    pub newest: (u32, u64),
    /// The pair the rejected frame carried.
    pub got: (u32, u64),
}

/// Replay protection for one sender: accepts only (incarnation, sequence) pairs that are
/// strictly newer, in lexicographic order, than the newest accepted so far. A restarted
/// daemon starts a higher incarnation, so its sequence may start again from zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AntiReplay {
    newest: Option<(u32, u64)>,
}

impl AntiReplay {
    /// Accepts and records `(incarnation, sequence)` if it is newer than anything seen,
    /// otherwise rejects it and changes nothing.
    pub fn check(&mut self, incarnation: u32, sequence: u64) -> core::result::Result<(), Replayed> {
        let got = (incarnation, sequence);
        match self.newest {
            Some(newest) if got <= newest => Err(Replayed { newest, got }),
            _ => {
                self.newest = Some(got);
                Ok(())
            }
        }
    }

    /// The newest pair accepted so far.
    pub const fn newest(&self) -> Option<(u32, u64)> {
        self.newest
    }
}

//! The nlb heartbeat, format version 2 (this module also reads version 1, so that the
//! doctor can explain old captures; a daemon drops version 1 and counts it).
//!
//! Every host sends one heartbeat per period to the cluster (EtherType
//! [`ETHERTYPE_NLB_HEARTBEAT`](crate::ethernet::ETHERTYPE_NLB_HEARTBEAT), 0x88B5, by
//! default). It says who the sender is, what it believes, which buckets its view assigns
//! it, which of those it accepts new connections for, and, for every host it hears, the
//! newest heartbeat it accepted from it (an *echo*). The convergence protocol needs
//! nothing else: a host takes a bucket only when every member of its view has announced
//! that view and no peer's latest heartbeat lists the bucket.
//!
//! All integers are big-endian. Sizes in bytes.
//!
//! ```text
//! off len field
//!   0   2 magic "NL" (0x4e 0x4c)
//!   2   1 version = 2
//!   3   1 flags: bit 0 AUTHENTICATED (a 16-byte tag ends the frame); other bits 0
//!   4   4 cluster id (addressing::cluster_id of the VIPs)
//!   8   1 host id, 1..=64
//!   9   1 host state (HostState::code)
//!  10   1 rule count, 0..=32
//!  11   1 echo count, 0..=64 (version 1: reserved, 0)
//!  12   4 incarnation: grows with every daemon start, even if the clock steps back
//!  16   8 sequence: grows with every heartbeat of one incarnation
//!  24   8 fingerprint of the cluster-wide configuration
//!  32   4 epoch of the view the sender operates under
//!  36   2 the sender's heartbeat period in ms
//!  38   2 reserved: sent as 0, ignored
//!  40   8 members of that view (bit h-1 = host h)
//!  48   8 members the sender hears now, itself included
//!  56   4 open connections on the sender (saturating)
//!  60  24 digests of the cluster-wide configuration, one byte per field, so that a
//!         host whose fingerprint differs can name the field (see nlb-core's config)
//!  84   6 the sender's MAC: must equal the Ethernet source (version 2 only)
//!  90   2 reserved: sent as 0, ignored (version 2 only)
//!  92     echo records, `echo count` of them (version 2 only), 16 bytes each:
//!           0 1 host id 1..=64
//!           1 3 reserved: sent as 0, ignored
//!           4 4 incarnation   of the newest heartbeat the sender accepted from
//!           8 8 sequence      that host
//!   …     rule records, `rule count` of them:
//!           0 1 load weight 0..=100, or 255 for "equal"
//!           1 1 handling priority 1..=64, or 0 for none
//!           2 1 flags: bit 0 enabled, bit 1 draining; other bits 0
//!           3 1 health: bit 0 CHECK_DOWN (a health check that guards the rule is
//!               down on the sender); other bits sent as 0, ignored. Older releases
//!               send 0 here and ignore the byte, so they take every host as healthy
//!               (nlb-core's node/health.rs says what that costs a mixed cluster)
//!           4 2 bucket count, 0..=4096
//!           6 n owned-bucket bitmap, n = ceil(bucket count / 8); bucket b is bit
//!               (b % 8) of byte (b / 8), least significant bit first: the buckets the
//!               sender accepts new connections for now
//!         6+n n target bitmap, same layout: the buckets the sender's view assigns it.
//!               Owned is always a subset of target.
//!   …  16 tag, if AUTHENTICATED: keyed BLAKE3 of every byte before it (the sender's
//!         MAC included), cut to 16 bytes
//! ```
//!
//! Version 1 is the same up to offset 84, where its rule records begin; it has no MAC,
//! no echoes, and its tag covers the payload alone.
//!
//! Authentication and anti-replay, and the threat model they answer, are in [`auth`];
//! the bucket bitmap and member set the frame carries are shared with the core, the
//! kernel ruleset and the simulator, and live in [`crate::bitmap`].
//!
//! Trailing bytes after the frame's computed length (Ethernet padding) are ignored and not
//! covered by the tag.

pub mod auth;
mod packet;
mod repr;

pub use crate::bitmap::{BucketBitmap, MAX_BUCKETS, MAX_HOST_ID, MemberSet};
pub use auth::{AntiReplay, HeartbeatKey, Replayed};
pub use packet::HeartbeatPacket;
pub use repr::{Echo, HeartbeatRepr};

use crate::bitmap::bitmap_len;
use std::fmt;

/// The two magic bytes, "NL".
pub const MAGIC: [u8; 2] = *b"NL";
/// The format version this module writes.
pub const VERSION: u8 = 2;
/// The older version this module still reads, for captures.
pub const VERSION_1: u8 = 1;
/// Bytes before the first echo record (version 2).
pub const HEADER_LEN: usize = 92;
/// Bytes before the first rule record of a version 1 heartbeat.
pub const HEADER_LEN_V1: usize = 84;
/// Bytes of an echo record.
pub const ECHO_LEN: usize = 16;
/// Most echo records a heartbeat can carry: one per host id.
pub const MAX_ECHOES: usize = 64;
/// Bytes of per-field configuration digests.
pub const FIELD_DIGESTS_LEN: usize = 24;
/// Bytes of a rule record before its bitmap.
pub const RULE_HEADER_LEN: usize = 6;
/// Bytes of the authentication tag.
pub const TAG_LEN: usize = 16;
/// Most rules a heartbeat can describe.
pub const MAX_RULES: usize = 32;
/// Wire value of an "equal" load weight.
pub const WEIGHT_EQUAL: u8 = 255;

const FLAG_AUTHENTICATED: u8 = 0x01;
const RULE_ENABLED: u8 = 0x01;
const RULE_DRAINING: u8 = 0x02;
const HEALTH_CHECK_DOWN: u8 = 0x01;

mod field {
    use std::ops::Range;
    pub(super) const MAGIC: Range<usize> = 0..2;
    pub(super) const VERSION: usize = 2;
    pub(super) const FLAGS: usize = 3;
    pub(super) const CLUSTER_ID: Range<usize> = 4..8;
    pub(super) const HOST_ID: usize = 8;
    pub(super) const STATE: usize = 9;
    pub(super) const RULE_COUNT: usize = 10;
    pub(super) const ECHO_COUNT: usize = 11;
    pub(super) const INCARNATION: Range<usize> = 12..16;
    pub(super) const SEQUENCE: Range<usize> = 16..24;
    pub(super) const FINGERPRINT: Range<usize> = 24..32;
    pub(super) const VIEW_EPOCH: Range<usize> = 32..36;
    pub(super) const PERIOD_MS: Range<usize> = 36..38;
    pub(super) const VIEW_MEMBERS: Range<usize> = 40..48;
    pub(super) const LIVE_MEMBERS: Range<usize> = 48..56;
    pub(super) const CONNECTIONS: Range<usize> = 56..60;
    pub(super) const FIELD_DIGESTS: Range<usize> = 60..84;
    pub(super) const SENDER_MAC: Range<usize> = 84..90;
}

/// A host's state, as named to operators and carried in heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    /// In the cluster, but the view is not yet agreed or buckets are in hand-off.
    Converging,
    /// In the agreed view and holding its buckets.
    Converged,
    /// No new connections; existing ones finish, then the host stops.
    Draining,
    /// Not in the cluster. Sends heartbeats so that peers know why.
    Stopped,
    /// All cluster operations halted until resume.
    Suspended,
    /// Its cluster-wide configuration differs from its peers'; it owns nothing.
    Misconfigured,
}

impl HostState {
    /// Every state, in wire-code order.
    pub const ALL: [HostState; 6] = [
        HostState::Converging,
        HostState::Converged,
        HostState::Draining,
        HostState::Stopped,
        HostState::Suspended,
        HostState::Misconfigured,
    ];

    /// The byte on the wire.
    pub const fn code(self) -> u8 {
        match self {
            HostState::Converging => 1,
            HostState::Converged => 2,
            HostState::Draining => 3,
            HostState::Stopped => 4,
            HostState::Suspended => 5,
            HostState::Misconfigured => 6,
        }
    }

    /// The state for a wire byte.
    pub fn from_code(code: u8) -> Option<HostState> {
        HostState::ALL
            .into_iter()
            .find(|state| state.code() == code)
    }

    /// The lowercase name operators see.
    pub const fn name(self) -> &'static str {
        match self {
            HostState::Converging => "converging",
            HostState::Converged => "converged",
            HostState::Draining => "draining",
            HostState::Stopped => "stopped",
            HostState::Suspended => "suspended",
            HostState::Misconfigured => "misconfigured",
        }
    }
}

impl fmt::Display for HostState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One rule's state as its sender sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleStatus {
    /// Load weight 0..=100, or `None` for "equal".
    pub weight: Option<u8>,
    /// Handling priority 1..=64 for single-host rules, `None` otherwise.
    pub priority: Option<u8>,
    /// Whether the rule is enabled on the sender.
    pub enabled: bool,
    /// Whether the sender drains the rule: no new connections.
    pub draining: bool,
    /// Whether a health check that guards the rule is down on the sender: it takes no
    /// share of the rule, unless the check is down on every eligible member (then the
    /// cluster ignores it rather than black-hole the rule; nlb-core's node states the
    /// rule).
    pub check_down: bool,
    /// Buckets the sender accepts new connections for now; a subset of `target`.
    pub owned: BucketBitmap,
    /// Buckets the sender's view assigns it. Same bucket count as `owned`.
    pub target: BucketBitmap,
}

impl RuleStatus {
    pub(super) fn wire_len(&self) -> usize {
        RULE_HEADER_LEN + 2 * bitmap_len(self.owned.bucket_count())
    }
}

#[cfg(test)]
mod tests;

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
//!           3 1 reserved: sent as 0, ignored
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
//! # Threat model
//!
//! An attacker on the segment can send any frame with any Ethernet source, and can
//! capture and re-send any heartbeat.
//!
//! - **With a cluster key** (every host has the same `key_file`), a receiver accepts a
//!   heartbeat only if its tag is right ([`Error::BadTag`]). The tag covers the sender's
//!   MAC, so a captured heartbeat re-sent under another source MAC fails
//!   ([`Error::Malformed`]: MAC and Ethernet source differ) or fails the tag. Re-sent
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
//!
//! Trailing bytes after the frame's computed length (Ethernet padding) are ignored and not
//! covered by the tag.

use crate::ethernet::EthernetRepr;
use crate::{Error, MacAddr, Result, check_len};
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
/// Most buckets a rule can have.
pub const MAX_BUCKETS: u16 = 4096;
/// Highest host id; ids are 1..=64 so that a member set fits in a `u64`.
pub const MAX_HOST_ID: u8 = 64;
/// Wire value of an "equal" load weight.
pub const WEIGHT_EQUAL: u8 = 255;

const FLAG_AUTHENTICATED: u8 = 0x01;
const RULE_ENABLED: u8 = 0x01;
const RULE_DRAINING: u8 = 0x02;

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
    fn from_wire(count: u16, bytes: &[u8]) -> Result<Self> {
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

fn bitmap_len(count: u16) -> usize {
    usize::from(count).div_ceil(8)
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
    /// Buckets the sender accepts new connections for now; a subset of `target`.
    pub owned: BucketBitmap,
    /// Buckets the sender's view assigns it. Same bucket count as `owned`.
    pub target: BucketBitmap,
}

impl RuleStatus {
    fn wire_len(&self) -> usize {
        RULE_HEADER_LEN + 2 * bitmap_len(self.owned.bucket_count())
    }
}

/// The shared cluster secret, as a BLAKE3 key.
#[derive(Clone, PartialEq, Eq)]
pub struct HeartbeatKey([u8; 32]);

impl HeartbeatKey {
    /// Derives the key from the contents of the cluster key file. Any length works;
    /// BLAKE3's key derivation spreads it over 32 bytes.
    pub fn derive(secret: &[u8]) -> Self {
        HeartbeatKey(blake3::derive_key("nlb heartbeat key v2", secret))
    }

    fn tag(&self, covered: &[u8]) -> [u8; TAG_LEN] {
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

/// A view of a heartbeat in a buffer.
#[derive(Debug, Clone)]
pub struct HeartbeatPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HeartbeatPacket<T> {
    /// Wraps a buffer without checks. Accessors may panic unless the buffer was sized by
    /// [`HeartbeatRepr::buffer_len`] and written by [`HeartbeatRepr::emit`].
    pub const fn new_unchecked(buffer: T) -> Self {
        HeartbeatPacket { buffer }
    }

    /// Wraps a buffer after checking the magic, the version and that every rule record
    /// and the tag fit. After this succeeds, no accessor panics.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = HeartbeatPacket { buffer };
        packet.check()?;
        Ok(packet)
    }

    fn check(&self) -> Result<()> {
        let bytes = self.buffer.as_ref();
        check_len(bytes, field::VERSION + 1)?;
        if bytes[field::MAGIC] != MAGIC {
            return Err(Error::Malformed("heartbeat magic is not \"NL\""));
        }
        if bytes[field::VERSION] != VERSION && bytes[field::VERSION] != VERSION_1 {
            return Err(Error::Unsupported(
                "heartbeat format version is neither 1 nor 2: upgrade every host to one nlb release",
            ));
        }
        check_len(bytes, HEADER_LEN_V1)?;
        if usize::from(bytes[field::RULE_COUNT]) > MAX_RULES {
            return Err(Error::Malformed("heartbeat has more than 32 rules"));
        }
        if self.version() == VERSION {
            check_len(bytes, HEADER_LEN)?;
            if usize::from(bytes[field::ECHO_COUNT]) > MAX_ECHOES {
                return Err(Error::Malformed("heartbeat has more than 64 echoes"));
            }
        }
        let mut offset = self.rules_start();
        for _ in 0..bytes[field::RULE_COUNT] {
            check_len(bytes, offset + RULE_HEADER_LEN)?;
            let count = u16::from_be_bytes([bytes[offset + 4], bytes[offset + 5]]);
            if count > MAX_BUCKETS {
                return Err(Error::Malformed("rule has more than 4096 buckets"));
            }
            offset += RULE_HEADER_LEN + 2 * bitmap_len(count);
        }
        if self.is_authenticated() {
            offset += TAG_LEN;
        }
        check_len(bytes, offset)
    }

    fn u16_at(&self, range: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_be_bytes([b[0], b[1]])
    }
    fn u32_at(&self, range: std::ops::Range<usize>) -> u32 {
        let b = &self.buffer.as_ref()[range];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    fn u64_at(&self, range: std::ops::Range<usize>) -> u64 {
        let mut b = [0; 8];
        b.copy_from_slice(&self.buffer.as_ref()[range]);
        u64::from_be_bytes(b)
    }

    /// The format version: 1 or 2 once checked.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    /// Echo records carried: 0 in version 1.
    pub fn echo_count(&self) -> u8 {
        if self.version() == VERSION {
            self.buffer.as_ref()[field::ECHO_COUNT]
        } else {
            0
        }
    }

    /// Where the rule records begin.
    fn rules_start(&self) -> usize {
        if self.version() == VERSION {
            HEADER_LEN + ECHO_LEN * usize::from(self.buffer.as_ref()[field::ECHO_COUNT])
        } else {
            HEADER_LEN_V1
        }
    }

    /// The sender's MAC, in version 2.
    pub fn sender_mac(&self) -> Option<MacAddr> {
        (self.version() == VERSION).then(|| {
            let mut mac = [0; 6];
            mac.copy_from_slice(&self.buffer.as_ref()[field::SENDER_MAC]);
            MacAddr(mac)
        })
    }

    /// Whether the AUTHENTICATED flag is set.
    pub fn is_authenticated(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & FLAG_AUTHENTICATED != 0
    }
    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    /// Cluster id.
    pub fn cluster_id(&self) -> u32 {
        self.u32_at(field::CLUSTER_ID)
    }
    /// Sender's host id.
    pub fn host_id(&self) -> u8 {
        self.buffer.as_ref()[field::HOST_ID]
    }
    /// Sender's state code.
    pub fn state_code(&self) -> u8 {
        self.buffer.as_ref()[field::STATE]
    }
    /// Number of rule records.
    pub fn rule_count(&self) -> u8 {
        self.buffer.as_ref()[field::RULE_COUNT]
    }
    /// Incarnation.
    pub fn incarnation(&self) -> u32 {
        self.u32_at(field::INCARNATION)
    }
    /// Sequence number.
    pub fn sequence(&self) -> u64 {
        self.u64_at(field::SEQUENCE)
    }
    /// Configuration fingerprint.
    pub fn config_fingerprint(&self) -> u64 {
        self.u64_at(field::FINGERPRINT)
    }
    /// View epoch.
    pub fn view_epoch(&self) -> u32 {
        self.u32_at(field::VIEW_EPOCH)
    }
    /// Heartbeat period in ms.
    pub fn heartbeat_ms(&self) -> u16 {
        self.u16_at(field::PERIOD_MS)
    }
    /// Members of the sender's view.
    pub fn view_members(&self) -> MemberSet {
        MemberSet(self.u64_at(field::VIEW_MEMBERS))
    }
    /// Members the sender hears.
    pub fn live_members(&self) -> MemberSet {
        MemberSet(self.u64_at(field::LIVE_MEMBERS))
    }
    /// Sender's open connections.
    pub fn connections(&self) -> u32 {
        self.u32_at(field::CONNECTIONS)
    }

    /// Per-field configuration digests.
    pub fn field_digests(&self) -> [u8; FIELD_DIGESTS_LEN] {
        let mut digests = [0; FIELD_DIGESTS_LEN];
        digests.copy_from_slice(&self.buffer.as_ref()[field::FIELD_DIGESTS]);
        digests
    }

    /// Where each rule record sits: its first byte and its bucket count. The owned
    /// bitmap follows the record header, the target bitmap follows the owned one.
    fn rule_spans(&self) -> impl Iterator<Item = (usize, u16)> + '_ {
        let bytes = self.buffer.as_ref();
        let mut offset = self.rules_start();
        (0..self.rule_count()).map(move |_| {
            let count = u16::from_be_bytes([bytes[offset + 4], bytes[offset + 5]]);
            let span = (offset, count);
            offset += RULE_HEADER_LEN + 2 * bitmap_len(count);
            span
        })
    }

    /// Bytes covered by the tag (the frame without tag and padding).
    fn body_len(&self) -> usize {
        self.rule_spans()
            .last()
            .map_or(self.rules_start(), |(offset, count)| {
                offset + RULE_HEADER_LEN + 2 * bitmap_len(count)
            })
    }

    /// The tag bytes, if the frame is authenticated.
    pub fn tag(&self) -> Option<&[u8]> {
        let start = self.body_len();
        self.is_authenticated()
            .then(|| &self.buffer.as_ref()[start..start + TAG_LEN])
    }

    /// Total length of the frame, tag included, padding excluded.
    pub fn total_len(&self) -> usize {
        self.body_len() + if self.is_authenticated() { TAG_LEN } else { 0 }
    }
}

/// A parsed heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeartbeatRepr {
    /// Cluster id ([`crate::addressing::cluster_id`]).
    pub cluster_id: u32,
    /// Sender's host id, 1..=64.
    pub host_id: u8,
    /// Sender's state.
    pub state: HostState,
    /// Grows with every start of the sender's daemon.
    pub incarnation: u32,
    /// Grows with every heartbeat within one incarnation.
    pub sequence: u64,
    /// Fingerprint of the sender's cluster-wide configuration.
    pub config_fingerprint: u64,
    /// Epoch of the view the sender operates under.
    pub view_epoch: u32,
    /// The sender's heartbeat period.
    pub heartbeat_ms: u16,
    /// Members of that view.
    pub view_members: MemberSet,
    /// Members the sender hears now, itself included.
    pub live_members: MemberSet,
    /// Open connections on the sender.
    pub connections: u32,
    /// Per-field digests of the sender's cluster-wide configuration.
    pub field_digests: [u8; FIELD_DIGESTS_LEN],
    /// The sender's MAC, as it wrote it (version 2; `None` when read from version 1).
    /// [`HeartbeatRepr::to_frame`] writes the Ethernet source here.
    pub sender_mac: Option<MacAddr>,
    /// For each host the sender hears, the newest heartbeat it accepted from it.
    pub echoes: Vec<Echo>,
    /// One record per rule, in configuration order.
    pub rules: Vec<RuleStatus>,
}

/// The newest heartbeat a sender accepted from one host: what a receiver checks to know
/// that the sender heard it recently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Echo {
    /// That host's id, 1..=64.
    pub host_id: u8,
    /// Its incarnation.
    pub incarnation: u32,
    /// Its sequence number.
    pub sequence: u64,
}

impl HeartbeatRepr {
    /// Parses a checked packet. With `key`, the frame must carry a tag that matches, or
    /// this fails with [`Error::BadTag`]. Without `key`, a tag is not verified.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &HeartbeatPacket<T>,
        key: Option<&HeartbeatKey>,
    ) -> Result<HeartbeatRepr> {
        if packet.flags() & !FLAG_AUTHENTICATED != 0 {
            return Err(Error::Malformed("unknown heartbeat flags"));
        }
        if let Some(key) = key {
            if packet.version() != VERSION {
                // A version 1 tag is keyed differently and leaves the sender out.
                return Err(Error::Unsupported(
                    "heartbeat format version 1: upgrade every host to one nlb release",
                ));
            }
            let tag = packet.tag().ok_or(Error::BadTag)?;
            let expected = key.tag(&packet.buffer.as_ref()[..packet.body_len()]);
            if !constant_time_eq(tag, &expected) {
                return Err(Error::BadTag);
            }
        }
        let host_id = packet.host_id();
        if !(1..=MAX_HOST_ID).contains(&host_id) {
            return Err(Error::Malformed("heartbeat host id is outside 1..=64"));
        }
        let state = HostState::from_code(packet.state_code())
            .ok_or(Error::Malformed("unknown heartbeat host state"))?;
        let bytes = packet.buffer.as_ref();
        let mut echoes = Vec::with_capacity(usize::from(packet.echo_count()));
        for index in 0..usize::from(packet.echo_count()) {
            let at = HEADER_LEN + index * ECHO_LEN;
            let record = &bytes[at..at + ECHO_LEN];
            let host_id = record[0];
            if !(1..=MAX_HOST_ID).contains(&host_id) {
                return Err(Error::Malformed("echo host id is outside 1..=64"));
            }
            let mut sequence = [0; 8];
            sequence.copy_from_slice(&record[8..16]);
            echoes.push(Echo {
                host_id,
                incarnation: u32::from_be_bytes([record[4], record[5], record[6], record[7]]),
                sequence: u64::from_be_bytes(sequence),
            });
        }
        let mut rules = Vec::with_capacity(usize::from(packet.rule_count()));
        for (offset, count) in packet.rule_spans() {
            let weight = match bytes[offset] {
                WEIGHT_EQUAL => None,
                w @ 0..=100 => Some(w),
                _ => return Err(Error::Malformed("rule weight is outside 0..=100")),
            };
            let priority = match bytes[offset + 1] {
                0 => None,
                p @ 1..=MAX_HOST_ID => Some(p),
                _ => return Err(Error::Malformed("rule priority is outside 1..=64")),
            };
            let flags = bytes[offset + 2];
            if flags & !(RULE_ENABLED | RULE_DRAINING) != 0 {
                return Err(Error::Malformed("unknown rule flags"));
            }
            let owned_at = offset + RULE_HEADER_LEN;
            let target_at = owned_at + bitmap_len(count);
            let owned = BucketBitmap::from_wire(count, &bytes[owned_at..target_at])?;
            let target =
                BucketBitmap::from_wire(count, &bytes[target_at..target_at + bitmap_len(count)])?;
            // Owned ⊆ target, a byte at a time (the layouts are equal).
            let outside = owned
                .as_bytes()
                .iter()
                .zip(target.as_bytes())
                .any(|(owned, target)| owned & !target != 0);
            if outside {
                return Err(Error::Malformed("rule owns a bucket outside its target"));
            }
            rules.push(RuleStatus {
                weight,
                priority,
                enabled: flags & RULE_ENABLED != 0,
                draining: flags & RULE_DRAINING != 0,
                owned,
                target,
            });
        }
        Ok(HeartbeatRepr {
            cluster_id: packet.cluster_id(),
            host_id,
            state,
            incarnation: packet.incarnation(),
            sequence: packet.sequence(),
            config_fingerprint: packet.config_fingerprint(),
            view_epoch: packet.view_epoch(),
            heartbeat_ms: packet.heartbeat_ms(),
            view_members: packet.view_members(),
            live_members: packet.live_members(),
            connections: packet.connections(),
            field_digests: packet.field_digests(),
            sender_mac: packet.sender_mac(),
            echoes,
            rules,
        })
    }

    /// Bytes [`emit`](Self::emit) writes, with or without a tag.
    pub fn buffer_len(&self, authenticated: bool) -> usize {
        HEADER_LEN
            + ECHO_LEN * self.echoes.len()
            + self.rules.iter().map(RuleStatus::wire_len).sum::<usize>()
            + if authenticated { TAG_LEN } else { 0 }
    }

    /// Writes the heartbeat into a buffer of exactly or at least
    /// [`buffer_len`](Self::buffer_len) bytes, with a tag when `key` is given.
    ///
    /// # Panics
    /// If the buffer is too short, or the repr breaks the format's limits (more than 32
    /// rules or 64 echoes, a host id outside 1..=64, a weight above 100, a priority above
    /// 64). The core builds reprs from validated configuration, so these are programming
    /// errors. A missing `sender_mac` is written as zeros.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut HeartbeatPacket<T>,
        key: Option<&HeartbeatKey>,
    ) {
        assert!(self.rules.len() <= MAX_RULES, "at most {MAX_RULES} rules");
        assert!(
            self.echoes.len() <= MAX_ECHOES,
            "at most {MAX_ECHOES} echoes"
        );
        assert!(
            (1..=MAX_HOST_ID).contains(&self.host_id),
            "host id in 1..=64"
        );
        let body_len = self.buffer_len(false);
        let bytes = packet.buffer.as_mut();
        bytes[..HEADER_LEN].fill(0);
        bytes[field::MAGIC].copy_from_slice(&MAGIC);
        bytes[field::VERSION] = VERSION;
        bytes[field::FLAGS] = if key.is_some() { FLAG_AUTHENTICATED } else { 0 };
        bytes[field::CLUSTER_ID].copy_from_slice(&self.cluster_id.to_be_bytes());
        bytes[field::HOST_ID] = self.host_id;
        bytes[field::STATE] = self.state.code();
        bytes[field::RULE_COUNT] = self.rules.len() as u8;
        bytes[field::ECHO_COUNT] = self.echoes.len() as u8;
        bytes[field::INCARNATION].copy_from_slice(&self.incarnation.to_be_bytes());
        bytes[field::SEQUENCE].copy_from_slice(&self.sequence.to_be_bytes());
        bytes[field::FINGERPRINT].copy_from_slice(&self.config_fingerprint.to_be_bytes());
        bytes[field::VIEW_EPOCH].copy_from_slice(&self.view_epoch.to_be_bytes());
        bytes[field::PERIOD_MS].copy_from_slice(&self.heartbeat_ms.to_be_bytes());
        bytes[field::VIEW_MEMBERS].copy_from_slice(&self.view_members.0.to_be_bytes());
        bytes[field::LIVE_MEMBERS].copy_from_slice(&self.live_members.0.to_be_bytes());
        bytes[field::CONNECTIONS].copy_from_slice(&self.connections.to_be_bytes());
        bytes[field::FIELD_DIGESTS].copy_from_slice(&self.field_digests);
        bytes[field::SENDER_MAC].copy_from_slice(&self.sender_mac.unwrap_or(MacAddr::ZERO).0);
        let mut offset = HEADER_LEN;
        for echo in &self.echoes {
            assert!(
                (1..=MAX_HOST_ID).contains(&echo.host_id),
                "echo host id in 1..=64"
            );
            let record = &mut bytes[offset..offset + ECHO_LEN];
            record[..4].copy_from_slice(&[echo.host_id, 0, 0, 0]);
            record[4..8].copy_from_slice(&echo.incarnation.to_be_bytes());
            record[8..16].copy_from_slice(&echo.sequence.to_be_bytes());
            offset += ECHO_LEN;
        }
        for rule in &self.rules {
            let weight = rule.weight.map_or(WEIGHT_EQUAL, |w| {
                assert!(w <= 100, "weight in 0..=100");
                w
            });
            let priority = rule.priority.map_or(0, |p| {
                assert!((1..=MAX_HOST_ID).contains(&p), "priority in 1..=64");
                p
            });
            let flags = if rule.enabled { RULE_ENABLED } else { 0 }
                | if rule.draining { RULE_DRAINING } else { 0 };
            let count = rule.owned.bucket_count().to_be_bytes();
            bytes[offset..offset + RULE_HEADER_LEN]
                .copy_from_slice(&[weight, priority, flags, 0, count[0], count[1]]);
            offset += RULE_HEADER_LEN;
            assert_eq!(
                rule.owned.bucket_count(),
                rule.target.bucket_count(),
                "owned and target range over the same buckets"
            );
            for bitmap in [rule.owned.as_bytes(), rule.target.as_bytes()] {
                bytes[offset..offset + bitmap.len()].copy_from_slice(bitmap);
                offset += bitmap.len();
            }
        }
        debug_assert_eq!(offset, body_len);
        if let Some(key) = key {
            let tag = key.tag(&bytes[..body_len]);
            bytes[body_len..body_len + TAG_LEN].copy_from_slice(&tag);
        }
    }

    /// The whole Ethernet frame from `src` to `dst` with `ethertype`; `src` is also
    /// written as the sender's MAC, under the tag.
    pub fn to_frame(
        &self,
        src: MacAddr,
        dst: MacAddr,
        ethertype: u16,
        key: Option<&HeartbeatKey>,
    ) -> Vec<u8> {
        let mut payload = vec![0; self.buffer_len(key.is_some())];
        let mut packet = HeartbeatPacket::new_unchecked(&mut payload[..]);
        if self.sender_mac == Some(src) {
            self.emit(&mut packet, key);
        } else {
            let mut repr = self.clone();
            repr.sender_mac = Some(src);
            repr.emit(&mut packet, key);
        }
        EthernetRepr {
            dst,
            src,
            vlan: None,
            ethertype,
        }
        .frame(&payload)
    }
}

/// Compares tags without an early exit, so that timing does not reveal how many leading
/// bytes of a forged tag were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethernet::{ETHERTYPE_NLB_HEARTBEAT, EthernetFrame};
    use proptest::prelude::*;

    fn sample() -> HeartbeatRepr {
        let mut owned = BucketBitmap::new(12);
        owned.insert(0);
        owned.insert(9);
        let mut target = owned.clone();
        target.insert(10);
        let mut field_digests = [0u8; FIELD_DIGESTS_LEN];
        for (i, digest) in field_digests.iter_mut().enumerate() {
            *digest = i as u8 + 1;
        }
        HeartbeatRepr {
            cluster_id: 0x0102_0304,
            host_id: 2,
            state: HostState::Converged,
            incarnation: 7,
            sequence: 0x1122_3344_5566_7788,
            config_fingerprint: 0xaabb_ccdd_eeff_0011,
            view_epoch: 3,
            heartbeat_ms: 100,
            view_members: [1, 2].into_iter().collect(),
            live_members: [1, 2, 3].into_iter().collect(),
            connections: 5,
            field_digests,
            sender_mac: Some(MacAddr([2, 0, 0, 0, 0, 2])),
            echoes: vec![Echo {
                host_id: 1,
                incarnation: 9,
                sequence: 0x0102,
            }],
            rules: vec![RuleStatus {
                weight: None,
                priority: Some(2),
                enabled: true,
                draining: false,
                owned,
                target,
            }],
        }
    }

    /// The bytes of [`sample`], written out by hand from the layout in the module docs.
    #[rustfmt::skip]
    static SAMPLE_BYTES: [u8; 118] = [
        b'N', b'L', 2, 0,
        0x01, 0x02, 0x03, 0x04,
        2, 2, 1, 1,
        0, 0, 0, 7,
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
        0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00, 0x11,
        0, 0, 0, 3,
        0, 100, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0b011,
        0, 0, 0, 0, 0, 0, 0, 0b111,
        0, 0, 0, 5,
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
        2, 0, 0, 0, 0, 2, 0, 0,
        1, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0x01, 0x02,
        255, 2, 1, 0, 0, 12,
        0b0000_0001, 0b0000_0010,
        0b0000_0001, 0b0000_0110,
    ];

    /// The same heartbeat as version 1 wrote it: no MAC, no echoes.
    fn sample_v1_bytes() -> Vec<u8> {
        let mut bytes = SAMPLE_BYTES[..84].to_vec();
        bytes[2] = 1;
        bytes[11] = 0;
        bytes.extend_from_slice(&SAMPLE_BYTES[108..]);
        bytes
    }

    #[test]
    fn version_1_is_read_for_captures_but_never_authenticated() {
        let bytes = sample_v1_bytes();
        let packet = HeartbeatPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.version(), 1);
        let mut expected = sample();
        expected.sender_mac = None;
        expected.echoes.clear();
        assert_eq!(HeartbeatRepr::parse(&packet, None).unwrap(), expected);
        assert!(matches!(
            HeartbeatRepr::parse(&packet, Some(&HeartbeatKey::derive(b"k"))),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn echoes_are_checked() {
        let mut bytes = SAMPLE_BYTES;
        bytes[92] = 65;
        let packet = HeartbeatPacket::new_checked(&bytes[..]).unwrap();
        assert!(matches!(
            HeartbeatRepr::parse(&packet, None),
            Err(Error::Malformed(_))
        ));
        let mut bytes = SAMPLE_BYTES;
        bytes[11] = 65;
        assert!(matches!(
            HeartbeatPacket::new_checked(&bytes[..]),
            Err(Error::Malformed(_))
        ));
        // An echo count that runs past the end.
        let mut bytes = SAMPLE_BYTES;
        bytes[11] = 5;
        assert!(matches!(
            HeartbeatPacket::new_checked(&bytes[..]),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn the_tag_covers_the_sender_mac() {
        let key = HeartbeatKey::derive(b"cluster secret");
        let repr = sample();
        let frame = repr.to_frame(
            MacAddr([2, 0, 0, 0, 0, 2]),
            MacAddr::BROADCAST,
            ETHERTYPE_NLB_HEARTBEAT,
            Some(&key),
        );
        let eth = EthernetFrame::parse(&frame).unwrap();
        let mut moved = eth.payload.to_vec();
        moved[84..90].copy_from_slice(&[2, 0, 0, 0, 0, 0x66]);
        let packet = HeartbeatPacket::new_checked(&moved[..]).unwrap();
        assert_eq!(
            HeartbeatRepr::parse(&packet, Some(&key)),
            Err(Error::BadTag)
        );
    }

    #[test]
    fn heartbeat_deconstruct() {
        let packet = HeartbeatPacket::new_checked(&SAMPLE_BYTES[..]).unwrap();
        assert_eq!(HeartbeatRepr::parse(&packet, None).unwrap(), sample());
        assert_eq!(packet.total_len(), SAMPLE_BYTES.len());
    }

    #[test]
    fn heartbeat_construct() {
        let repr = sample();
        let mut bytes = [0xa5u8; 118];
        assert_eq!(repr.buffer_len(false), bytes.len());
        repr.emit(&mut HeartbeatPacket::new_unchecked(&mut bytes[..]), None);
        assert_eq!(bytes, SAMPLE_BYTES);
    }

    #[test]
    fn authenticated_round_trip_and_rejections() {
        let key = HeartbeatKey::derive(b"cluster secret");
        let repr = sample();
        let frame = repr.to_frame(
            MacAddr([2, 0, 0, 0, 0, 2]),
            MacAddr::BROADCAST,
            ETHERTYPE_NLB_HEARTBEAT,
            Some(&key),
        );
        let eth = EthernetFrame::parse(&frame).unwrap();
        let packet = HeartbeatPacket::new_checked(eth.payload).unwrap();
        assert!(packet.is_authenticated());
        assert_eq!(HeartbeatRepr::parse(&packet, Some(&key)).unwrap(), repr);

        // Wrong key.
        let other = HeartbeatKey::derive(b"another secret");
        assert_eq!(
            HeartbeatRepr::parse(&packet, Some(&other)),
            Err(Error::BadTag)
        );

        // Any flipped bit in the covered bytes or the tag.
        for index in [
            4,
            17,
            40,
            60,
            70,
            86,
            95,
            100,
            115,
            117,
            eth.payload.len() - 1,
        ] {
            let mut forged = eth.payload.to_vec();
            forged[index] ^= 0x10;
            let packet = HeartbeatPacket::new_checked(&forged[..]).unwrap();
            assert_eq!(
                HeartbeatRepr::parse(&packet, Some(&key)),
                Err(Error::BadTag),
                "byte {index}"
            );
        }

        // An unauthenticated frame where a key is configured.
        let plain = repr.to_frame(
            MacAddr([2, 0, 0, 0, 0, 2]),
            MacAddr::BROADCAST,
            ETHERTYPE_NLB_HEARTBEAT,
            None,
        );
        let eth = EthernetFrame::parse(&plain).unwrap();
        let packet = HeartbeatPacket::new_checked(eth.payload).unwrap();
        assert_eq!(
            HeartbeatRepr::parse(&packet, Some(&key)),
            Err(Error::BadTag)
        );
    }

    #[test]
    fn anti_replay_accepts_only_newer_pairs() {
        let mut guard = AntiReplay::default();
        assert!(guard.check(5, 10).is_ok());
        assert!(guard.check(5, 11).is_ok());
        assert_eq!(
            guard.check(5, 11),
            Err(Replayed {
                newest: (5, 11),
                got: (5, 11)
            })
        );
        assert!(guard.check(5, 3).is_err());
        assert!(guard.check(4, 100).is_err());
        // A restart: higher incarnation, sequence from zero.
        assert!(guard.check(6, 0).is_ok());
        assert_eq!(guard.newest(), Some((6, 0)));
    }

    #[test]
    fn malformed_headers_are_named() {
        let mut bad_magic = SAMPLE_BYTES;
        bad_magic[0] = b'X';
        assert!(matches!(
            HeartbeatPacket::new_checked(&bad_magic[..]),
            Err(Error::Malformed(_))
        ));
        let mut v3 = SAMPLE_BYTES;
        v3[2] = 3;
        assert!(matches!(
            HeartbeatPacket::new_checked(&v3[..]),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            HeartbeatPacket::new_checked(&SAMPLE_BYTES[..117]),
            Err(Error::Truncated {
                needed: 118,
                got: 117
            })
        ));
        let mut stray_bit = SAMPLE_BYTES;
        stray_bit[117] |= 0x80;
        let packet = HeartbeatPacket::new_checked(&stray_bit[..]).unwrap();
        assert_eq!(
            HeartbeatRepr::parse(&packet, None),
            Err(Error::Malformed(
                "bucket bitmap has bits beyond the bucket count"
            ))
        );
        let mut owned_outside_target = SAMPLE_BYTES;
        owned_outside_target[115] |= 0x08;
        let packet = HeartbeatPacket::new_checked(&owned_outside_target[..]).unwrap();
        assert_eq!(
            HeartbeatRepr::parse(&packet, None),
            Err(Error::Malformed("rule owns a bucket outside its target"))
        );
        let mut host_zero = SAMPLE_BYTES;
        host_zero[8] = 0;
        let packet = HeartbeatPacket::new_checked(&host_zero[..]).unwrap();
        assert!(matches!(
            HeartbeatRepr::parse(&packet, None),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn bucket_ranges_compress() {
        let mut bitmap = BucketBitmap::new(256);
        for bucket in (0..86).chain([100]).chain(200..211).chain([255]) {
            bitmap.insert(bucket);
        }
        assert_eq!(
            bitmap.ranges(),
            vec![(0, 85), (100, 100), (200, 210), (255, 255)]
        );
        assert_eq!(bitmap.ranges_text(), "0-85, 100, 200-210, 255");
        assert_eq!(BucketBitmap::new(256).ranges_text(), "");
    }

    #[test]
    fn member_set_basics() {
        let mut set: MemberSet = [1, 3, 64].into_iter().collect();
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![1, 3, 64]);
        assert!(!set.contains(0) && !set.contains(65) && !set.contains(2));
        set.remove(3);
        set.insert(0);
        assert_eq!(set.len(), 2);
    }

    fn any_rule() -> impl Strategy<Value = RuleStatus> {
        (
            prop_oneof![Just(None), (0u8..=100).prop_map(Some)],
            prop_oneof![Just(None), (1u8..=64).prop_map(Some)],
            any::<(bool, bool)>(),
            (0u16..=600).prop_flat_map(|count| {
                (
                    Just(count),
                    proptest::collection::vec((any::<u16>(), any::<bool>()), 0..40),
                )
            }),
        )
            .prop_map(
                |(weight, priority, (enabled, draining), (count, buckets))| {
                    let mut owned = BucketBitmap::new(count);
                    let mut target = BucketBitmap::new(count);
                    for (bucket, also_owned) in buckets {
                        if count > 0 {
                            target.insert(bucket % count);
                            if also_owned {
                                owned.insert(bucket % count);
                            }
                        }
                    }
                    RuleStatus {
                        weight,
                        priority,
                        enabled,
                        draining,
                        owned,
                        target,
                    }
                },
            )
    }

    fn any_heartbeat() -> impl Strategy<Value = HeartbeatRepr> {
        (
            any::<u32>(),
            1u8..=64,
            proptest::sample::select(HostState::ALL.to_vec()),
            any::<(u32, u64, u64, u32, u16)>(),
            any::<(u64, u64, u32, [u8; FIELD_DIGESTS_LEN])>(),
            proptest::collection::vec(any_rule(), 0..6),
            (
                any::<[u8; 6]>(),
                proptest::collection::vec((1u8..=64, any::<u32>(), any::<u64>()), 0..8),
            ),
        )
            .prop_map(
                |(
                    cluster_id,
                    host_id,
                    state,
                    (incarnation, sequence, fingerprint, epoch, period),
                    (view, live, connections, field_digests),
                    rules,
                    (mac, echoes),
                )| {
                    HeartbeatRepr {
                        cluster_id,
                        host_id,
                        state,
                        incarnation,
                        sequence,
                        config_fingerprint: fingerprint,
                        view_epoch: epoch,
                        heartbeat_ms: period,
                        view_members: MemberSet(view),
                        live_members: MemberSet(live),
                        connections,
                        field_digests,
                        sender_mac: Some(MacAddr(mac)),
                        echoes: echoes
                            .into_iter()
                            .map(|(host_id, incarnation, sequence)| Echo {
                                host_id,
                                incarnation,
                                sequence,
                            })
                            .collect(),
                        rules,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(repr in any_heartbeat(), authenticated in any::<bool>()) {
            let key = HeartbeatKey::derive(b"k");
            let key = authenticated.then_some(&key);
            let mut bytes = vec![0u8; repr.buffer_len(key.is_some())];
            repr.emit(&mut HeartbeatPacket::new_unchecked(&mut bytes[..]), key);
            let packet = HeartbeatPacket::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(packet.total_len(), bytes.len());
            prop_assert_eq!(HeartbeatRepr::parse(&packet, key).unwrap(), repr);
        }

        #[test]
        fn parse_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if bytes.len() >= 3 {
                let version = 1 + bytes.len() as u8 % 2;
                bytes[..3].copy_from_slice(&[b'N', b'L', version]);
            }
            if let Ok(packet) = HeartbeatPacket::new_checked(&bytes[..]) {
                let _ = HeartbeatRepr::parse(&packet, None);
                let _ = HeartbeatRepr::parse(&packet, Some(&HeartbeatKey::derive(b"k")));
            }
        }
    }
}

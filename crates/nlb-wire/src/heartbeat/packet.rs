//! [`HeartbeatPacket`]: a checked view of a heartbeat in a buffer (the layout is in the
//! parent module's docs).

#[cfg(doc)]
use super::HeartbeatRepr;
use super::{
    ECHO_LEN, FIELD_DIGESTS_LEN, FLAG_AUTHENTICATED, HEADER_LEN, HEADER_LEN_V1, MAGIC, MAX_ECHOES,
    MAX_RULES, RULE_HEADER_LEN, TAG_LEN, VERSION, VERSION_1, field,
};
use crate::bitmap::{MAX_BUCKETS, MemberSet, bitmap_len};
use crate::{Error, MacAddr, Result, check_len};

/// A view of a heartbeat in a buffer.
#[derive(Debug, Clone)]
pub struct HeartbeatPacket<T: AsRef<[u8]>> {
    pub(super) buffer: T,
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
    pub(super) fn rule_spans(&self) -> impl Iterator<Item = (usize, u16)> + '_ {
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
    pub(super) fn body_len(&self) -> usize {
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

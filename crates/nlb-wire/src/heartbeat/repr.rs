//! [`HeartbeatRepr`]: the parsed heartbeat, and how it is written back.

use super::auth::constant_time_eq;
use super::{
    ECHO_LEN, FIELD_DIGESTS_LEN, FLAG_AUTHENTICATED, HEADER_LEN, HEALTH_CHECK_DOWN, HeartbeatKey,
    HeartbeatPacket, HostState, MAGIC, MAX_ECHOES, MAX_RULES, RULE_DRAINING, RULE_ENABLED,
    RULE_HEADER_LEN, RuleStatus, TAG_LEN, VERSION, WEIGHT_EQUAL, field,
};
use crate::bitmap::{BucketBitmap, MAX_HOST_ID, MemberSet, bitmap_len};
use crate::ethernet::EthernetRepr;
use crate::{Error, MacAddr, Result};

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
                check_down: bytes[offset + 3] & HEALTH_CHECK_DOWN != 0,
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
            let health = if rule.check_down {
                HEALTH_CHECK_DOWN
            } else {
                0
            };
            let count = rule.owned.bucket_count().to_be_bytes();
            bytes[offset..offset + RULE_HEADER_LEN]
                .copy_from_slice(&[weight, priority, flags, health, count[0], count[1]]);
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

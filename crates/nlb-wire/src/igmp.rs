//! IGMPv2 (RFC 2236) and the IPv4 datagrams that carry it (RFC 2113 Router Alert).
//!
//! Message layout (RFC 2236 §2):
//!
//! ```text
//!  0      1          2                4                       8
//! +------+----------+----------------+-----------------------+
//! | type | max resp |    checksum    |     group address     |
//! +------+----------+----------------+-----------------------+
//! ```
//!
//! The checksum is the Internet checksum of the whole IGMP message. Reports go to the
//! group, leaves to 224.0.0.2 (all routers), general queries to 224.0.0.1. Every message
//! is sent with TTL 1 and the Router Alert option, so that snooping switches and routers
//! look at it ([`IgmpRepr::to_frame`]).
//!
//! IGMPv3 queries (longer than 8 bytes, RFC 3376 §4.1) parse as queries. IGMPv3 reports
//! (type 0x22, what Linux sends by default) are [`Error::Unsupported`] for [`IgmpRepr`],
//! which nlb emits; [`IgmpV3Report`] reads them (RFC 3376 §4.2) for the doctor, which
//! must see every host's membership whatever its IGMP version.

use crate::addressing::ipv4_multicast_mac;
use crate::ethernet::{ETHERTYPE_IPV4, EthernetRepr};
use crate::{Error, MacAddr, Result, check_len, internet_checksum};
use etherparse::{IpDscp, IpNumber, Ipv4Header, Ipv4Slice};
use std::net::Ipv4Addr;

mod field {
    use std::ops::Range;
    pub(super) const TYPE: usize = 0;
    pub(super) const MAX_RESP: usize = 1;
    pub(super) const CHECKSUM: Range<usize> = 2..4;
    pub(super) const GROUP: Range<usize> = 4..8;
}

/// Bytes of an IGMPv1/v2 message.
pub const MESSAGE_LEN: usize = field::GROUP.end;
/// IPv4 protocol number of IGMP.
pub const IP_PROTOCOL_IGMP: u8 = 2;
/// The Router Alert IPv4 option (RFC 2113): type 148, length 4, value 0.
pub const ROUTER_ALERT: [u8; 4] = [0x94, 0x04, 0x00, 0x00];
/// 224.0.0.1, all systems: where general queries go.
pub const ALL_SYSTEMS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 1);
/// 224.0.0.2, all routers: where leaves go.
pub const ALL_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 2);

const TYPE_QUERY: u8 = 0x11;
const TYPE_REPORT_V1: u8 = 0x12;
const TYPE_REPORT_V2: u8 = 0x16;
const TYPE_LEAVE: u8 = 0x17;

/// A read/write view of an IGMP message. The buffer is the whole message (the IPv4
/// payload), because the checksum covers all of it.
#[derive(Debug, Clone)]
pub struct IgmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IgmpPacket<T> {
    /// Wraps a buffer without checking its length; accessors panic below 8 bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        IgmpPacket { buffer }
    }

    /// Wraps a buffer of at least 8 bytes. After this succeeds, no accessor panics.
    pub fn new_checked(buffer: T) -> Result<Self> {
        check_len(buffer.as_ref(), MESSAGE_LEN)?;
        Ok(IgmpPacket { buffer })
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// Max response time, in tenths of a second (queries only).
    pub fn max_resp_time(&self) -> u8 {
        self.buffer.as_ref()[field::MAX_RESP]
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// Group address.
    pub fn group(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::GROUP];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
    /// Whether the checksum over the whole buffer is right.
    pub fn verify_checksum(&self) -> bool {
        internet_checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IgmpPacket<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }
    /// Sets the max response time.
    pub fn set_max_resp_time(&mut self, value: u8) {
        self.buffer.as_mut()[field::MAX_RESP] = value;
    }
    /// Sets the group address.
    pub fn set_group(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::GROUP].copy_from_slice(&value.octets());
    }
    /// Computes and stores the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&[0, 0]);
        let checksum = internet_checksum(self.buffer.as_ref());
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }
}

/// A parsed IGMP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IgmpRepr {
    /// Membership query; `group` is 0.0.0.0 for a general query.
    MembershipQuery {
        /// Max response time in tenths of a second.
        max_resp_time: u8,
        /// The group asked about, or 0.0.0.0.
        group: Ipv4Addr,
    },
    /// IGMPv1 membership report (RFC 1112). Windows NLB's IGMP mode sends these.
    MembershipReportV1 {
        /// The group joined.
        group: Ipv4Addr,
    },
    /// IGMPv2 membership report.
    MembershipReportV2 {
        /// The group joined.
        group: Ipv4Addr,
    },
    /// IGMPv2 leave group.
    LeaveGroup {
        /// The group left.
        group: Ipv4Addr,
    },
}

impl IgmpRepr {
    /// Parses a checked message, verifying its checksum.
    pub fn parse<T: AsRef<[u8]>>(packet: &IgmpPacket<T>) -> Result<IgmpRepr> {
        let group = packet.group();
        let repr = match packet.msg_type() {
            TYPE_QUERY => IgmpRepr::MembershipQuery {
                max_resp_time: packet.max_resp_time(),
                group,
            },
            TYPE_REPORT_V1 => IgmpRepr::MembershipReportV1 { group },
            TYPE_REPORT_V2 => IgmpRepr::MembershipReportV2 { group },
            TYPE_LEAVE => IgmpRepr::LeaveGroup { group },
            TYPE_REPORT_V3 => return Err(Error::Unsupported("IGMPv3 membership report")),
            _ => return Err(Error::Malformed("unknown IGMP message type")),
        };
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        if !matches!(repr, IgmpRepr::MembershipQuery { .. }) && !group.is_multicast() {
            return Err(Error::Malformed("IGMP group is not a multicast address"));
        }
        Ok(repr)
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        MESSAGE_LEN
    }

    /// The group the message is about (0.0.0.0 in a general query).
    pub const fn group(&self) -> Ipv4Addr {
        match *self {
            IgmpRepr::MembershipQuery { group, .. }
            | IgmpRepr::MembershipReportV1 { group }
            | IgmpRepr::MembershipReportV2 { group }
            | IgmpRepr::LeaveGroup { group } => group,
        }
    }

    /// Writes the message, with its checksum, into an 8-byte buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut IgmpPacket<T>) {
        let (msg_type, max_resp_time) = match *self {
            IgmpRepr::MembershipQuery { max_resp_time, .. } => (TYPE_QUERY, max_resp_time),
            IgmpRepr::MembershipReportV1 { .. } => (TYPE_REPORT_V1, 0),
            IgmpRepr::MembershipReportV2 { .. } => (TYPE_REPORT_V2, 0),
            IgmpRepr::LeaveGroup { .. } => (TYPE_LEAVE, 0),
        };
        packet.set_msg_type(msg_type);
        packet.set_max_resp_time(max_resp_time);
        packet.set_group(self.group());
        packet.fill_checksum();
    }

    /// The IPv4 destination of this message (RFC 2236 §9 table).
    pub fn ip_destination(&self) -> Ipv4Addr {
        match *self {
            IgmpRepr::MembershipQuery { group, .. } if group.is_unspecified() => ALL_SYSTEMS,
            IgmpRepr::LeaveGroup { .. } => ALL_ROUTERS,
            other => other.group(),
        }
    }

    /// The whole Ethernet frame: IPv4 with TTL 1, DSCP CS6 (as Linux sends it) and Router
    /// Alert, to [`ip_destination`](Self::ip_destination) and its multicast MAC.
    pub fn to_frame(&self, src_mac: MacAddr, src_ip: Ipv4Addr, vlan: Option<u16>) -> Vec<u8> {
        let mut message = [0u8; MESSAGE_LEN];
        self.emit(&mut IgmpPacket::new_unchecked(&mut message[..]));
        let dst_ip = self.ip_destination();
        let mut ip = Ipv4Header::new(
            MESSAGE_LEN as u16,
            1,
            IpNumber(IP_PROTOCOL_IGMP),
            src_ip.octets(),
            dst_ip.octets(),
        )
        .expect("an 8-byte payload fits in IPv4");
        ip.dscp = IpDscp::CS6;
        ip.options = ROUTER_ALERT.into();
        ip.total_len = (ip.header_len() + MESSAGE_LEN) as u16;
        ip.header_checksum = ip.calc_header_checksum();
        let mut payload = ip.to_bytes().to_vec();
        payload.extend_from_slice(&message);
        EthernetRepr {
            dst: ipv4_multicast_mac(dst_ip),
            src: src_mac,
            vlan,
            ethertype: ETHERTYPE_IPV4,
        }
        .frame(&payload)
    }
}

/// An IGMP message with the IPv4 fields that matter for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgmpDatagram {
    /// IPv4 source.
    pub src_ip: Ipv4Addr,
    /// IPv4 destination.
    pub dst_ip: Ipv4Addr,
    /// IPv4 time to live; RFC 2236 wants 1.
    pub ttl: u8,
    /// Whether the IPv4 header carried the Router Alert option.
    pub router_alert: bool,
    /// The message.
    pub igmp: IgmpRepr,
}

impl IgmpDatagram {
    /// Parses an IPv4 packet (an Ethernet payload of EtherType 0x0800) that carries an
    /// IGMPv1/v2 message or a query. Trailing Ethernet padding beyond the IPv4 total length
    /// is ignored.
    pub fn parse(ipv4: &[u8]) -> Result<IgmpDatagram> {
        let carrier = IgmpCarrier::parse(ipv4)?;
        let igmp = IgmpRepr::parse(&IgmpPacket::new_checked(carrier.message)?)?;
        Ok(IgmpDatagram {
            src_ip: carrier.src_ip,
            dst_ip: carrier.dst_ip,
            ttl: carrier.ttl,
            router_alert: carrier.router_alert,
            igmp,
        })
    }
}

/// The IPv4 packet around an IGMP message of any version, with the message unparsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgmpCarrier<'a> {
    /// IPv4 source.
    pub src_ip: Ipv4Addr,
    /// IPv4 destination.
    pub dst_ip: Ipv4Addr,
    /// IPv4 time to live.
    pub ttl: u8,
    /// Whether the IPv4 header carried the Router Alert option.
    pub router_alert: bool,
    /// The IGMP message, without IPv4 header or Ethernet padding.
    pub message: &'a [u8],
}

impl<'a> IgmpCarrier<'a> {
    /// Splits an IPv4 packet that carries IGMP into its header fields and the message.
    pub fn parse(ipv4: &'a [u8]) -> Result<IgmpCarrier<'a>> {
        let slice = Ipv4Slice::from_slice(ipv4).map_err(|err| match err {
            etherparse::err::ipv4::SliceError::Len(len) => Error::Truncated {
                needed: len.required_len,
                got: len.len,
            },
            _ => Error::Malformed("bad IPv4 header"),
        })?;
        let header = slice.header();
        if header.protocol().0 != IP_PROTOCOL_IGMP {
            return Err(Error::Unsupported("IPv4 packet is not IGMP"));
        }
        if slice.is_payload_fragmented() {
            return Err(Error::Unsupported("fragmented IGMP"));
        }
        Ok(IgmpCarrier {
            src_ip: header.source_addr(),
            dst_ip: header.destination_addr(),
            ttl: header.ttl(),
            router_alert: has_router_alert(header.options()),
            message: slice.payload().payload,
        })
    }

    /// The message's type byte, if there is one.
    pub fn msg_type(&self) -> Option<u8> {
        self.message.first().copied()
    }
}

/// IGMPv3 membership report type (RFC 3376 §4.2).
pub const TYPE_REPORT_V3: u8 = 0x22;

/// One group record of an IGMPv3 report (RFC 3376 §4.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupRecord {
    /// Record type: 1 MODE_IS_INCLUDE, 2 MODE_IS_EXCLUDE, 3 CHANGE_TO_INCLUDE_MODE,
    /// 4 CHANGE_TO_EXCLUDE_MODE, 5 ALLOW_NEW_SOURCES, 6 BLOCK_OLD_SOURCES.
    pub record_type: u8,
    /// The multicast address the record is about.
    pub group: Ipv4Addr,
    /// Number of source addresses in the record.
    pub sources: u16,
}

impl GroupRecord {
    /// Whether the record says the sender wants the group's traffic: any-source
    /// membership (EXCLUDE mode, RFC 3376 §4.2.12) or a non-empty source list to include.
    pub const fn is_membership(&self) -> bool {
        match self.record_type {
            2 | 4 => true,
            1 | 3 | 5 => self.sources > 0,
            _ => false,
        }
    }
}

/// A checked IGMPv3 membership report (RFC 3376 §4.2): type 0x22, reserved, checksum,
/// reserved, number of group records, then the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgmpV3Report<'a> {
    message: &'a [u8],
    records: u16,
}

impl<'a> IgmpV3Report<'a> {
    /// Checks the type, the checksum and that every record is wholly present.
    pub fn new_checked(message: &'a [u8]) -> Result<IgmpV3Report<'a>> {
        check_len(message, 8)?;
        if message[0] != TYPE_REPORT_V3 {
            return Err(Error::Malformed("not an IGMPv3 membership report"));
        }
        let records = u16::from_be_bytes([message[6], message[7]]);
        let mut at = 8;
        for _ in 0..records {
            let header = message.get(at..at + 8).ok_or(Error::Truncated {
                needed: at + 8,
                got: message.len(),
            })?;
            let sources = usize::from(u16::from_be_bytes([header[2], header[3]]));
            at += 8 + 4 * sources + 4 * usize::from(header[1]);
        }
        check_len(message, at)?;
        // The checksum covers the whole IGMP message (RFC 3376 §4.2.2).
        if internet_checksum(message) != 0 {
            return Err(Error::BadChecksum);
        }
        Ok(IgmpV3Report { message, records })
    }

    /// The group records, in order.
    pub fn records(&self) -> impl Iterator<Item = GroupRecord> + 'a {
        let message = self.message;
        let mut at = 8;
        (0..self.records).map(move |_| {
            let header = &message[at..at + 8];
            let sources = u16::from_be_bytes([header[2], header[3]]);
            at += 8 + 4 * usize::from(sources) + 4 * usize::from(header[1]);
            GroupRecord {
                record_type: header[0],
                group: Ipv4Addr::new(header[4], header[5], header[6], header[7]),
                sources,
            }
        })
    }
}

/// Whether an IPv4 options field holds Router Alert (RFC 2113). Walks the option list
/// (RFC 791 §3.1); a malformed list simply has no Router Alert.
fn has_router_alert(mut options: &[u8]) -> bool {
    while let Some(&kind) = options.first() {
        match kind {
            0 => return false,
            1 => options = &options[1..],
            _ => {
                let Some(&len) = options.get(1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || len > options.len() {
                    return false;
                }
                if kind == ROUTER_ALERT[0] {
                    return true;
                }
                options = &options[len..];
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethernet::EthernetFrame;
    use proptest::prelude::*;

    /// Leave of 224.0.6.150, from smoltcp's RFC 2236 test vector.
    static LEAVE_BYTES: [u8; 8] = [0x17, 0x00, 0x02, 0x69, 0xe0, 0x00, 0x06, 0x96];
    /// Report of 225.0.0.37 (checksum computed by hand: !(0x1600 + 0xe100 + 0x0025)).
    static REPORT_BYTES: [u8; 8] = [0x16, 0x00, 0x08, 0xda, 0xe1, 0x00, 0x00, 0x25];

    #[test]
    fn leave_deconstruct() {
        let packet = IgmpPacket::new_checked(&LEAVE_BYTES[..]).unwrap();
        assert_eq!(
            IgmpRepr::parse(&packet).unwrap(),
            IgmpRepr::LeaveGroup {
                group: Ipv4Addr::new(224, 0, 6, 150)
            }
        );
    }

    #[test]
    fn report_construct() {
        let repr = IgmpRepr::MembershipReportV2 {
            group: Ipv4Addr::new(225, 0, 0, 37),
        };
        let mut bytes = [0xa5u8; 8];
        repr.emit(&mut IgmpPacket::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, REPORT_BYTES);
    }

    #[test]
    fn bad_checksum_and_types_are_errors() {
        let mut bytes = REPORT_BYTES;
        bytes[7] ^= 1;
        let packet = IgmpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(IgmpRepr::parse(&packet), Err(Error::BadChecksum));
        let mut v3 = REPORT_BYTES;
        v3[0] = TYPE_REPORT_V3;
        assert!(matches!(
            IgmpRepr::parse(&IgmpPacket::new_checked(&v3[..]).unwrap()),
            Err(Error::Unsupported(_))
        ));
    }

    /// An IGMPv3 report as Linux sends it on joining 239.255.0.10 (CHANGE_TO_EXCLUDE, no
    /// sources) plus a leave of 239.255.0.11 (CHANGE_TO_INCLUDE, no sources).
    fn v3_report() -> Vec<u8> {
        let mut message = vec![0x22, 0, 0, 0, 0, 0, 0, 2];
        message.extend_from_slice(&[4, 0, 0, 0, 239, 255, 0, 10]);
        message.extend_from_slice(&[3, 0, 0, 0, 239, 255, 0, 11]);
        let checksum = internet_checksum(&message);
        message[2..4].copy_from_slice(&checksum.to_be_bytes());
        message
    }

    #[test]
    fn v3_report_lists_joins_and_leaves() {
        let message = v3_report();
        let report = IgmpV3Report::new_checked(&message).unwrap();
        let records: Vec<GroupRecord> = report.records().collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].group, Ipv4Addr::new(239, 255, 0, 10));
        assert!(records[0].is_membership());
        assert!(!records[1].is_membership());
        let mut corrupt = message.clone();
        corrupt[12] ^= 1;
        assert_eq!(IgmpV3Report::new_checked(&corrupt), Err(Error::BadChecksum));
        // A record that claims more sources than the message holds is truncation.
        let mut short = message.clone();
        short[11] = 9;
        assert!(matches!(
            IgmpV3Report::new_checked(&short),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn frame_has_router_alert_ttl_1_and_group_mac() {
        let group = Ipv4Addr::new(239, 255, 0, 10);
        let src_mac = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
        let src_ip = Ipv4Addr::new(198, 18, 0, 1);
        let frame = IgmpRepr::MembershipReportV2 { group }.to_frame(src_mac, src_ip, None);
        let eth = EthernetFrame::parse(&frame).unwrap();
        assert_eq!(eth.dst, "01:00:5e:7f:00:0a".parse().unwrap());
        assert_eq!(eth.ethertype, ETHERTYPE_IPV4);
        let datagram = IgmpDatagram::parse(eth.payload).unwrap();
        assert_eq!(
            datagram,
            IgmpDatagram {
                src_ip,
                dst_ip: group,
                ttl: 1,
                router_alert: true,
                igmp: IgmpRepr::MembershipReportV2 { group },
            }
        );
        // IHL 6 (24-byte header), DSCP CS6.
        assert_eq!(eth.payload[0], 0x46);
        assert_eq!(eth.payload[1], 0xc0);
    }

    #[test]
    fn leave_goes_to_all_routers() {
        let leave = IgmpRepr::LeaveGroup {
            group: Ipv4Addr::new(239, 255, 0, 10),
        };
        assert_eq!(leave.ip_destination(), ALL_ROUTERS);
        let general = IgmpRepr::MembershipQuery {
            max_resp_time: 100,
            group: Ipv4Addr::UNSPECIFIED,
        };
        assert_eq!(general.ip_destination(), ALL_SYSTEMS);
    }

    #[test]
    fn router_alert_walk() {
        assert!(has_router_alert(&ROUTER_ALERT));
        assert!(has_router_alert(&[1, 1, 0x94, 4, 0, 0]));
        assert!(!has_router_alert(&[0, 0x94, 4, 0, 0]));
        assert!(!has_router_alert(&[0x44, 0]));
        assert!(!has_router_alert(&[0x44, 9, 0]));
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(kind in 0u8..4, max_resp in any::<u8>(), low in any::<[u8; 3]>()) {
            let group = Ipv4Addr::new(224 | (low[0] & 0x0f), low[1], low[2], low[0]);
            let repr = match kind {
                0 => IgmpRepr::MembershipQuery { max_resp_time: max_resp, group },
                1 => IgmpRepr::MembershipReportV1 { group },
                2 => IgmpRepr::MembershipReportV2 { group },
                _ => IgmpRepr::LeaveGroup { group },
            };
            let frame = repr.to_frame(MacAddr([2, 0, 0, 0, 0, 1]), Ipv4Addr::new(198, 18, 0, 1), Some(7));
            let eth = EthernetFrame::parse(&frame).unwrap();
            prop_assert_eq!(eth.vlan, Some(7));
            prop_assert_eq!(IgmpDatagram::parse(eth.payload).unwrap().igmp, repr);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = IgmpDatagram::parse(&bytes);
            if let Ok(report) = IgmpV3Report::new_checked(&bytes) {
                let _ = report.records().count();
            }
        }
    }
}

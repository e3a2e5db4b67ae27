//! ARP for Ethernet and IPv4 (RFC 826), and the kinds of ARP packet RFC 5227 and
//! RFC 5944 name.
//!
//! Layout (28 bytes for Ethernet/IPv4):
//!
//! ```text
//!  0      2      4   5   6      8         14     18        24     28
//! +------+------+---+---+------+---------+------+---------+------+
//! | htype| ptype|hln|pln| oper |   SHA   | SPA  |   THA   | TPA  |
//! +------+------+---+---+------+---------+------+---------+------+
//! ```
//!
//! [`ArpRepr::parse`] accepts hardware type 1 (Ethernet) or 6 (IEEE 802, which Linux also
//! accepts on Ethernet), protocol type 0x0800, lengths 6 and 4, and operations 1 and 2.
//! Everything else is an [`Error`]. Trailing bytes (Ethernet padding) are ignored.
//!
//! The reply to a request goes to the request's **sender hardware address** (RFC 826,
//! "Packet Reception"), never to the Ethernet source: see [`ArpRepr::reply_to`].

use crate::ethernet::{ETHERTYPE_ARP, EthernetRepr};
use crate::{Error, MacAddr, Result, check_len};
use std::net::Ipv4Addr;

mod field {
    use std::ops::Range;
    pub(super) const HTYPE: Range<usize> = 0..2;
    pub(super) const PTYPE: Range<usize> = 2..4;
    pub(super) const HLEN: usize = 4;
    pub(super) const PLEN: usize = 5;
    pub(super) const OPER: Range<usize> = 6..8;
    pub(super) const SHA: Range<usize> = 8..14;
    pub(super) const SPA: Range<usize> = 14..18;
    pub(super) const THA: Range<usize> = 18..24;
    pub(super) const TPA: Range<usize> = 24..28;
}

/// Bytes of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;
/// Hardware type Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// Hardware type IEEE 802 networks; Linux accepts it on Ethernet too.
pub const HTYPE_IEEE802: u16 = 6;
/// Protocol type IPv4.
pub const PTYPE_IPV4: u16 = 0x0800;

/// A read/write view of an ARP packet for Ethernet/IPv4.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer without checking its length. Accessors panic on a buffer shorter
    /// than [`PACKET_LEN`]; use this only for buffers sized by [`ArpRepr::buffer_len`].
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps a buffer, checking that it holds a whole Ethernet/IPv4 ARP packet. After
    /// this succeeds, no accessor panics.
    pub fn new_checked(buffer: T) -> Result<Self> {
        check_len(buffer.as_ref(), PACKET_LEN)?;
        Ok(ArpPacket { buffer })
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, range: std::ops::Range<usize>) -> u16 {
        let bytes = &self.buffer.as_ref()[range];
        u16::from_be_bytes([bytes[0], bytes[1]])
    }

    fn mac_at(&self, range: std::ops::Range<usize>) -> MacAddr {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[range]);
        MacAddr(mac)
    }

    fn ip_at(&self, range: std::ops::Range<usize>) -> Ipv4Addr {
        let mut ip = [0; 4];
        ip.copy_from_slice(&self.buffer.as_ref()[range]);
        Ipv4Addr::from(ip)
    }

    /// Hardware type.
    pub fn hardware_type(&self) -> u16 {
        self.u16_at(field::HTYPE)
    }
    /// Protocol type.
    pub fn protocol_type(&self) -> u16 {
        self.u16_at(field::PTYPE)
    }
    /// Hardware address length.
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }
    /// Protocol address length.
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }
    /// Operation code: 1 request, 2 reply.
    pub fn operation(&self) -> u16 {
        self.u16_at(field::OPER)
    }
    /// Sender hardware address (SHA).
    pub fn sender_mac(&self) -> MacAddr {
        self.mac_at(field::SHA)
    }
    /// Sender protocol address (SPA).
    pub fn sender_ip(&self) -> Ipv4Addr {
        self.ip_at(field::SPA)
    }
    /// Target hardware address (THA).
    pub fn target_mac(&self) -> MacAddr {
        self.mac_at(field::THA)
    }
    /// Target protocol address (TPA).
    pub fn target_ip(&self) -> Ipv4Addr {
        self.ip_at(field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    fn buf(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    /// Sets the hardware type.
    pub fn set_hardware_type(&mut self, value: u16) {
        self.buf()[field::HTYPE].copy_from_slice(&value.to_be_bytes());
    }
    /// Sets the protocol type.
    pub fn set_protocol_type(&mut self, value: u16) {
        self.buf()[field::PTYPE].copy_from_slice(&value.to_be_bytes());
    }
    /// Sets the hardware address length.
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buf()[field::HLEN] = value;
    }
    /// Sets the protocol address length.
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buf()[field::PLEN] = value;
    }
    /// Sets the operation code.
    pub fn set_operation(&mut self, value: u16) {
        self.buf()[field::OPER].copy_from_slice(&value.to_be_bytes());
    }
    /// Sets the sender hardware address.
    pub fn set_sender_mac(&mut self, value: MacAddr) {
        self.buf()[field::SHA].copy_from_slice(&value.octets());
    }
    /// Sets the sender protocol address.
    pub fn set_sender_ip(&mut self, value: Ipv4Addr) {
        self.buf()[field::SPA].copy_from_slice(&value.octets());
    }
    /// Sets the target hardware address.
    pub fn set_target_mac(&mut self, value: MacAddr) {
        self.buf()[field::THA].copy_from_slice(&value.octets());
    }
    /// Sets the target protocol address.
    pub fn set_target_ip(&mut self, value: Ipv4Addr) {
        self.buf()[field::TPA].copy_from_slice(&value.octets());
    }
}

/// ARP operation (RFC 826).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// 1: who has TPA? tell SPA.
    Request,
    /// 2: SPA is at SHA.
    Reply,
}

impl ArpOperation {
    /// The operation code on the wire.
    pub const fn code(self) -> u16 {
        match self {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
        }
    }
}

/// What an ARP packet is for, by the rules of RFC 5227 §2 and RFC 5944 §4.6 (and the
/// same tests Wireshark and Linux's `arp_is_garp()` apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArpKind {
    /// An ordinary request: SPA is the asker's address, TPA the address asked for.
    Request,
    /// An ordinary reply, including a reply to a probe (TPA 0.0.0.0).
    Reply,
    /// RFC 5227 probe: a request with SPA 0.0.0.0, sent before claiming TPA.
    Probe,
    /// RFC 5227 announcement: a request with SPA = TPA and THA zero.
    Announcement,
    /// A gratuitous request that is not a strict announcement: SPA = TPA, THA not zero
    /// (some stacks put the broadcast address or their own MAC there).
    GratuitousRequest,
    /// RFC 5944 §4.6 gratuitous reply: SPA = TPA. Linux also wants THA = SHA before it
    /// treats one as gratuitous; see [`ArpRepr::is_strict_gratuitous_reply`].
    GratuitousReply,
}

impl ArpKind {
    /// Whether the packet announces its sender's binding without being asked
    /// (announcements and both gratuitous kinds).
    pub const fn is_gratuitous(self) -> bool {
        matches!(
            self,
            ArpKind::Announcement | ArpKind::GratuitousRequest | ArpKind::GratuitousReply
        )
    }
}

/// A parsed Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request or reply.
    pub operation: ArpOperation,
    /// Sender hardware address (SHA): the address to answer and to cache.
    pub sender_mac: MacAddr,
    /// Sender protocol address (SPA); 0.0.0.0 in a probe.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address (THA); zero in requests.
    pub target_mac: MacAddr,
    /// Target protocol address (TPA).
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Parses and validates a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr> {
        if !matches!(packet.hardware_type(), HTYPE_ETHERNET | HTYPE_IEEE802) {
            return Err(Error::Malformed("ARP hardware type is not Ethernet"));
        }
        if packet.protocol_type() != PTYPE_IPV4 {
            return Err(Error::Malformed("ARP protocol type is not IPv4"));
        }
        if packet.hardware_len() != 6 {
            return Err(Error::Malformed("ARP hardware address length is not 6"));
        }
        if packet.protocol_len() != 4 {
            return Err(Error::Malformed("ARP protocol address length is not 4"));
        }
        let operation = match packet.operation() {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            _ => {
                return Err(Error::Malformed(
                    "ARP operation is neither request nor reply",
                ));
            }
        };
        Ok(ArpRepr {
            operation,
            sender_mac: packet.sender_mac(),
            sender_ip: packet.sender_ip(),
            target_mac: packet.target_mac(),
            target_ip: packet.target_ip(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet into a buffer of at least [`buffer_len`](Self::buffer_len) bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(PTYPE_IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation.code());
        packet.set_sender_mac(self.sender_mac);
        packet.set_sender_ip(self.sender_ip);
        packet.set_target_mac(self.target_mac);
        packet.set_target_ip(self.target_ip);
    }

    /// The packet's kind. Gratuitous tests come first, so SPA = TPA = 0.0.0.0 counts as
    /// gratuitous, as in Wireshark.
    pub fn kind(&self) -> ArpKind {
        let gratuitous = self.sender_ip == self.target_ip;
        match self.operation {
            ArpOperation::Request if gratuitous && self.target_mac.is_zero() => {
                ArpKind::Announcement
            }
            ArpOperation::Request if gratuitous => ArpKind::GratuitousRequest,
            ArpOperation::Request if self.sender_ip.is_unspecified() => ArpKind::Probe,
            ArpOperation::Request => ArpKind::Request,
            ArpOperation::Reply if gratuitous => ArpKind::GratuitousReply,
            ArpOperation::Reply => ArpKind::Reply,
        }
    }

    /// A gratuitous reply that also has THA = SHA, which Linux requires before it lets
    /// one override a recent cache entry.
    pub fn is_strict_gratuitous_reply(&self) -> bool {
        self.kind() == ArpKind::GratuitousReply && self.target_mac == self.sender_mac
    }

    /// A request from `sender_mac`/`sender_ip` for `target_ip`.
    pub const fn request(sender_mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Self {
        ArpRepr {
            operation: ArpOperation::Request,
            sender_mac,
            sender_ip,
            target_mac: MacAddr::ZERO,
            target_ip,
        }
    }

    /// An RFC 5227 probe for `candidate`: SPA 0.0.0.0, THA zero.
    pub const fn probe(sender_mac: MacAddr, candidate: Ipv4Addr) -> Self {
        Self::request(sender_mac, Ipv4Addr::UNSPECIFIED, candidate)
    }

    /// An RFC 5227 announcement (also the defensive ARP of §2.4): SPA = TPA = `ip`,
    /// THA zero.
    pub const fn announcement(sender_mac: MacAddr, ip: Ipv4Addr) -> Self {
        Self::request(sender_mac, ip, ip)
    }

    /// An RFC 5944 §4.6 gratuitous reply: SPA = TPA = `ip`, THA = SHA.
    pub const fn gratuitous_reply(sender_mac: MacAddr, ip: Ipv4Addr) -> Self {
        ArpRepr {
            operation: ArpOperation::Reply,
            sender_mac,
            sender_ip: ip,
            target_mac: sender_mac,
            target_ip: ip,
        }
    }

    /// The reply to `request` saying `our_ip` is at `our_mac`. It is addressed to the
    /// request's SHA and SPA, as RFC 826 says; for a probe (SPA 0.0.0.0) the TPA is
    /// 0.0.0.0 too, as RFC 5227 §2.5 and Linux do.
    pub const fn reply_to(request: &ArpRepr, our_mac: MacAddr, our_ip: Ipv4Addr) -> Self {
        ArpRepr {
            operation: ArpOperation::Reply,
            sender_mac: our_mac,
            sender_ip: our_ip,
            target_mac: request.sender_mac,
            target_ip: request.sender_ip,
        }
    }

    /// The Ethernet destination this packet should go to: the target's hardware address
    /// for an ordinary reply, broadcast for everything else (RFC 5944 §4.6 says a
    /// gratuitous reply MUST be broadcast).
    pub fn ethernet_destination(&self) -> MacAddr {
        match self.kind() {
            ArpKind::Reply => self.target_mac,
            _ => MacAddr::BROADCAST,
        }
    }

    /// The whole Ethernet frame, sent from `eth_src` (a host's own MAC; the cluster MAC
    /// goes in the ARP sender field, never in the Ethernet source) to
    /// [`ethernet_destination`](Self::ethernet_destination).
    pub fn to_frame(&self, eth_src: MacAddr, vlan: Option<u16>) -> Vec<u8> {
        let mut payload = [0u8; PACKET_LEN];
        self.emit(&mut ArpPacket::new_unchecked(&mut payload[..]));
        EthernetRepr {
            dst: self.ethernet_destination(),
            src: eth_src,
            vlan,
            ethertype: ETHERTYPE_ARP,
        }
        .frame(&payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethernet::EthernetFrame;
    use proptest::prelude::*;

    /// A request from 192.168.1.10 (52:54:00:12:34:56) for 192.168.1.1, as Linux sends it.
    static REQUEST_BYTES: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc0,
        0xa8, 0x01, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x01,
    ];

    fn host_mac() -> MacAddr {
        MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
    }

    #[test]
    fn request_deconstruct() {
        let packet = ArpPacket::new_checked(&REQUEST_BYTES[..]).unwrap();
        let repr = ArpRepr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            ArpRepr::request(
                host_mac(),
                Ipv4Addr::new(192, 168, 1, 10),
                Ipv4Addr::new(192, 168, 1, 1)
            )
        );
        assert_eq!(repr.kind(), ArpKind::Request);
    }

    #[test]
    fn request_construct() {
        let repr = ArpRepr::parse(&ArpPacket::new_checked(&REQUEST_BYTES[..]).unwrap()).unwrap();
        let mut bytes = [0xa5u8; 28];
        repr.emit(&mut ArpPacket::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, REQUEST_BYTES);
    }

    #[test]
    fn classification() {
        let vip = Ipv4Addr::new(198, 18, 0, 10);
        let other = Ipv4Addr::new(198, 18, 0, 20);
        let mac = host_mac();
        assert_eq!(ArpRepr::probe(mac, vip).kind(), ArpKind::Probe);
        assert_eq!(
            ArpRepr::announcement(mac, vip).kind(),
            ArpKind::Announcement
        );
        let garp_request = ArpRepr {
            target_mac: MacAddr::BROADCAST,
            ..ArpRepr::announcement(mac, vip)
        };
        assert_eq!(garp_request.kind(), ArpKind::GratuitousRequest);
        let garp_reply = ArpRepr::gratuitous_reply(mac, vip);
        assert_eq!(garp_reply.kind(), ArpKind::GratuitousReply);
        assert!(garp_reply.is_strict_gratuitous_reply());
        let loose_reply = ArpRepr {
            target_mac: MacAddr::BROADCAST,
            ..garp_reply
        };
        assert_eq!(loose_reply.kind(), ArpKind::GratuitousReply);
        assert!(!loose_reply.is_strict_gratuitous_reply());
        let request = ArpRepr::request(mac, other, vip);
        assert_eq!(request.kind(), ArpKind::Request);
        assert_eq!(ArpRepr::reply_to(&request, mac, vip).kind(), ArpKind::Reply);
        assert!(ArpKind::Announcement.is_gratuitous());
        assert!(!ArpKind::Probe.is_gratuitous());
    }

    #[test]
    fn reply_goes_to_arp_sender_not_ethernet_source() {
        // Seed 000: the Ethernet source of a masked NLB request differs from its SHA.
        let cluster_mac: MacAddr = "02:bf:c6:12:00:0a".parse().unwrap();
        let asker_sha: MacAddr = "02:01:c6:12:00:0a".parse().unwrap();
        let request = ArpRepr::request(
            asker_sha,
            Ipv4Addr::new(198, 18, 0, 1),
            Ipv4Addr::new(198, 18, 0, 10),
        );
        let reply = ArpRepr::reply_to(&request, cluster_mac, Ipv4Addr::new(198, 18, 0, 10));
        let frame = reply.to_frame(host_mac(), None);
        let eth = EthernetFrame::parse(&frame).unwrap();
        assert_eq!(eth.dst, asker_sha);
        assert_eq!(eth.src, host_mac());
        let parsed = ArpRepr::parse(&ArpPacket::new_checked(eth.payload).unwrap()).unwrap();
        assert_eq!(parsed.sender_mac, cluster_mac);
        assert_eq!(parsed.target_mac, asker_sha);
    }

    #[test]
    fn probe_reply_targets_zero_address() {
        let probe = ArpRepr::probe(host_mac(), Ipv4Addr::new(198, 18, 0, 10));
        let reply = ArpRepr::reply_to(&probe, MacAddr([2, 0xbf, 198, 18, 0, 10]), probe.target_ip);
        assert_eq!(reply.target_ip, Ipv4Addr::UNSPECIFIED);
        assert_eq!(reply.ethernet_destination(), host_mac());
    }

    #[test]
    fn malformed_fields_are_named() {
        let cases: [(usize, u8, &str); 5] = [
            (1, 0x07, "ARP hardware type is not Ethernet"),
            (3, 0x06, "ARP protocol type is not IPv4"),
            (4, 8, "ARP hardware address length is not 6"),
            (5, 16, "ARP protocol address length is not 4"),
            (7, 3, "ARP operation is neither request nor reply"),
        ];
        for (offset, value, want) in cases {
            let mut bytes = REQUEST_BYTES;
            bytes[offset] = value;
            let packet = ArpPacket::new_checked(&bytes[..]).unwrap();
            assert_eq!(ArpRepr::parse(&packet), Err(Error::Malformed(want)));
        }
        assert_eq!(
            ArpPacket::new_checked(&REQUEST_BYTES[..27]).unwrap_err(),
            Error::Truncated {
                needed: 28,
                got: 27
            }
        );
    }

    fn any_mac() -> impl Strategy<Value = MacAddr> {
        any::<[u8; 6]>().prop_map(MacAddr)
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(
            reply in any::<bool>(),
            sender_mac in any_mac(),
            sender_ip in any::<[u8; 4]>(),
            target_mac in any_mac(),
            target_ip in any::<[u8; 4]>(),
        ) {
            let repr = ArpRepr {
                operation: if reply { ArpOperation::Reply } else { ArpOperation::Request },
                sender_mac,
                sender_ip: sender_ip.into(),
                target_mac,
                target_ip: target_ip.into(),
            };
            let frame = repr.to_frame(sender_mac, None);
            let eth = EthernetFrame::parse(&frame).unwrap();
            let parsed = ArpRepr::parse(&ArpPacket::new_checked(eth.payload).unwrap()).unwrap();
            prop_assert_eq!(parsed, repr);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(packet) = ArpPacket::new_checked(&bytes[..]) {
                let _ = ArpRepr::parse(&packet);
            }
        }
    }
}

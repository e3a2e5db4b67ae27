//! Link layers to one Ethernet-shaped view: Ethernet II with up to two 802.1Q tags, and
//! Linux cooked captures v1 and v2 (`tcpdump -i any`), whose header holds the sender's
//! hardware address but no destination.
//!
//! SLL header (16 bytes): packet type, ARPHRD type, address length, 8 address bytes,
//! protocol. SLL2 header (20 bytes): protocol, reserved, interface index, ARPHRD type,
//! packet type, address length, 8 address bytes. The "Ethernet source" of a cooked frame
//! is its address when the ARPHRD type is Ethernet (1) and the length is 6. Its
//! destination is inferred where the packet type allows: broadcast, or the IPv4 multicast
//! MAC of an IPv4 multicast destination (RFC 1112 §6.4).

use crate::capture::{LinkType, Record};
use nlb_wire::addressing::ipv4_multicast_mac;
use nlb_wire::ethernet::{ETHERTYPE_IPV4, EthernetFrame};
use nlb_wire::{Error, MacAddr};
use std::net::Ipv4Addr;

/// A frame in the Ethernet view.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// 1-based frame number.
    pub number: u64,
    /// Capture time, ns since the Unix epoch.
    pub ts_ns: i64,
    /// Outer VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// Ethernet source, when the link layer has one.
    pub src: Option<MacAddr>,
    /// Ethernet destination, when known.
    pub dst: Option<MacAddr>,
    /// EtherType after any tags.
    pub ethertype: u16,
    /// Bytes after the link-layer header (may include Ethernet padding).
    pub payload: &'a [u8],
    /// Whether the capture cut the frame short (snap length).
    pub cut: bool,
}

/// Why a record has no Ethernet view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkProblem {
    /// Shorter than its link-layer header.
    Truncated,
    /// A header that cannot be right (too many VLAN tags, say).
    Malformed(&'static str),
    /// A link type the doctor does not read.
    Unsupported,
}

const SLL_LEN: usize = 16;
const SLL2_LEN: usize = 20;
const ARPHRD_ETHER: u16 = 1;
const PACKET_BROADCAST: u8 = 1;
const PACKET_MULTICAST: u8 = 2;
const ETHERTYPE_VLAN: u16 = 0x8100;

/// Decodes a record's link layer.
pub fn decode<'a>(record: &Record<'a>) -> Result<Frame<'a>, LinkProblem> {
    let data = record.data;
    let cut = (record.orig_len as usize) > data.len();
    let mut frame = Frame {
        number: record.number,
        ts_ns: record.ts_ns,
        vlan: None,
        src: None,
        dst: None,
        ethertype: 0,
        payload: &[],
        cut,
    };
    let (packet_type, hatype, halen, address, protocol, rest) = match record.link {
        LinkType::Ethernet => {
            let eth = EthernetFrame::parse(data).map_err(|err| match err {
                Error::Malformed(why) => LinkProblem::Malformed(why),
                _ => LinkProblem::Truncated,
            })?;
            // VID 0 is a priority tag (802.1p), not a VLAN: the frame is untagged traffic.
            frame.vlan = eth.vlan.filter(|&vid| vid != 0);
            frame.src = Some(eth.src);
            frame.dst = Some(eth.dst);
            frame.ethertype = eth.ethertype;
            frame.payload = eth.payload;
            return Ok(frame);
        }
        LinkType::LinuxSll => {
            let header = data.get(..SLL_LEN).ok_or(LinkProblem::Truncated)?;
            (
                header[1],
                u16::from_be_bytes([header[2], header[3]]),
                u16::from_be_bytes([header[4], header[5]]),
                &header[6..14],
                u16::from_be_bytes([header[14], header[15]]),
                &data[SLL_LEN..],
            )
        }
        LinkType::LinuxSll2 => {
            let header = data.get(..SLL2_LEN).ok_or(LinkProblem::Truncated)?;
            (
                header[10],
                u16::from_be_bytes([header[8], header[9]]),
                u16::from(header[11]),
                &header[12..20],
                u16::from_be_bytes([header[0], header[1]]),
                &data[SLL2_LEN..],
            )
        }
        LinkType::Other(_) => return Err(LinkProblem::Unsupported),
    };
    if hatype == ARPHRD_ETHER && halen == 6 {
        frame.src = Some(MacAddr(address[..6].try_into().expect("6 bytes")));
    }
    frame.ethertype = protocol;
    frame.payload = rest;
    // libpcap puts a VLAN tag back in front of the payload when the kernel stripped it.
    if protocol == ETHERTYPE_VLAN {
        let tag = rest.get(..4).ok_or(LinkProblem::Truncated)?;
        frame.vlan = Some(u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff).filter(|&vid| vid != 0);
        frame.ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        frame.payload = &rest[4..];
    }
    frame.dst = match packet_type {
        PACKET_BROADCAST => Some(MacAddr::BROADCAST),
        PACKET_MULTICAST if frame.ethertype == ETHERTYPE_IPV4 => frame
            .payload
            .get(16..20)
            .map(|d| Ipv4Addr::new(d[0], d[1], d[2], d[3]))
            .filter(Ipv4Addr::is_multicast)
            .map(ipv4_multicast_mac),
        _ => None,
    };
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(link: LinkType, data: &[u8]) -> Record<'_> {
        Record {
            number: 7,
            ts_ns: 1,
            link,
            data,
            orig_len: data.len() as u32,
        }
    }

    #[test]
    fn sll_source_comes_from_the_address_field() {
        let mut data = vec![0, 1, 0, 1, 0, 6, 2, 0xbf, 1, 2, 3, 4, 0, 0, 0x08, 0x06];
        data.extend_from_slice(&[0u8; 28]);
        let frame = decode(&record(LinkType::LinuxSll, &data)).unwrap();
        assert_eq!(frame.src, Some(MacAddr([2, 0xbf, 1, 2, 3, 4])));
        assert_eq!(frame.dst, Some(MacAddr::BROADCAST));
        assert_eq!(frame.ethertype, 0x0806);
        assert_eq!(frame.payload.len(), 28);
    }

    #[test]
    fn sll2_with_a_vlan_tag() {
        let mut data = vec![
            0x81, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 1, 1, 2, 3, 4, 0, 0,
        ];
        data.extend_from_slice(&[0x00, 0x0a, 0x08, 0x06]);
        data.extend_from_slice(&[0u8; 28]);
        let frame = decode(&record(LinkType::LinuxSll2, &data)).unwrap();
        assert_eq!(frame.vlan, Some(10));
        assert_eq!(frame.ethertype, 0x0806);
        assert_eq!(frame.src, Some(MacAddr([2, 1, 1, 2, 3, 4])));
        assert_eq!(frame.dst, None);
    }

    #[test]
    fn short_headers_are_truncation() {
        assert_eq!(
            decode(&record(LinkType::LinuxSll2, &[0; 19])).err(),
            Some(LinkProblem::Truncated)
        );
        assert_eq!(
            decode(&record(LinkType::Ethernet, &[0; 13])).err(),
            Some(LinkProblem::Truncated)
        );
        assert_eq!(
            decode(&record(LinkType::Other(105), &[0; 40])).err(),
            Some(LinkProblem::Unsupported)
        );
    }
}

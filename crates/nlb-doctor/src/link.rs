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
//!
//! A frame's VLAN is its whole tag stack ([`Vlan`]): the outer (service) tag and, on a
//! QinQ frame (IEEE 802.1ad), the inner (customer) tag. Findings are keyed by the stack,
//! so customer VLANs under one service VLAN stay apart. A VID of 0 is a priority tag
//! (802.1p), not a VLAN, and is left out of the stack.

use crate::capture::{LinkType, Record};
use nlb_wire::addressing::ipv4_multicast_mac;
use nlb_wire::ethernet::{ETHERTYPE_IPV4, EthernetFrame};
use nlb_wire::{Error, MacAddr};
use std::fmt;
use std::net::Ipv4Addr;

/// The VLAN tags of a frame, outer first: a service tag and, on a QinQ frame, a
/// customer tag. Shown as `100` or `100.200` (outer.inner, as Linux names the
/// stacked interface `eth0.100.200`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vlan {
    /// The outer tag's VLAN id.
    pub outer: u16,
    /// The inner tag's VLAN id, on a double-tagged frame.
    pub inner: Option<u16>,
}

impl Vlan {
    /// The stack of these tags (VIDs as received); `None` when no tag names a VLAN.
    pub fn from_tags(outer: Option<u16>, inner: Option<u16>) -> Option<Vlan> {
        let vlan = |vid: Option<u16>| vid.map(|v| v & 0x0fff).filter(|&v| v != 0);
        match (vlan(outer), vlan(inner)) {
            (Some(outer), inner) => Some(Vlan { outer, inner }),
            // A priority tag in front of a VLAN tag: the VLAN is the one that counts.
            (None, Some(outer)) => Some(Vlan { outer, inner: None }),
            (None, None) => None,
        }
    }

    /// A single tag.
    pub fn single(vid: u16) -> Vlan {
        Vlan {
            outer: vid,
            inner: None,
        }
    }
}

impl fmt::Display for Vlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner {
            Some(inner) => write!(f, "{}.{inner}", self.outer),
            None => write!(f, "{}", self.outer),
        }
    }
}

/// A frame in the Ethernet view.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// 1-based frame number.
    pub number: u64,
    /// Capture time, ns since the Unix epoch.
    pub ts_ns: i64,
    /// The VLAN tags, if tagged.
    pub vlan: Option<Vlan>,
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

/// 802.1Q, 802.1ad (QinQ service tag) and the older 0x9100 double-tagging TPID.
fn is_vlan_tpid(ethertype: u16) -> bool {
    matches!(ethertype, 0x8100 | 0x88a8 | 0x9100)
}

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
            frame.vlan = Vlan::from_tags(eth.vlan, eth.inner_vlan);
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
    // libpcap puts a VLAN tag back in front of the payload when the kernel stripped it;
    // the inner tag of a QinQ frame follows it in the payload.
    let mut tags = [None; 2];
    let mut depth = 0;
    while is_vlan_tpid(frame.ethertype) {
        if depth == tags.len() {
            return Err(LinkProblem::Malformed("link: more than two VLAN tags"));
        }
        let tag = frame.payload.get(..4).ok_or(LinkProblem::Truncated)?;
        tags[depth] = Some(u16::from_be_bytes([tag[0], tag[1]]));
        frame.ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        frame.payload = &frame.payload[4..];
        depth += 1;
    }
    frame.vlan = Vlan::from_tags(tags[0], tags[1]);
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
        assert_eq!(frame.vlan, Some(Vlan::single(10)));
        assert_eq!(frame.ethertype, 0x0806);
        assert_eq!(frame.src, Some(MacAddr([2, 1, 1, 2, 3, 4])));
        assert_eq!(frame.dst, None);
    }

    #[test]
    fn sll_with_a_qinq_stack_keeps_both_tags() {
        let mut data = vec![0, 1, 0, 1, 0, 6, 2, 1, 1, 2, 3, 4, 0, 0, 0x88, 0xa8];
        data.extend_from_slice(&[0x00, 0x64, 0x81, 0x00, 0x00, 0xc8, 0x08, 0x06]);
        data.extend_from_slice(&[0u8; 28]);
        let frame = decode(&record(LinkType::LinuxSll, &data)).unwrap();
        let vlan = frame.vlan.unwrap();
        assert_eq!((vlan.outer, vlan.inner), (100, Some(200)));
        assert_eq!(vlan.to_string(), "100.200");
        assert_eq!(frame.ethertype, 0x0806);
        assert_eq!(frame.payload.len(), 28);
    }

    #[test]
    fn ethernet_qinq_and_priority_tags() {
        let frame = |tags: &[(u16, u16)]| {
            let mut data = vec![0xff; 6];
            data.extend_from_slice(&[2, 1, 1, 2, 3, 4]);
            for &(tpid, vid) in tags {
                data.extend_from_slice(&tpid.to_be_bytes());
                data.extend_from_slice(&vid.to_be_bytes());
            }
            data.extend_from_slice(&[0x08, 0x06]);
            data.extend_from_slice(&[0u8; 28]);
            data
        };
        let vlan_of = |data: Vec<u8>| decode(&record(LinkType::Ethernet, &data)).unwrap().vlan;
        assert_eq!(
            vlan_of(frame(&[(0x88a8, 100), (0x8100, 200)])),
            Some(Vlan {
                outer: 100,
                inner: Some(200)
            })
        );
        // A priority tag (VID 0, PCP set) is no VLAN, alone or in front of one.
        assert_eq!(vlan_of(frame(&[(0x8100, 0xa000)])), None);
        assert_eq!(
            vlan_of(frame(&[(0x8100, 0xa000), (0x8100, 30)])),
            Some(Vlan::single(30))
        );
        assert_eq!(vlan_of(frame(&[(0x8100, 0xe00a)])), Some(Vlan::single(10)));
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

//! Ethernet II framing with up to two VLAN tags (IEEE 802.1Q, 802.1ad), parsed with
//! etherparse.
//!
//! [`EthernetFrame::parse`] strips the tags and exposes the inner EtherType and payload.
//! [`EthernetRepr::frame`] builds a frame around a payload, padded to the 60-byte minimum
//! (without FCS) that real NICs enforce and that veth does not.

use crate::{Error, MacAddr, Result};
use etherparse::{EtherType, Ethernet2Header, Ethernet2Slice, SingleVlanHeader, SingleVlanSlice};

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP (RFC 826).
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of nlb heartbeats by default: IEEE 802 "local experimental 1".
pub const ETHERTYPE_NLB_HEARTBEAT: u16 = 0x88b5;
/// EtherType of Windows NLB heartbeats (IEEE-registered to Microsoft).
pub const ETHERTYPE_MS_NLB: u16 = 0x886f;
/// EtherType of pre-WLBS Convoy heartbeats (MS Q232711).
pub const ETHERTYPE_MS_NLB_LEGACY: u16 = 0xbf01;

/// Shortest Ethernet frame without FCS; shorter frames are padded with zeros.
pub const MIN_FRAME_LEN: usize = 60;

/// A parsed Ethernet frame that borrows its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<'a> {
    /// Destination address.
    pub dst: MacAddr,
    /// Source address.
    pub src: MacAddr,
    /// VLAN id of the outer tag, if the frame is tagged.
    pub vlan: Option<u16>,
    /// VLAN id of the inner tag of a double-tagged (QinQ) frame.
    pub inner_vlan: Option<u16>,
    /// EtherType after the tags.
    pub ethertype: u16,
    /// Everything after the header and tags, including any padding.
    pub payload: &'a [u8],
}

fn is_vlan_tpid(ethertype: EtherType) -> bool {
    matches!(
        ethertype,
        EtherType::VLAN_TAGGED_FRAME
            | EtherType::PROVIDER_BRIDGING
            | EtherType::VLAN_DOUBLE_TAGGED_FRAME
    )
}

fn truncated(err: etherparse::err::LenError) -> Error {
    Error::Truncated {
        needed: err.required_len,
        got: err.len,
    }
}

impl<'a> EthernetFrame<'a> {
    /// Parses an Ethernet II frame without FCS, with at most two VLAN tags.
    pub fn parse(bytes: &'a [u8]) -> Result<EthernetFrame<'a>> {
        let eth = Ethernet2Slice::from_slice_without_fcs(bytes).map_err(truncated)?;
        let mut ethertype = eth.ether_type();
        let mut payload = eth.payload_slice();
        let mut tags = [None; 2];
        let mut depth = 0;
        while is_vlan_tpid(ethertype) {
            if depth == tags.len() {
                return Err(Error::Malformed("more than two VLAN tags"));
            }
            let tag = SingleVlanSlice::from_slice(payload).map_err(|err| Error::Truncated {
                needed: bytes.len() - payload.len() + err.required_len,
                got: bytes.len(),
            })?;
            tags[depth] = Some(tag.vlan_identifier().value());
            ethertype = tag.ether_type();
            payload = tag.payload_slice();
            depth += 1;
        }
        Ok(EthernetFrame {
            dst: MacAddr(eth.destination()),
            src: MacAddr(eth.source()),
            vlan: tags[0],
            inner_vlan: tags[1],
            ethertype: ethertype.0,
            payload,
        })
    }
}

/// The header of a frame to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Destination address.
    pub dst: MacAddr,
    /// Source address: always the sending host's own MAC in nlb, never a cluster MAC.
    pub src: MacAddr,
    /// 802.1Q VLAN id to tag with, if any.
    pub vlan: Option<u16>,
    /// EtherType of the payload.
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Bytes of header, including the VLAN tag.
    pub fn header_len(&self) -> usize {
        Ethernet2Header::LEN
            + if self.vlan.is_some() {
                SingleVlanHeader::LEN
            } else {
                0
            }
    }

    /// The whole frame: header, `payload`, and zero padding up to [`MIN_FRAME_LEN`].
    ///
    /// # Panics
    /// If `vlan` is above 4095, which no parsed frame and no valid configuration produces.
    pub fn frame(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity((self.header_len() + payload.len()).max(MIN_FRAME_LEN));
        let outer_type = if self.vlan.is_some() {
            EtherType::VLAN_TAGGED_FRAME
        } else {
            EtherType(self.ethertype)
        };
        out.extend_from_slice(
            &Ethernet2Header {
                destination: self.dst.octets(),
                source: self.src.octets(),
                ether_type: outer_type,
            }
            .to_bytes(),
        );
        if let Some(vlan) = self.vlan {
            let vlan_id = etherparse::VlanId::try_new(vlan).expect("VLAN id is at most 4095");
            out.extend_from_slice(
                &SingleVlanHeader {
                    pcp: etherparse::VlanPcp::ZERO,
                    drop_eligible_indicator: false,
                    vlan_id,
                    ether_type: EtherType(self.ethertype),
                }
                .to_bytes(),
            );
        }
        out.extend_from_slice(payload);
        if out.len() < MIN_FRAME_LEN {
            out.resize(MIN_FRAME_LEN, 0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);

    #[test]
    fn untagged_frame_round_trips_and_is_padded() {
        let repr = EthernetRepr {
            dst: MacAddr::BROADCAST,
            src: SRC,
            vlan: None,
            ethertype: ETHERTYPE_ARP,
        };
        let bytes = repr.frame(&[1, 2, 3]);
        assert_eq!(bytes.len(), MIN_FRAME_LEN);
        let frame = EthernetFrame::parse(&bytes).unwrap();
        assert_eq!(frame.dst, MacAddr::BROADCAST);
        assert_eq!(frame.src, SRC);
        assert_eq!(frame.vlan, None);
        assert_eq!(frame.ethertype, ETHERTYPE_ARP);
        assert_eq!(&frame.payload[..3], &[1, 2, 3]);
    }

    #[test]
    fn tagged_frame_exposes_vlan_and_inner_type() {
        let repr = EthernetRepr {
            dst: MacAddr::BROADCAST,
            src: SRC,
            vlan: Some(42),
            ethertype: ETHERTYPE_NLB_HEARTBEAT,
        };
        let bytes = repr.frame(&[0xaa; 50]);
        assert_eq!(&bytes[12..14], &[0x81, 0x00]);
        let frame = EthernetFrame::parse(&bytes).unwrap();
        assert_eq!(frame.vlan, Some(42));
        assert_eq!(frame.inner_vlan, None);
        assert_eq!(frame.ethertype, ETHERTYPE_NLB_HEARTBEAT);
        assert_eq!(frame.payload, &[0xaa; 50][..]);
    }

    #[test]
    fn double_tagged_frame() {
        let mut bytes = vec![0xff; 12];
        bytes.extend_from_slice(&[0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x14, 0x08, 0x06]);
        bytes.extend_from_slice(&[0; 28]);
        let frame = EthernetFrame::parse(&bytes).unwrap();
        assert_eq!((frame.vlan, frame.inner_vlan), (Some(10), Some(20)));
        assert_eq!(frame.ethertype, ETHERTYPE_ARP);
    }

    #[test]
    fn short_and_over_tagged_frames_are_errors() {
        assert!(matches!(
            EthernetFrame::parse(&[0; 13]),
            Err(Error::Truncated {
                needed: 14,
                got: 13
            })
        ));
        let mut cut_tag = vec![0xff; 12];
        cut_tag.extend_from_slice(&[0x81, 0x00, 0x00]);
        assert!(matches!(
            EthernetFrame::parse(&cut_tag),
            Err(Error::Truncated {
                needed: 18,
                got: 15
            })
        ));
        let mut three_tags = vec![0xff; 12];
        for _ in 0..3 {
            three_tags.extend_from_slice(&[0x81, 0x00, 0x00, 0x01]);
        }
        three_tags.extend_from_slice(&[0x08, 0x00]);
        assert_eq!(
            EthernetFrame::parse(&three_tags),
            Err(Error::Malformed("more than two VLAN tags"))
        );
    }
}

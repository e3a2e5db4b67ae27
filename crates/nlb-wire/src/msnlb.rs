//! Windows NLB heartbeats (EtherType 0x886F), decode only, for diagnostics.
//!
//! The layout comes from public sources: Wireshark's `packet-msnlb.c` dissector and
//! Microsoft KB articles (see the project's `reference/nlb.md`). nlb never sends these
//! frames; the hash Windows uses is not public, so a Windows host cannot join an nlb
//! cluster. The doctor uses this module to describe Windows clusters it sees.
//!
//! Little-endian fields are marked LE; addresses are in network order.
//!
//! ```text
//! off  len  field
//!   0    4  signature LE: 0xC0DE01BF membership, 0xC0DE01C0 extended, 0xC0DE01DE reliable
//!   4    4  version LE, shown as (v >> 8).(v & 0xff)
//!   8    4  host id LE (the host priority, 1..=32)
//!  12    4  cluster IP
//!  16    4  dedicated IP
//! membership heartbeat only:
//!  20    2  my host id LE (zero-based: host priority - 1)
//!  22    2  default host id LE (zero-based)
//!  24    2  convergence state LE
//!  26    2  number of port rules LE
//!  28    4  unique host code LE
//!  32    4  packets handled LE
//!  36    4  teaming configuration LE
//!  40    4  reserved
//!  44  132  33 port-rule codes, u32 LE
//! 176  264  33 current bucket maps, u64 LE
//! 440  264  33 new maps
//! 704  264  33 idle maps
//! 968  264  33 ready maps
//! 1232 132  33 load weights, u32 LE
//! 1364 132  reserved
//! 1496      end
//! ```
//!
//! Captures are often cut by the snap length: `tcpdump`'s default test capture keeps 96 of
//! 1510 bytes. [`MsNlbHeartbeat::decode`] decodes every field that is wholly present,
//! leaves the rest `None` or short, and reports the cut in [`MsNlbHeartbeat::truncation`].
//! Only the 20-byte common header is required.

use crate::{Error, Result, check_len};
use std::net::Ipv4Addr;

/// Signature of a membership heartbeat.
pub const SIGNATURE_MEMBERSHIP: u32 = 0xC0DE_01BF;
/// Signature of an extended (identity) heartbeat.
pub const SIGNATURE_EXTENDED: u32 = 0xC0DE_01C0;
/// Signature of a "reliable protocol" message.
pub const SIGNATURE_RELIABLE: u32 = 0xC0DE_01DE;
/// Bytes of the common header.
pub const COMMON_LEN: usize = 20;
/// Bytes of a whole membership heartbeat payload.
pub const MEMBERSHIP_LEN: usize = 1496;
/// Slots per table: 32 port rules plus the default rule.
pub const RULE_SLOTS: usize = 33;

const RULE_CODES_AT: usize = 44;
const CURRENT_MAPS_AT: usize = 176;

/// What kind of NLB message a signature names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MsNlbKind {
    /// 0xC0DE01BF, the periodic membership heartbeat.
    Membership,
    /// 0xC0DE01C0, the extended heartbeat with identity TLVs.
    Extended,
    /// 0xC0DE01DE, the "reliable protocol".
    Reliable,
}

/// A capture cut the frame short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Truncation {
    /// Payload bytes present.
    pub captured: usize,
    /// Payload bytes a whole message of this kind has.
    pub expected: usize,
}

/// The membership-heartbeat body: each field is `None` when the capture cut it off.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MembershipBody {
    /// Zero-based id of the sender (host priority - 1).
    pub my_host_index: Option<u16>,
    /// Zero-based id of the default host.
    pub default_host_index: Option<u16>,
    /// Convergence state code.
    pub convergence_state: Option<u16>,
    /// Number of port rules.
    pub port_rule_count: Option<u16>,
    /// A code unique to the host's configuration.
    pub unique_host_code: Option<u32>,
    /// Packets the host handled.
    pub packets_handled: Option<u32>,
    /// Teaming (bi-directional affinity) configuration.
    pub teaming: Option<u32>,
    /// Port-rule codes present in the capture (up to 33).
    pub port_rule_codes: Vec<u32>,
    /// Current bucket maps present in the capture (up to 33).
    pub current_maps: Vec<u64>,
}

/// A decoded Windows NLB heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MsNlbHeartbeat {
    /// Which message.
    pub kind: MsNlbKind,
    /// Protocol version (major, minor).
    pub version: (u8, u8),
    /// The sender's host id (its host priority, 1-based).
    pub host_id: u32,
    /// The cluster's primary VIP.
    pub cluster_ip: Ipv4Addr,
    /// The sender's dedicated IP.
    pub dedicated_ip: Ipv4Addr,
    /// The membership body, for membership heartbeats.
    pub membership: Option<MembershipBody>,
    /// Set when the capture holds less than a whole message.
    pub truncation: Option<Truncation>,
}

/// Reads little-endian integers while they are wholly present.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let field = self.bytes.get(self.at..self.at + N)?;
        self.at += N;
        field.try_into().ok()
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn table<T, const N: usize>(&self, start: usize, read: fn([u8; N]) -> T) -> Vec<T> {
        self.bytes
            .get(start..)
            .unwrap_or_default()
            .chunks_exact(N)
            .take(RULE_SLOTS)
            .map(|chunk| read(chunk.try_into().expect("chunks_exact gives N bytes")))
            .collect()
    }
}

impl MsNlbHeartbeat {
    /// Decodes the payload of a 0x886F frame (the bytes after the EtherType).
    pub fn decode(payload: &[u8]) -> Result<MsNlbHeartbeat> {
        check_len(payload, COMMON_LEN)?;
        let mut cursor = Cursor {
            bytes: payload,
            at: 0,
        };
        let read_u32 = |cursor: &mut Cursor<'_>| cursor.u32().expect("common header is present");
        let kind = match read_u32(&mut cursor) {
            SIGNATURE_MEMBERSHIP => MsNlbKind::Membership,
            SIGNATURE_EXTENDED => MsNlbKind::Extended,
            SIGNATURE_RELIABLE => MsNlbKind::Reliable,
            _ => return Err(Error::Malformed("unknown Windows NLB signature")),
        };
        let version = read_u32(&mut cursor);
        let host_id = read_u32(&mut cursor);
        let cluster_ip = Ipv4Addr::from(cursor.take::<4>().expect("common header is present"));
        let dedicated_ip = Ipv4Addr::from(cursor.take::<4>().expect("common header is present"));

        let (membership, truncation) = if kind == MsNlbKind::Membership {
            let mut body = MembershipBody {
                my_host_index: cursor.u16(),
                default_host_index: cursor.u16(),
                convergence_state: cursor.u16(),
                port_rule_count: cursor.u16(),
                unique_host_code: cursor.u32(),
                packets_handled: cursor.u32(),
                teaming: cursor.u32(),
                ..MembershipBody::default()
            };
            body.port_rule_codes = cursor.table(RULE_CODES_AT, u32::from_le_bytes);
            body.current_maps = cursor.table(CURRENT_MAPS_AT, u64::from_le_bytes);
            let truncation = (payload.len() < MEMBERSHIP_LEN).then_some(Truncation {
                captured: payload.len(),
                expected: MEMBERSHIP_LEN,
            });
            (Some(body), truncation)
        } else {
            (None, None)
        };
        Ok(MsNlbHeartbeat {
            kind,
            version: ((version >> 8) as u8, version as u8),
            host_id,
            cluster_ip,
            dedicated_ip,
            membership,
            truncation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MacAddr;
    use crate::ethernet::{ETHERTYPE_MS_NLB, EthernetFrame};
    use proptest::prelude::*;

    /// Every frame of a pcap or pcapng file in the shared captures folder.
    fn capture_frames(name: &str) -> Vec<Vec<u8>> {
        use pcap_parser::{PcapBlockOwned, PcapError, pcapng::Block};
        let path = format!(
            "{}/../../../shared/captures/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let file = std::fs::File::open(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
        let mut reader = pcap_parser::create_reader(1 << 16, file).unwrap();
        let mut frames = Vec::new();
        loop {
            match reader.next() {
                Ok((offset, block)) => {
                    match block {
                        PcapBlockOwned::Legacy(packet) => frames.push(packet.data.to_vec()),
                        PcapBlockOwned::NG(Block::EnhancedPacket(packet)) => {
                            frames.push(packet.data[..packet.caplen as usize].to_vec())
                        }
                        _ => {}
                    }
                    reader.consume(offset);
                }
                Err(PcapError::Eof) => return frames,
                Err(PcapError::Incomplete(_)) => reader.refill().unwrap(),
                Err(err) => panic!("{path}: {err:?}"),
            }
        }
    }

    /// The tcpdump test capture: two heartbeats of unicast cluster 192.168.100.80, cut
    /// at 96 bytes.
    #[test]
    fn msnlb_capture_decodes_both_hosts() {
        let frames = capture_frames("msnlb.pcap");
        assert_eq!(frames.len(), 2);
        let mut seen = Vec::new();
        for frame in &frames {
            let eth = EthernetFrame::parse(frame).unwrap();
            assert_eq!(eth.ethertype, ETHERTYPE_MS_NLB);
            assert_eq!(eth.dst, MacAddr::BROADCAST);
            let heartbeat = MsNlbHeartbeat::decode(eth.payload).unwrap();
            assert_eq!(heartbeat.kind, MsNlbKind::Membership);
            assert_eq!(heartbeat.cluster_ip, Ipv4Addr::new(192, 168, 100, 80));
            assert_eq!(
                heartbeat.truncation,
                Some(Truncation {
                    captured: 82,
                    expected: MEMBERSHIP_LEN
                })
            );
            let body = heartbeat.membership.as_ref().unwrap();
            // Zero-based index = host id - 1; host 1 is the default host.
            assert_eq!(body.my_host_index, Some(heartbeat.host_id as u16 - 1));
            assert_eq!(body.default_host_index, Some(0));
            assert_eq!(body.port_rule_count, Some(9));
            // 82 - 44 = 38 bytes: nine whole rule codes; no bucket map survived the cut.
            assert_eq!(body.port_rule_codes.len(), 9);
            assert!(body.current_maps.is_empty());
            // The masked source MAC encodes the host id and the cluster IP.
            assert_eq!(
                eth.src,
                crate::addressing::masked_host_mac(heartbeat.cluster_ip, heartbeat.host_id as u8)
            );
            seen.push((heartbeat.host_id, heartbeat.dedicated_ip, heartbeat.version));
        }
        assert_eq!(
            seen,
            vec![
                (2, Ipv4Addr::new(192, 168, 100, 82), (2, 6)),
                (1, Ipv4Addr::new(192, 168, 100, 81), (2, 6)),
            ]
        );
    }

    /// The same heartbeats as pcapng, cut after 6 payload bytes: too short for even the
    /// common header, which is a clean `Truncated` error, not a panic.
    #[test]
    fn msnlb_pcapng_capture_is_cut_before_the_header() {
        let frames = capture_frames("msnlb2.pcapng");
        assert_eq!(frames.len(), 2);
        for frame in &frames {
            let eth = EthernetFrame::parse(frame).unwrap();
            assert_eq!(eth.ethertype, ETHERTYPE_MS_NLB);
            assert_eq!(
                MsNlbHeartbeat::decode(eth.payload),
                Err(Error::Truncated {
                    needed: COMMON_LEN,
                    got: 6
                })
            );
        }
    }

    #[test]
    fn whole_membership_heartbeat_has_no_truncation() {
        let mut payload = vec![0u8; MEMBERSHIP_LEN];
        payload[..4].copy_from_slice(&SIGNATURE_MEMBERSHIP.to_le_bytes());
        payload[CURRENT_MAPS_AT..CURRENT_MAPS_AT + 8].copy_from_slice(&0xffu64.to_le_bytes());
        let heartbeat = MsNlbHeartbeat::decode(&payload).unwrap();
        assert_eq!(heartbeat.truncation, None);
        let body = heartbeat.membership.unwrap();
        assert_eq!(body.port_rule_codes.len(), RULE_SLOTS);
        assert_eq!(body.current_maps.len(), RULE_SLOTS);
        assert_eq!(body.current_maps[0], 0xff);
    }

    #[test]
    fn short_or_foreign_payloads_are_errors() {
        assert!(matches!(
            MsNlbHeartbeat::decode(&[0; 19]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            MsNlbHeartbeat::decode(&[0; 20]),
            Err(Error::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            if bytes.len() >= 4 {
                bytes[..4].copy_from_slice(&SIGNATURE_MEMBERSHIP.to_le_bytes());
            }
            let _ = MsNlbHeartbeat::decode(&bytes);
        }
    }
}

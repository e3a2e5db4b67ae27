//! Frame codecs for nlb.
//!
//! This crate turns bytes into typed values and back. It does no I/O, keeps no state
//! across frames (except [`heartbeat::AntiReplay`], a pure value the caller owns), and
//! contains no `unsafe` code.
//!
//! The layout follows smoltcp's `wire` module:
//!
//! - A `*Packet<T: AsRef<[u8]>>` is a typed view over a buffer. `Packet::new_checked`
//!   checks the length once; after that, **no accessor or setter panics**.
//!   `Packet::new_unchecked` skips the check and is only for buffers the caller sized
//!   with `Repr::buffer_len`.
//! - A `*Repr` is the parsed, validated, owned meaning of a packet. `Repr::parse` reads a
//!   checked packet and rejects anything malformed with an [`Error`]; `Repr::emit` writes
//!   a packet that `parse` accepts back unchanged.
//!
//! Modules, bottom up:
//!
//! | module | what | spec |
//! |---|---|---|
//! | [`mac`] | 48-bit MAC addresses | IEEE 802 |
//! | [`addressing`] | cluster MACs per mode, IGMP group, masked host MACs, cluster id | nlb design; MS KB 4494444 |
//! | [`ethernet`] | Ethernet II and 802.1Q/802.1ad framing, via etherparse | IEEE 802.3, 802.1Q |
//! | [`arp`] | ARP for Ethernet/IPv4 and its classification | RFC 826, RFC 5227, RFC 5944 §4.6 |
//! | [`igmp`] | IGMPv2 messages and their IPv4 carrier with Router Alert | RFC 2236, RFC 2113 |
//! | [`bitmap`] | host-id sets and bucket bitmaps, shared by the heartbeat, the core, the kernel ruleset and the simulator | this crate |
//! | [`heartbeat`] | the nlb heartbeat (EtherType 0x88B5); [`heartbeat::auth`]: its tag, anti-replay and threat model | this crate, format version 2 (reads 1) |
//! | [`msnlb`] | Windows NLB heartbeats (EtherType 0x886F), decode only | Wireshark's `packet-msnlb.c` |
//!
//! ```
//! use nlb_wire::arp::{ArpKind, ArpPacket, ArpRepr};
//! use nlb_wire::MacAddr;
//! use std::net::Ipv4Addr;
//!
//! let mac: MacAddr = "02:bf:c6:12:00:0a".parse().unwrap();
//! let repr = ArpRepr::announcement(mac, Ipv4Addr::new(198, 18, 0, 10));
//! let mut bytes = vec![0u8; repr.buffer_len()];
//! repr.emit(&mut ArpPacket::new_unchecked(&mut bytes[..]));
//! let parsed = ArpRepr::parse(&ArpPacket::new_checked(&bytes[..]).unwrap()).unwrap();
//! assert_eq!(parsed, repr);
//! assert_eq!(parsed.kind(), ArpKind::Announcement);
//! ```
#![forbid(unsafe_code)]

pub mod addressing;
pub mod arp;
pub mod bitmap;
pub mod ethernet;
pub mod heartbeat;
pub mod igmp;
pub mod mac;
pub mod msnlb;

pub use mac::MacAddr;

use std::fmt;

/// Why bytes could not be decoded. One small error type for every codec, so that a caller
/// can count drops by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer ends before the packet does.
    Truncated {
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes the buffer holds.
        got: usize,
    },
    /// A field holds a value the format does not allow; the text names the field.
    Malformed(&'static str),
    /// A well-formed packet of a kind or version this codec does not handle.
    Unsupported(&'static str),
    /// The checksum does not match the contents.
    BadChecksum,
    /// The authentication tag does not match: wrong key, or forged or corrupted frame.
    BadTag,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { needed, got } => {
                write!(f, "truncated: needs {needed} bytes, has {got}")
            }
            Error::Malformed(what) => write!(f, "malformed: {what}"),
            Error::Unsupported(what) => write!(f, "unsupported: {what}"),
            Error::BadChecksum => f.write_str("bad checksum"),
            Error::BadTag => f.write_str("bad authentication tag"),
        }
    }
}

impl std::error::Error for Error {}

/// The result of every decoder in this crate.
pub type Result<T> = core::result::Result<T, Error>;

/// Fails with [`Error::Truncated`] unless `buffer` holds at least `needed` bytes.
pub(crate) fn check_len(buffer: &[u8], needed: usize) -> Result<()> {
    if buffer.len() < needed {
        Err(Error::Truncated {
            needed,
            got: buffer.len(),
        })
    } else {
        Ok(())
    }
}

/// The Internet checksum (RFC 1071): one's complement of the one's-complement sum of
/// 16-bit big-endian words, an odd last byte padded with zero.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = data.chunks_exact(2);
    for word in &mut words {
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

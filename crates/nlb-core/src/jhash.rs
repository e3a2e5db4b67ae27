//! The kernel's `jhash` as nftables uses it, bit for bit.
//!
//! The nft expression `jhash <expr> mod N seed S` (net/netfilter/nft_hash.c,
//! `nft_jhash_eval`) computes
//!
//! ```text
//! reciprocal_scale(jhash(register bytes, len, S), N)
//! ```
//!
//! where `jhash` is Bob Jenkins' lookup3 `hashlittle` as written in
//! include/linux/jhash.h, and `reciprocal_scale(v, n) = (v as u64 * n as u64) >> 32`
//! (include/linux/kernel.h). The "register bytes" are the packet fields as nft loads them
//! into its 32-bit registers: each field of a concatenation starts on a 4-byte boundary
//! and the gap is zero (nft_payload zeroes the last partial register), so
//! `ip saddr . tcp sport` is 8 bytes: address, port, two zero bytes.
//!
//! The data plane hashes with this, the filter predicts with this, and
//! `crates/nlb-linux/tests/kernel_jhash.rs` checks the two agree on thousands of flows
//! against the running kernel.

use std::net::Ipv4Addr;

/// `JHASH_INITVAL`, "an arbitrary value" (include/linux/jhash.h).
const JHASH_INITVAL: u32 = 0xdead_beef;

/// What part of a packet's source picks its bucket. These are the keys an nlb port
/// rule's affinity selects (none, single, network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowKey {
    /// `ip saddr`: affinity single.
    SourceAddr(Ipv4Addr),
    /// `ip saddr . th sport`: affinity none.
    SourceAddrPort(Ipv4Addr, u16),
    /// `ip saddr & 255.255.255.0`: affinity network (class C).
    SourceNet24(Ipv4Addr),
}

impl FlowKey {
    /// The bytes nft hashes for this key, and how many of them count.
    pub fn register_bytes(&self) -> ([u8; 8], usize) {
        let mut bytes = [0u8; 8];
        match *self {
            FlowKey::SourceAddr(addr) => {
                bytes[..4].copy_from_slice(&addr.octets());
                (bytes, 4)
            }
            FlowKey::SourceAddrPort(addr, port) => {
                bytes[..4].copy_from_slice(&addr.octets());
                bytes[4..6].copy_from_slice(&port.to_be_bytes());
                (bytes, 8)
            }
            FlowKey::SourceNet24(addr) => {
                let [a, b, c, _] = addr.octets();
                bytes[..4].copy_from_slice(&[a, b, c, 0]);
                (bytes, 4)
            }
        }
    }

    /// The value `jhash <key> mod modulus seed seed` gives in the kernel.
    ///
    /// # Panics
    /// If `modulus` is 0, which nft rejects too (`-ERANGE`).
    pub fn nft_jhash(&self, modulus: u32, seed: u32) -> u32 {
        assert!(modulus > 0, "nft jhash needs a modulus of at least 1");
        let (bytes, len) = self.register_bytes();
        reciprocal_scale(jhash(&bytes[..len], seed), modulus)
    }
}

/// `reciprocal_scale(val, ep_ro)`: maps a 32-bit hash onto `0..ep_ro` without a division.
pub const fn reciprocal_scale(val: u32, ep_ro: u32) -> u32 {
    ((val as u64 * ep_ro as u64) >> 32) as u32
}

/// `jhash(key, length, initval)` from include/linux/jhash.h.
///
/// Whole 12-byte blocks are read as native-endian words, as the kernel's
/// `__get_unaligned_cpu32` does; the tail is assembled byte by byte, least significant
/// first, on every architecture. nlb's keys are at most 8 bytes, so only the tail path
/// runs for them.
pub fn jhash(key: &[u8], initval: u32) -> u32 {
    let length = key.len() as u32;
    let mut a = JHASH_INITVAL.wrapping_add(length).wrapping_add(initval);
    let mut b = a;
    let mut c = a;
    let mut k = key;
    while k.len() > 12 {
        a = a.wrapping_add(u32::from_ne_bytes([k[0], k[1], k[2], k[3]]));
        b = b.wrapping_add(u32::from_ne_bytes([k[4], k[5], k[6], k[7]]));
        c = c.wrapping_add(u32::from_ne_bytes([k[8], k[9], k[10], k[11]]));
        mix(&mut a, &mut b, &mut c);
        k = &k[12..];
    }
    if k.is_empty() {
        return c;
    }
    // The kernel's fall-through switch: byte i goes into word i / 4 at bit 8 * (i % 4).
    for (i, &byte) in k.iter().enumerate() {
        let word = u32::from(byte) << (8 * (i % 4));
        match i / 4 {
            0 => a = a.wrapping_add(word),
            1 => b = b.wrapping_add(word),
            _ => c = c.wrapping_add(word),
        }
    }
    final_mix(&mut a, &mut b, &mut c);
    c
}

/// `__jhash_mix`.
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

/// `__jhash_final`.
fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bob Jenkins' published `hashlittle` self-test values (lookup3.c, `driver5`):
    /// `hashlittle("", 0, 0) = 0xdeadbeef`, `hashlittle("", 0, 0xdeadbeef) = 0xbd5b7dde`,
    /// and for "Four score and seven years ago" (30 bytes): initval 0 gives 0x17770551
    /// and initval 1 gives 0xcd628161. Linux's `jhash` is the same function.
    #[test]
    fn matches_lookup3_reference_vectors() {
        assert_eq!(jhash(b"", 0), 0xdead_beef);
        assert_eq!(jhash(b"", 0xdead_beef), 0xbd5b_7dde);
        assert_eq!(jhash(b"Four score and seven years ago", 0), 0x1777_0551);
        assert_eq!(jhash(b"Four score and seven years ago", 1), 0xcd62_8161);
    }

    #[test]
    fn reciprocal_scale_stays_in_range() {
        assert_eq!(reciprocal_scale(0, 1024), 0);
        assert_eq!(reciprocal_scale(u32::MAX, 1024), 1023);
        assert_eq!(reciprocal_scale(u32::MAX, 1), 0);
        assert_eq!(reciprocal_scale(0x8000_0000, 10), 5);
    }

    #[test]
    fn register_layout_pads_the_port() {
        let addr = Ipv4Addr::new(198, 18, 1, 2);
        let (bytes, len) = FlowKey::SourceAddrPort(addr, 0x1234).register_bytes();
        assert_eq!(&bytes[..len], &[198, 18, 1, 2, 0x12, 0x34, 0, 0]);
        let (bytes, len) = FlowKey::SourceNet24(addr).register_bytes();
        assert_eq!(&bytes[..len], &[198, 18, 1, 0]);
    }

    #[test]
    fn network_key_ignores_the_host_byte() {
        let a = FlowKey::SourceNet24(Ipv4Addr::new(198, 18, 7, 1));
        let b = FlowKey::SourceNet24(Ipv4Addr::new(198, 18, 7, 200));
        assert_eq!(a.nft_jhash(1024, 42), b.nft_jhash(1024, 42));
    }

    #[test]
    fn seed_changes_the_bucket_distribution() {
        let keys: Vec<_> = (0..64u8)
            .map(|i| FlowKey::SourceAddr(Ipv4Addr::new(198, 18, 0, i)))
            .collect();
        let with = |seed| {
            keys.iter()
                .map(|k| k.nft_jhash(64, seed))
                .collect::<Vec<_>>()
        };
        assert_ne!(with(1), with(2));
    }
}

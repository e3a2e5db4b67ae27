//! ARP: parse never panics, and whatever parses re-emits to the same meaning.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nlb_wire::arp::{ArpPacket, ArpRepr};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = ArpPacket::new_checked(data) else { return };
    let Ok(repr) = ArpRepr::parse(&packet) else { return };
    let _ = repr.kind();
    let mut bytes = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut bytes[..]));
    let again = ArpRepr::parse(&ArpPacket::new_checked(&bytes[..]).unwrap()).unwrap();
    assert_eq!(again, repr);
});

//! nlb heartbeats: parse never panics, with or without a key, and whatever parses
//! re-emits to the same repr and, with the key, the same tag.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nlb_wire::heartbeat::{HeartbeatKey, HeartbeatPacket, HeartbeatRepr};

fuzz_target!(|data: &[u8]| {
    let key = HeartbeatKey::derive(b"fuzz");
    let Ok(packet) = HeartbeatPacket::new_checked(data) else { return };
    let _ = HeartbeatRepr::parse(&packet, Some(&key));
    let Ok(repr) = HeartbeatRepr::parse(&packet, None) else { return };
    // Version 1 is read for captures, never written: no round trip.
    if packet.version() != nlb_wire::heartbeat::VERSION {
        return;
    }
    for key in [None, Some(&key)] {
        let mut bytes = vec![0u8; repr.buffer_len(key.is_some())];
        repr.emit(&mut HeartbeatPacket::new_unchecked(&mut bytes[..]), key);
        let again = HeartbeatPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(HeartbeatRepr::parse(&again, key).unwrap(), repr);
    }
});

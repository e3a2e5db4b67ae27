//! Any bytes as an Ethernet frame, dispatched to the decoder of its EtherType, as the
//! daemon and the doctor do.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nlb_wire::arp::{ArpPacket, ArpRepr};
use nlb_wire::ethernet::*;
use nlb_wire::heartbeat::{HeartbeatKey, HeartbeatPacket, HeartbeatRepr};
use nlb_wire::igmp::IgmpDatagram;
use nlb_wire::msnlb::MsNlbHeartbeat;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = EthernetFrame::parse(data) else { return };
    match frame.ethertype {
        ETHERTYPE_ARP => {
            if let Ok(packet) = ArpPacket::new_checked(frame.payload) {
                if let Ok(repr) = ArpRepr::parse(&packet) {
                    let _ = repr.kind();
                }
            }
        }
        ETHERTYPE_IPV4 => {
            let _ = IgmpDatagram::parse(frame.payload);
        }
        ETHERTYPE_NLB_HEARTBEAT => {
            if let Ok(packet) = HeartbeatPacket::new_checked(frame.payload) {
                let _ = HeartbeatRepr::parse(&packet, Some(&HeartbeatKey::derive(b"fuzz")));
            }
        }
        ETHERTYPE_MS_NLB | ETHERTYPE_MS_NLB_LEGACY => {
            let _ = MsNlbHeartbeat::decode(frame.payload);
        }
        _ => {}
    }
});

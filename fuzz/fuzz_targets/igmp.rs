//! IPv4-carried IGMP: parse never panics, and whatever parses re-emits to the same
//! message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nlb_wire::ethernet::EthernetFrame;
use nlb_wire::igmp::IgmpDatagram;
use nlb_wire::MacAddr;

fuzz_target!(|data: &[u8]| {
    let Ok(datagram) = IgmpDatagram::parse(data) else { return };
    let frame = datagram.igmp.to_frame(MacAddr([2, 0, 0, 0, 0, 1]), datagram.src_ip, None);
    let eth = EthernetFrame::parse(&frame).unwrap();
    assert_eq!(IgmpDatagram::parse(eth.payload).unwrap().igmp, datagram.igmp);
});

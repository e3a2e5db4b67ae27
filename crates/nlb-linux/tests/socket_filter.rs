//! The daemon's socket filter on the real kernel: a veth pair in a namespace; frames sent
//! on one end reach a filtered socket on the other only if they are ARP or nlb
//! heartbeats.

use nlb_linux::netns::{NetNs, require_root, unique_name};
use nlb_linux::packet::PacketSocket;
use std::time::{Duration, Instant};

const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST: [u8; 6] = [0xff; 6];

/// A frame with `ethertype` (and a VLAN tag in the frame, if given) and a marker byte.
fn frame(tag: Option<u16>, ethertype: u16, marker: u8) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&DST);
    out.extend_from_slice(&SRC);
    if let Some(tci) = tag {
        out.extend_from_slice(&0x8100u16.to_be_bytes());
        out.extend_from_slice(&tci.to_be_bytes());
    }
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.push(marker);
    out.resize(64, 0);
    out
}

/// The marker byte of a received frame.
fn marker(frame: &[u8]) -> u8 {
    let at = if frame[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    };
    frame[at]
}

#[test]
fn filtered_socket_gets_arp_and_heartbeats_only() {
    if !require_root("filtered_socket_gets_arp_and_heartbeats_only") {
        return;
    }
    let ns = NetNs::create(&unique_name("nlbf")).unwrap();
    ns.ip(&["link", "add", "a0", "type", "veth", "peer", "name", "b0"])
        .unwrap();
    ns.ip(&["link", "set", "a0", "up"]).unwrap();
    ns.ip(&["link", "set", "b0", "up"]).unwrap();
    // Tagged frames: the receive path moves an 802.1Q tag into the packet's metadata
    // before the packet taps run (checked here: VLAN 10 is dropped by its tag id, VLAN 0
    // passes), whether or not a VLAN device exists.
    let received = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                ns.enter_current_thread().unwrap();
                let receiver = PacketSocket::bind("b0").unwrap();
                let sender = PacketSocket::bind("a0").unwrap();
                let frames = [
                    frame(None, 0x0800, 1),     // IPv4: dropped
                    frame(None, 0x0806, 2),     // ARP: received
                    frame(None, 0x88b5, 3),     // heartbeat: received
                    frame(None, 0x86dd, 4),     // IPv6: dropped
                    frame(None, 0x886f, 5),     // Windows NLB heartbeat: dropped
                    frame(Some(10), 0x0806, 6), // ARP of VLAN 10: dropped
                    frame(Some(0), 0x88b5, 7),  // priority-tagged heartbeat: received
                    frame(Some(10), 0x0800, 8), // IPv4 of VLAN 10: dropped
                    frame(None, 0x0806, 9),     // ARP: received (the end marker)
                ];
                for each in &frames {
                    sender.send(each).unwrap();
                }
                let mut got = Vec::new();
                let mut buf = vec![0u8; 2048];
                let deadline = Instant::now() + Duration::from_secs(3);
                while Instant::now() < deadline {
                    match receiver.recv(&mut buf, Duration::from_millis(200)) {
                        Ok(len) => {
                            got.push(marker(&buf[..len]));
                            if got.last() == Some(&9) {
                                break;
                            }
                        }
                        Err(err)
                            if matches!(
                                err.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(err) => panic!("recv: {err}"),
                    }
                }
                got
            })
            .join()
            .unwrap()
    });
    assert_eq!(received, vec![2, 3, 7, 9]);
}

#[test]
fn filter_program_shape() {
    let program = nlb_linux::packet::daemon_filter();
    assert_eq!(program.len(), 16);
    // Every jump lands inside the program.
    for (at, insn) in program.iter().enumerate() {
        if insn.code & 0x07 == 0x05 {
            assert!(at + 1 + (insn.jt as usize) < program.len());
            assert!(at + 1 + (insn.jf as usize) < program.len());
        }
    }
}

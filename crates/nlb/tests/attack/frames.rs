//! The attacker's frames: genuine heartbeats captured on its port, sent again at a
//! rate under other source MACs, and heartbeats built from them with fields mutated,
//! forged, or made another cluster's.

use crate::HOSTS;
use nlb_linux::packet::PacketSocket;
use nlb_wire::MacAddr;
use nlb_wire::bitmap::{BucketBitmap, MemberSet};
use nlb_wire::ethernet::{ETHERTYPE_NLB_HEARTBEAT, EthernetFrame};
use nlb_wire::heartbeat::{
    HEADER_LEN, HeartbeatKey, HeartbeatPacket, HeartbeatRepr, RULE_HEADER_LEN,
};
use std::time::{Duration, Instant};

/// A small deterministic generator for MACs and garbage.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A unicast source MAC; every 16th is below every host's (00:00:00:…), the rest
    /// locally administered.
    pub(crate) fn mac(&mut self, n: u32) -> MacAddr {
        let r = self.next().to_be_bytes();
        if n.is_multiple_of(16) {
            MacAddr([0, 0, 0, r[0], r[1], r[2] | 1])
        } else {
            MacAddr([0x02, r[0], r[1], r[2], r[3], r[4]])
        }
    }
}

/// Replaces the source MAC of an Ethernet frame.
pub(crate) fn with_source(frame: &[u8], mac: MacAddr) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[6..12].copy_from_slice(&mac.0);
    out
}

/// The latest genuine heartbeat of every host, captured on the attacker's port.
pub(crate) fn capture(socket: &PacketSocket) -> Vec<Vec<u8>> {
    let mut latest: Vec<Option<Vec<u8>>> = vec![None; HOSTS as usize];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 4096];
    while latest.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "no heartbeats captured from every host"
        );
        let Ok(len) = socket.recv(&mut buf, Duration::from_millis(500)) else {
            continue;
        };
        let Ok(frame) = EthernetFrame::parse(&buf[..len]) else {
            continue;
        };
        if frame.ethertype != ETHERTYPE_NLB_HEARTBEAT {
            continue;
        }
        if let Ok(packet) = HeartbeatPacket::new_checked(frame.payload) {
            let id = packet.host_id();
            if (1..=HOSTS).contains(&id) {
                latest[usize::from(id - 1)] = Some(buf[..len].to_vec());
            }
        }
    }
    latest.into_iter().flatten().collect()
}

/// Sends `frames` at about `rate` frames/s, each under the source MAC `mac` gives it,
/// and returns how many the kernel took.
pub(crate) fn send_paced(
    socket: &PacketSocket,
    rate: u32,
    frames: &[Vec<u8>],
    mut mac: impl FnMut(u32) -> MacAddr,
) -> u32 {
    let started = Instant::now();
    let mut sent = 0u32;
    for (n, frame) in frames.iter().enumerate() {
        let n = n as u32;
        if n.is_multiple_of(100) {
            // Keep to the rate: wait until this batch is due.
            let due = started + Duration::from_secs_f64(f64::from(n) / f64::from(rate));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        if socket.send(&with_source(frame, mac(n))).is_ok() {
            sent += 1;
        }
    }
    println!(
        "attacker: sent {sent} of {} frames in {:.1} s",
        frames.len(),
        started.elapsed().as_secs_f64()
    );
    sent
}

/// Where, in an emitted unauthenticated heartbeat, `change` first makes a difference.
/// Found by emitting twice rather than from the layout, so that it follows the format.
fn offset_of(base: &HeartbeatRepr, change: impl Fn(&mut HeartbeatRepr)) -> usize {
    let mut other = base.clone();
    change(&mut other);
    let a = base.to_frame(
        MacAddr([2, 0, 0, 0, 0, 1]),
        MacAddr([3, 0, 0, 0, 0, 1]),
        ETHERTYPE_NLB_HEARTBEAT,
        None,
    );
    let b = other.to_frame(
        MacAddr([2, 0, 0, 0, 0, 1]),
        MacAddr([3, 0, 0, 0, 0, 1]),
        ETHERTYPE_NLB_HEARTBEAT,
        None,
    );
    a.iter()
        .zip(&b)
        .position(|(x, y)| x != y)
        .expect("the change shows")
}

fn bitmap(count: u16, buckets: impl IntoIterator<Item = u16>) -> BucketBitmap {
    let mut bitmap = BucketBitmap::new(count);
    for bucket in buckets {
        bitmap.insert(bucket);
    }
    bitmap
}

/// Heartbeats built from the captured ones with fields no correct node may accept,
/// whether or not the frame is authentic: out-of-range or mismatched bucket counts,
/// rule counts and host ids, owned outside target, truncations, other versions, garbage.
/// Each is sent without a tag and, with `wrong_key`, also with a tag of the wrong key.
pub(crate) fn malformed(
    captured: &[Vec<u8>],
    wrong_key: Option<&HeartbeatKey>,
    rng: &mut Rng,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for frame in captured {
        let eth = EthernetFrame::parse(frame).unwrap();
        let (src, dst) = (eth.src, eth.dst);
        let repr = HeartbeatRepr::parse(&HeartbeatPacket::new_checked(eth.payload).unwrap(), None)
            .unwrap();
        let emit = |repr: &HeartbeatRepr, out: &mut Vec<Vec<u8>>| {
            out.push(repr.to_frame(src, dst, ETHERTYPE_NLB_HEARTBEAT, None));
            if let Some(key) = wrong_key {
                out.push(repr.to_frame(src, dst, ETHERTYPE_NLB_HEARTBEAT, Some(key)));
            }
        };
        // Bucket counts the configuration does not have, with buckets set past 256: the
        // crash of issue 11 is 4096 buckets with bucket 300 set.
        for (count, set) in [
            (4096, vec![300, 4095]),
            (4096, (0..4096).collect::<Vec<_>>()),
            (257, vec![256]),
            (255, vec![254]),
            (0, vec![]),
            (512, vec![511]),
        ] {
            // The first rule only, so that the frame still fits in the MTU.
            let mut bad = repr.clone();
            bad.rules[0].owned = bitmap(count, set.iter().copied());
            bad.rules[0].target = bitmap(count, set.iter().copied());
            emit(&bad, &mut out);
        }
        // Owned outside target.
        let mut bad = repr.clone();
        for rule in &mut bad.rules {
            rule.owned = bitmap(256, 0..256);
            rule.target = BucketBitmap::new(256);
        }
        emit(&bad, &mut out);
        // Rule counts: none, one too many, more than a configuration may have (the
        // format's most, 32, would not fit in the MTU with 256 buckets each).
        for rules in [0, repr.rules.len() + 1, 17] {
            let mut bad = repr.clone();
            bad.rules = (0..rules)
                .map(|i| repr.rules[i % repr.rules.len()].clone())
                .collect();
            emit(&bad, &mut out);
        }
        // Raw fields the encoder refuses to write.
        let plain = repr.to_frame(src, dst, ETHERTYPE_NLB_HEARTBEAT, None);
        let eth_len = plain.len() - repr.buffer_len(false);
        let host_at =
            eth_len + offset_of(&repr, |r| r.host_id = if r.host_id == 1 { 2 } else { 1 });
        for id in [0u8, 65, 200, 255] {
            let mut bad = plain.clone();
            bad[host_at] = id;
            out.push(bad);
        }
        let count_at = eth_len + HEADER_LEN + RULE_HEADER_LEN - 2;
        for count in [0x8100u16, 0xffff, 0x1100, 0x1000, 0x0101] {
            let mut bad = plain.clone();
            bad[count_at..count_at + 2].copy_from_slice(&count.to_be_bytes());
            out.push(bad);
        }
        let rules_at = eth_len
            + offset_of(&repr, |r| {
                let first = r.rules[0].clone();
                r.rules.push(first);
            });
        for count in [33u8, 64, 255, 0] {
            let mut bad = plain.clone();
            bad[rules_at] = count;
            out.push(bad);
        }
        // Another version, truncations at every tenth byte, and garbage after the magic.
        let mut bad = plain.clone();
        bad[eth_len + 2] = bad[eth_len + 2].wrapping_add(1);
        out.push(bad);
        for cut in (eth_len..plain.len()).step_by(10) {
            out.push(plain[..cut].to_vec());
        }
        for _ in 0..20 {
            let mut bad = plain.clone();
            for byte in &mut bad[eth_len + 4..] {
                *byte = rng.next() as u8;
            }
            out.push(bad);
        }
    }
    out
}

/// One change to a heartbeat.
type Change = Box<dyn Fn(&mut HeartbeatRepr)>;

/// Well-formed heartbeats that claim the captured hosts' ids with values an attacker
/// would like peers to adopt: epochs, sequences and incarnations near their maximum,
/// every host a member, every bucket owned, another host's id, an unused id. Untagged
/// and with a wrong key's tag. A keyed cluster must drop them all; a keyless one cannot
/// tell them from real heartbeats.
pub(crate) fn forged(captured: &[Vec<u8>], wrong_key: &HeartbeatKey) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for frame in captured {
        let eth = EthernetFrame::parse(frame).unwrap();
        let repr = HeartbeatRepr::parse(&HeartbeatPacket::new_checked(eth.payload).unwrap(), None)
            .unwrap();
        let changes: Vec<Change> = vec![
            Box::new(|r| r.view_epoch = u32::MAX),
            Box::new(|r| r.view_epoch = u32::MAX - 1),
            Box::new(|r| r.sequence = u64::MAX),
            Box::new(|r| r.incarnation = u32::MAX),
            Box::new(|r| {
                r.view_members = MemberSet(u64::MAX);
                r.live_members = MemberSet(u64::MAX);
            }),
            Box::new(|r| {
                for rule in &mut r.rules {
                    rule.owned = bitmap(256, 0..256);
                    rule.target = bitmap(256, 0..256);
                }
            }),
            Box::new(|r| r.host_id = r.host_id % HOSTS + 1),
            Box::new(|r| r.host_id = 9),
            Box::new(|r| r.connections = u32::MAX),
        ];
        for change in &changes {
            let mut bad = repr.clone();
            change(&mut bad);
            out.push(bad.to_frame(eth.src, eth.dst, ETHERTYPE_NLB_HEARTBEAT, None));
            out.push(bad.to_frame(eth.src, eth.dst, ETHERTYPE_NLB_HEARTBEAT, Some(wrong_key)));
        }
    }
    out
}

/// The captured heartbeats as another cluster's: a different cluster id.
pub(crate) fn foreign(captured: &[Vec<u8>]) -> Vec<Vec<u8>> {
    captured
        .iter()
        .map(|frame| {
            let eth = EthernetFrame::parse(frame).unwrap();
            let mut repr =
                HeartbeatRepr::parse(&HeartbeatPacket::new_checked(eth.payload).unwrap(), None)
                    .unwrap();
            repr.cluster_id ^= 0x5a5a_0001;
            repr.to_frame(eth.src, eth.dst, ETHERTYPE_NLB_HEARTBEAT, None)
        })
        .collect()
}

/// `frames` repeated until there are `n` of them.
pub(crate) fn cycle(frames: &[Vec<u8>], n: u32) -> Vec<Vec<u8>> {
    frames.iter().cycle().take(n as usize).cloned().collect()
}

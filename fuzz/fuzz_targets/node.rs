//! Whole nodes under attack: three keyed nodes and one keyless node, converged, then
//! driven by the fuzzer's program of steps: the cluster's own traffic (timeouts and
//! heartbeats delivered), raw frames, captured heartbeats replayed verbatim or under
//! another source MAC, captured heartbeats with one byte flipped, and heartbeats rebuilt
//! with hostile fields (bucket counts, rule counts, epochs, host ids, echoes) sent without
//! the key, with a wrong key, or to the keyless node.
//!
//! After every step: no panic; no bucket accepted by two keyed nodes (an attacker without
//! the key cannot make that happen); every node's peer table within its cap. The keyless
//! node accepts forgeries by design, so it is checked for panics and its caps only.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nlb_core::config::Config;
use nlb_core::node::Node;
use nlb_core::time::Instant;
use nlb_wire::MacAddr;
use nlb_wire::ethernet::EthernetFrame;
use nlb_wire::heartbeat::{Echo, HeartbeatKey, HeartbeatPacket, HeartbeatRepr};
use nlb_wire::bitmap::{BucketBitmap, MemberSet};
use std::sync::OnceLock;
use std::time::Duration;

const KEYED: usize = 3;

fn config(id: u8, keyed: bool) -> Config {
    let key = if keyed { "key_file = \"/k\"\n" } else { "" };
    Config::parse(
        &format!(
            "[cluster]\ninterface = \"eth0\"\nvips = [\"198.18.0.10\"]\n{key}\
             [host]\nid = {id}\n[[rule]]\nports = \"80\"\nprotocol = \"tcp\"\n"
        ),
        "fuzz.toml",
    )
    .unwrap()
}

fn mac(index: usize) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, index as u8 + 1])
}

fn key() -> HeartbeatKey {
    HeartbeatKey::derive(b"the fuzzed cluster's secret, 32 bytes or more")
}

#[derive(Clone)]
struct World {
    now: Instant,
    nodes: Vec<Node>,
    /// Heartbeats the keyed nodes sent, for replays.
    captured: Vec<Vec<u8>>,
}

impl World {
    /// Timeouts, then every frame delivered to every other node (the keyless node hears
    /// the keyed ones too, and drops them).
    fn step(&mut self, advance: Duration) {
        self.now = self.now + advance;
        let now = self.now;
        let mut frames = Vec::new();
        for (index, node) in self.nodes.iter_mut().enumerate() {
            if node.poll_timeout() <= now {
                node.handle_timeout(now);
            }
            while let Some(frame) = node.poll_transmit() {
                frames.push((index, frame));
            }
            while node.poll_action().is_some() || node.poll_event().is_some() {}
        }
        for (from, frame) in frames {
            if from < KEYED && frame.get(12..14) == Some(&[0x88, 0xb5][..]) {
                if self.captured.len() == 64 {
                    self.captured.remove(0);
                }
                self.captured.push(frame.clone());
            }
            for (to, node) in self.nodes.iter_mut().enumerate() {
                if to != from {
                    node.handle_frame(now, &frame);
                }
            }
        }
    }

    fn inject(&mut self, to: usize, frame: &[u8]) {
        let now = self.now;
        let count = self.nodes.len();
        let node = &mut self.nodes[to % count];
        node.handle_frame(now, frame);
        while node.poll_transmit().is_some()
            || node.poll_action().is_some()
            || node.poll_event().is_some()
        {}
    }

    fn check(&self) {
        for slot in 0..self.nodes[0].owned().len() {
            for bucket in 0..256u16 {
                let owners = self.nodes[..KEYED]
                    .iter()
                    .filter(|n| n.owned()[slot].contains(bucket))
                    .count();
                assert!(owners <= 1, "bucket {bucket} of slot {slot} has {owners} owners");
            }
        }
        for node in &self.nodes {
            assert!(node.members(self.now).len() <= 1 + 64 * 2);
        }
    }
}

fn converged() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let start = Instant::ZERO;
        let mut nodes: Vec<Node> = (0..KEYED)
            .map(|i| Node::new(config(i as u8 + 1, true), mac(i), 1, Some(key()), start))
            .collect();
        nodes.push(Node::new(config(4, false), mac(3), 1, None, start));
        let mut world = World {
            now: start,
            nodes,
            captured: Vec::new(),
        };
        for _ in 0..200 {
            world.step(Duration::from_millis(5));
        }
        world
    })
}

/// A heartbeat rebuilt from a captured one with a hostile field.
fn hostile(captured: &[u8], what: u8, value: u64) -> Option<HeartbeatRepr> {
    let eth = EthernetFrame::parse(captured).ok()?;
    let mut repr =
        HeartbeatRepr::parse(&HeartbeatPacket::new_checked(eth.payload).ok()?, None).ok()?;
    match what % 9 {
        0 => repr.view_epoch = value as u32,
        1 => repr.sequence = value,
        2 => repr.incarnation = value as u32,
        3 => repr.host_id = (value % 64) as u8 + 1,
        4 => {
            let count = (value % 4097) as u16;
            let mut bitmap = BucketBitmap::new(count);
            for bucket in [0, count / 2, count.saturating_sub(1)] {
                bitmap.insert(bucket);
            }
            if let Some(rule) = repr.rules.first_mut() {
                rule.owned = bitmap.clone();
                rule.target = bitmap;
            }
        }
        5 => repr.rules.truncate((value % 3) as usize),
        6 => {
            repr.view_members = MemberSet(value);
            repr.live_members = MemberSet(value.rotate_left(7));
        }
        7 => {
            repr.echoes = (1..=64)
                .map(|host_id| Echo {
                    host_id,
                    incarnation: value as u32,
                    sequence: value,
                })
                .collect();
        }
        _ => {
            for rule in &mut repr.rules {
                let mut all = BucketBitmap::new(rule.owned.bucket_count());
                for bucket in 0..rule.owned.bucket_count() {
                    all.insert(bucket);
                }
                rule.owned = all.clone();
                rule.target = all;
            }
        }
    }
    Some(repr)
}

fuzz_target!(|data: &[u8]| {
    let mut world = converged().clone();
    let wrong_key = HeartbeatKey::derive(b"a guess at the key");
    let mut bytes = data.iter().copied();
    let mut next = move || bytes.next();
    while let Some(op) = next() {
        let target = usize::from(next().unwrap_or(0));
        match op % 6 {
            0 => world.step(Duration::from_millis((target % 20) as u64 + 1)),
            1 => {
                let len = usize::from(next().unwrap_or(0));
                let frame: Vec<u8> = (0..len).map_while(|_| next()).collect();
                world.inject(target, &frame);
            }
            2 | 3 => {
                if world.captured.is_empty() {
                    continue;
                }
                let index = usize::from(next().unwrap_or(0)) % world.captured.len();
                let mut frame = world.captured[index].clone();
                if op % 6 == 2 {
                    let at = usize::from(next().unwrap_or(0)) % frame.len();
                    frame[at] ^= next().unwrap_or(1) | 1;
                } else if target & 0x80 != 0 {
                    frame[6..12].copy_from_slice(&[0x02, 0xee, 0, 0, 0, target as u8]);
                }
                world.inject(target, &frame);
            }
            _ => {
                if world.captured.is_empty() {
                    continue;
                }
                let index = usize::from(next().unwrap_or(0)) % world.captured.len();
                let what = next().unwrap_or(0);
                let value = u64::from_le_bytes(std::array::from_fn(|_| next().unwrap_or(0xff)));
                let Some(repr) = hostile(&world.captured[index], what, value) else {
                    continue;
                };
                // Senders the encoder accepts only: the wire format caps what it writes.
                if repr.rules.len() > 32 {
                    continue;
                }
                let src = mac(usize::from(what) % 4);
                let to = target % 4;
                let key = (op % 6 == 5).then_some(&wrong_key);
                let frame = repr.to_frame(src, nlb_wire::MacAddr::BROADCAST, 0x88b5, key);
                world.inject(to, &frame);
            }
        }
        world.check();
    }
});

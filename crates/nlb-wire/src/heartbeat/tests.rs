//! Round trips, limits and hostile input for the heartbeat codec.

use super::*;
use crate::ethernet::{ETHERTYPE_NLB_HEARTBEAT, EthernetFrame};
use crate::{Error, MacAddr};
use proptest::prelude::*;

fn sample() -> HeartbeatRepr {
    let mut owned = BucketBitmap::new(12);
    owned.insert(0);
    owned.insert(9);
    let mut target = owned.clone();
    target.insert(10);
    let mut field_digests = [0u8; FIELD_DIGESTS_LEN];
    for (i, digest) in field_digests.iter_mut().enumerate() {
        *digest = i as u8 + 1;
    }
    HeartbeatRepr {
        cluster_id: 0x0102_0304,
        host_id: 2,
        state: HostState::Converged,
        incarnation: 7,
        sequence: 0x1122_3344_5566_7788,
        config_fingerprint: 0xaabb_ccdd_eeff_0011,
        view_epoch: 3,
        heartbeat_ms: 100,
        view_members: [1, 2].into_iter().collect(),
        live_members: [1, 2, 3].into_iter().collect(),
        connections: 5,
        field_digests,
        sender_mac: Some(MacAddr([2, 0, 0, 0, 0, 2])),
        echoes: vec![Echo {
            host_id: 1,
            incarnation: 9,
            sequence: 0x0102,
        }],
        rules: vec![RuleStatus {
            weight: None,
            priority: Some(2),
            enabled: true,
            draining: false,
            check_down: true,
            owned,
            target,
        }],
    }
}

/// The bytes of [`sample`], written out by hand from the layout in the module docs.
#[rustfmt::skip]
static SAMPLE_BYTES: [u8; 118] = [
    b'N', b'L', 2, 0,
    0x01, 0x02, 0x03, 0x04,
    2, 2, 1, 1,
    0, 0, 0, 7,
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
    0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00, 0x11,
    0, 0, 0, 3,
    0, 100, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0b011,
    0, 0, 0, 0, 0, 0, 0, 0b111,
    0, 0, 0, 5,
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
    2, 0, 0, 0, 0, 2, 0, 0,
    1, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0x01, 0x02,
    255, 2, 1, 1, 0, 12,
    0b0000_0001, 0b0000_0010,
    0b0000_0001, 0b0000_0110,
];

/// The same heartbeat as version 1 wrote it: no MAC, no echoes.
fn sample_v1_bytes() -> Vec<u8> {
    let mut bytes = SAMPLE_BYTES[..84].to_vec();
    bytes[2] = 1;
    bytes[11] = 0;
    bytes.extend_from_slice(&SAMPLE_BYTES[108..]);
    bytes
}

#[test]
fn version_1_is_read_for_captures_but_never_authenticated() {
    let bytes = sample_v1_bytes();
    let packet = HeartbeatPacket::new_checked(&bytes[..]).unwrap();
    assert_eq!(packet.version(), 1);
    let mut expected = sample();
    expected.sender_mac = None;
    expected.echoes.clear();
    assert_eq!(HeartbeatRepr::parse(&packet, None).unwrap(), expected);
    assert!(matches!(
        HeartbeatRepr::parse(&packet, Some(&HeartbeatKey::derive(b"k"))),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn echoes_are_checked() {
    let mut bytes = SAMPLE_BYTES;
    bytes[92] = 65;
    let packet = HeartbeatPacket::new_checked(&bytes[..]).unwrap();
    assert!(matches!(
        HeartbeatRepr::parse(&packet, None),
        Err(Error::Malformed(_))
    ));
    let mut bytes = SAMPLE_BYTES;
    bytes[11] = 65;
    assert!(matches!(
        HeartbeatPacket::new_checked(&bytes[..]),
        Err(Error::Malformed(_))
    ));
    // An echo count that runs past the end.
    let mut bytes = SAMPLE_BYTES;
    bytes[11] = 5;
    assert!(matches!(
        HeartbeatPacket::new_checked(&bytes[..]),
        Err(Error::Truncated { .. })
    ));
}

#[test]
fn the_tag_covers_the_sender_mac() {
    let key = HeartbeatKey::derive(b"cluster secret");
    let repr = sample();
    let frame = repr.to_frame(
        MacAddr([2, 0, 0, 0, 0, 2]),
        MacAddr::BROADCAST,
        ETHERTYPE_NLB_HEARTBEAT,
        Some(&key),
    );
    let eth = EthernetFrame::parse(&frame).unwrap();
    let mut moved = eth.payload.to_vec();
    moved[84..90].copy_from_slice(&[2, 0, 0, 0, 0, 0x66]);
    let packet = HeartbeatPacket::new_checked(&moved[..]).unwrap();
    assert_eq!(
        HeartbeatRepr::parse(&packet, Some(&key)),
        Err(Error::BadTag)
    );
}

#[test]
fn heartbeat_deconstruct() {
    let packet = HeartbeatPacket::new_checked(&SAMPLE_BYTES[..]).unwrap();
    assert_eq!(HeartbeatRepr::parse(&packet, None).unwrap(), sample());
    assert_eq!(packet.total_len(), SAMPLE_BYTES.len());
}

#[test]
fn heartbeat_construct() {
    let repr = sample();
    let mut bytes = [0xa5u8; 118];
    assert_eq!(repr.buffer_len(false), bytes.len());
    repr.emit(&mut HeartbeatPacket::new_unchecked(&mut bytes[..]), None);
    assert_eq!(bytes, SAMPLE_BYTES);
}

#[test]
fn authenticated_round_trip_and_rejections() {
    let key = HeartbeatKey::derive(b"cluster secret");
    let repr = sample();
    let frame = repr.to_frame(
        MacAddr([2, 0, 0, 0, 0, 2]),
        MacAddr::BROADCAST,
        ETHERTYPE_NLB_HEARTBEAT,
        Some(&key),
    );
    let eth = EthernetFrame::parse(&frame).unwrap();
    let packet = HeartbeatPacket::new_checked(eth.payload).unwrap();
    assert!(packet.is_authenticated());
    assert_eq!(HeartbeatRepr::parse(&packet, Some(&key)).unwrap(), repr);

    // Wrong key.
    let other = HeartbeatKey::derive(b"another secret");
    assert_eq!(
        HeartbeatRepr::parse(&packet, Some(&other)),
        Err(Error::BadTag)
    );

    // Any flipped bit in the covered bytes or the tag.
    for index in [
        4,
        17,
        40,
        60,
        70,
        86,
        95,
        100,
        115,
        117,
        eth.payload.len() - 1,
    ] {
        let mut forged = eth.payload.to_vec();
        forged[index] ^= 0x10;
        let packet = HeartbeatPacket::new_checked(&forged[..]).unwrap();
        assert_eq!(
            HeartbeatRepr::parse(&packet, Some(&key)),
            Err(Error::BadTag),
            "byte {index}"
        );
    }

    // An unauthenticated frame where a key is configured.
    let plain = repr.to_frame(
        MacAddr([2, 0, 0, 0, 0, 2]),
        MacAddr::BROADCAST,
        ETHERTYPE_NLB_HEARTBEAT,
        None,
    );
    let eth = EthernetFrame::parse(&plain).unwrap();
    let packet = HeartbeatPacket::new_checked(eth.payload).unwrap();
    assert_eq!(
        HeartbeatRepr::parse(&packet, Some(&key)),
        Err(Error::BadTag)
    );
}

#[test]
fn anti_replay_accepts_only_newer_pairs() {
    let mut guard = AntiReplay::default();
    assert!(guard.check(5, 10).is_ok());
    assert!(guard.check(5, 11).is_ok());
    assert_eq!(
        guard.check(5, 11),
        Err(Replayed {
            newest: (5, 11),
            got: (5, 11)
        })
    );
    assert!(guard.check(5, 3).is_err());
    assert!(guard.check(4, 100).is_err());
    // A restart: higher incarnation, sequence from zero.
    assert!(guard.check(6, 0).is_ok());
    assert_eq!(guard.newest(), Some((6, 0)));
}

#[test]
fn malformed_headers_are_named() {
    let mut bad_magic = SAMPLE_BYTES;
    bad_magic[0] = b'X';
    assert!(matches!(
        HeartbeatPacket::new_checked(&bad_magic[..]),
        Err(Error::Malformed(_))
    ));
    let mut v3 = SAMPLE_BYTES;
    v3[2] = 3;
    assert!(matches!(
        HeartbeatPacket::new_checked(&v3[..]),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        HeartbeatPacket::new_checked(&SAMPLE_BYTES[..117]),
        Err(Error::Truncated {
            needed: 118,
            got: 117
        })
    ));
    let mut stray_bit = SAMPLE_BYTES;
    stray_bit[117] |= 0x80;
    let packet = HeartbeatPacket::new_checked(&stray_bit[..]).unwrap();
    assert_eq!(
        HeartbeatRepr::parse(&packet, None),
        Err(Error::Malformed(
            "bucket bitmap has bits beyond the bucket count"
        ))
    );
    let mut owned_outside_target = SAMPLE_BYTES;
    owned_outside_target[115] |= 0x08;
    let packet = HeartbeatPacket::new_checked(&owned_outside_target[..]).unwrap();
    assert_eq!(
        HeartbeatRepr::parse(&packet, None),
        Err(Error::Malformed("rule owns a bucket outside its target"))
    );
    let mut host_zero = SAMPLE_BYTES;
    host_zero[8] = 0;
    let packet = HeartbeatPacket::new_checked(&host_zero[..]).unwrap();
    assert!(matches!(
        HeartbeatRepr::parse(&packet, None),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn bucket_ranges_compress() {
    let mut bitmap = BucketBitmap::new(256);
    for bucket in (0..86).chain([100]).chain(200..211).chain([255]) {
        bitmap.insert(bucket);
    }
    assert_eq!(
        bitmap.ranges(),
        vec![(0, 85), (100, 100), (200, 210), (255, 255)]
    );
    assert_eq!(bitmap.ranges_text(), "0-85, 100, 200-210, 255");
    assert_eq!(BucketBitmap::new(256).ranges_text(), "");
}

#[test]
fn member_set_basics() {
    let mut set: MemberSet = [1, 3, 64].into_iter().collect();
    assert_eq!(set.iter().collect::<Vec<_>>(), vec![1, 3, 64]);
    assert!(!set.contains(0) && !set.contains(65) && !set.contains(2));
    set.remove(3);
    set.insert(0);
    assert_eq!(set.len(), 2);
}

fn any_rule() -> impl Strategy<Value = RuleStatus> {
    (
        prop_oneof![Just(None), (0u8..=100).prop_map(Some)],
        prop_oneof![Just(None), (1u8..=64).prop_map(Some)],
        any::<(bool, bool, bool)>(),
        (0u16..=600).prop_flat_map(|count| {
            (
                Just(count),
                proptest::collection::vec((any::<u16>(), any::<bool>()), 0..40),
            )
        }),
    )
        .prop_map(
            |(weight, priority, (enabled, draining, check_down), (count, buckets))| {
                let mut owned = BucketBitmap::new(count);
                let mut target = BucketBitmap::new(count);
                for (bucket, also_owned) in buckets {
                    if count > 0 {
                        target.insert(bucket % count);
                        if also_owned {
                            owned.insert(bucket % count);
                        }
                    }
                }
                RuleStatus {
                    weight,
                    priority,
                    enabled,
                    draining,
                    check_down,
                    owned,
                    target,
                }
            },
        )
}

fn any_heartbeat() -> impl Strategy<Value = HeartbeatRepr> {
    (
        any::<u32>(),
        1u8..=64,
        proptest::sample::select(HostState::ALL.to_vec()),
        any::<(u32, u64, u64, u32, u16)>(),
        any::<(u64, u64, u32, [u8; FIELD_DIGESTS_LEN])>(),
        proptest::collection::vec(any_rule(), 0..6),
        (
            any::<[u8; 6]>(),
            proptest::collection::vec((1u8..=64, any::<u32>(), any::<u64>()), 0..8),
        ),
    )
        .prop_map(
            |(
                cluster_id,
                host_id,
                state,
                (incarnation, sequence, fingerprint, epoch, period),
                (view, live, connections, field_digests),
                rules,
                (mac, echoes),
            )| {
                HeartbeatRepr {
                    cluster_id,
                    host_id,
                    state,
                    incarnation,
                    sequence,
                    config_fingerprint: fingerprint,
                    view_epoch: epoch,
                    heartbeat_ms: period,
                    view_members: MemberSet(view),
                    live_members: MemberSet(live),
                    connections,
                    field_digests,
                    sender_mac: Some(MacAddr(mac)),
                    echoes: echoes
                        .into_iter()
                        .map(|(host_id, incarnation, sequence)| Echo {
                            host_id,
                            incarnation,
                            sequence,
                        })
                        .collect(),
                    rules,
                }
            },
        )
}

proptest! {
    #[test]
    fn emit_then_parse_round_trips(repr in any_heartbeat(), authenticated in any::<bool>()) {
        let key = HeartbeatKey::derive(b"k");
        let key = authenticated.then_some(&key);
        let mut bytes = vec![0u8; repr.buffer_len(key.is_some())];
        repr.emit(&mut HeartbeatPacket::new_unchecked(&mut bytes[..]), key);
        let packet = HeartbeatPacket::new_checked(&bytes[..]).unwrap();
        prop_assert_eq!(packet.total_len(), bytes.len());
        prop_assert_eq!(HeartbeatRepr::parse(&packet, key).unwrap(), repr);
    }

    #[test]
    fn parse_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if bytes.len() >= 3 {
            let version = 1 + bytes.len() as u8 % 2;
            bytes[..3].copy_from_slice(&[b'N', b'L', version]);
        }
        if let Ok(packet) = HeartbeatPacket::new_checked(&bytes[..]) {
            let _ = HeartbeatRepr::parse(&packet, None);
            let _ = HeartbeatRepr::parse(&packet, Some(&HeartbeatKey::derive(b"k")));
        }
    }
}

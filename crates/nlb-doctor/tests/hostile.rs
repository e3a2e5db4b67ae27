//! The analyzer on hostile input: real fixtures with bytes an attacker chose (heartbeat
//! periods, sequences, incarnations, VLAN tags, timestamps), with and without a key.
//! Whatever the frames say, the doctor reads the whole capture and explains every
//! finding without panicking or overflowing (the test profile checks overflow).

use nlb_doctor::{Settings, diagnose};
use nlb_wire::heartbeat::HeartbeatKey;
use proptest::prelude::*;

/// Captures whose frames reach the ownership, heartbeat-trust and QinQ code.
const FIXTURES: &[&str] = &[
    "nlb-double-ownership.pcap",
    "nlb-handoffs.pcap",
    "nlb-multicast.pcap",
    "nlb-igmp.pcap",
    "tcp-two-servers-one-syn.pcap",
    "vlan-8021q.pcap",
    "linktype-sll2.pcap",
];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn mutated_fixtures_are_read_to_the_end(
        which in 0..FIXTURES.len(),
        // (position, byte) pairs past the 24-byte file header, which stays a capture's.
        edits in prop::collection::vec((any::<u32>(), any::<u8>()), 1..24),
        keyed in any::<bool>(),
    ) {
        let mut bytes = fixture(FIXTURES[which]);
        let body = bytes.len() - 24;
        for (at, byte) in edits {
            bytes[24 + at as usize % body] = byte;
        }
        let settings = Settings {
            heartbeat_key: keyed.then(|| HeartbeatKey::derive(b"any key, thirty-two bytes or more")),
            ..Settings::default()
        };
        // A capture error (a record header made impossible) is an answer too.
        if let Ok(report) = diagnose(&bytes[..], None, settings, |_| {}) {
            prop_assert!(report.findings.iter().all(|f| !f.message.is_empty()));
        }
    }
}

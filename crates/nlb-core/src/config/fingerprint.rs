//! The fingerprint: the cluster-wide configuration in a canonical byte encoding, hashed.
//!
//! Every host puts [`Config::fingerprint`] in its heartbeats, and one byte per field
//! ([`Config::field_digests`]), so that a host whose fingerprint differs from a peer's
//! can name the field ([`field_name`]) instead of only saying "misconfigured". The
//! encoding is written down in [`Config::fingerprint`]'s documentation and pinned by a
//! golden value in the tests: it depends only on the configuration's values, never on
//! Rust names or `Debug` text, so hosts built by different compilers agree. Changing it
//! is a protocol change, and takes a new version in the context strings.

use super::{Affinity, Config, Protocol, Rule, RuleMode};
use nlb_wire::addressing::ClusterMode;
use nlb_wire::heartbeat::FIELD_DIGESTS_LEN;

/// Names of the cluster-wide fields, in [`Config::field_digests`] order. Field `i` for
/// `i >= 6` is rule `i - 5` (1-based).
const FIELD_NAMES: [&str; 6] = [
    "cluster.vips",
    "cluster.mode",
    "cluster.heartbeat_ms",
    "cluster.tolerance",
    "cluster.key_file (authentication on or off)",
    "the number of [[rule]] tables",
];

/// The name of cluster-wide field `index` (see [`Config::field_digests`]).
pub fn field_name(index: usize) -> String {
    match FIELD_NAMES.get(index) {
        Some(name) => (*name).to_owned(),
        None => format!("[[rule]] number {}", index - FIELD_NAMES.len() + 1),
    }
}

impl Rule {
    /// The cluster-wide part of the rule in its canonical bytes (see
    /// [`Config::fingerprint`]): the VIP (`0`, or `1` and its four octets), the first and
    /// last port (big-endian `u16`s), then the protocol, mode and affinity codes.
    fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12);
        match self.vip {
            None => out.push(0),
            Some(vip) => {
                out.push(1);
                out.extend_from_slice(&vip.octets());
            }
        }
        out.extend_from_slice(&self.ports.start().to_be_bytes());
        out.extend_from_slice(&self.ports.end().to_be_bytes());
        out.push(match self.protocol {
            Protocol::Tcp => 1,
            Protocol::Udp => 2,
            Protocol::Both => 3,
        });
        out.push(match self.mode {
            RuleMode::Multiple => 1,
            RuleMode::Single => 2,
            RuleMode::Disabled => 3,
        });
        out.push(match self.affinity {
            Affinity::None => 1,
            Affinity::Single => 2,
            Affinity::Network => 3,
        });
        out
    }
}

impl Config {
    /// The cluster-wide fields in their canonical encoding: see [`Config::fingerprint`].
    pub(super) fn canonical_fields(&self) -> Vec<Vec<u8>> {
        let mut vips = self.cluster.vips.clone();
        vips.sort();
        let mut vip_bytes = vec![vips.len() as u8];
        for vip in &vips {
            vip_bytes.extend_from_slice(&vip.octets());
        }
        let mode = match self.cluster.mode {
            ClusterMode::Unicast => 1,
            ClusterMode::Multicast => 2,
            ClusterMode::Igmp => 3,
        };
        let mut values = vec![
            vip_bytes,
            vec![mode],
            self.cluster.heartbeat_ms.to_be_bytes().to_vec(),
            vec![self.cluster.tolerance],
            vec![u8::from(self.cluster.key_file.is_some())],
            vec![self.rules.len() as u8],
        ];
        values.extend(self.rules.iter().map(Rule::canonical));
        values
            .into_iter()
            .enumerate()
            .map(|(tag, value)| {
                let mut field = Vec::with_capacity(3 + value.len());
                field.push(tag as u8);
                field.extend_from_slice(&(value.len() as u16).to_be_bytes());
                field.extend_from_slice(&value);
                field
            })
            .collect()
    }

    /// A 64-bit hash of the cluster-wide configuration: the first 8 bytes (big-endian) of
    /// BLAKE3 in key-derivation mode, context `"nlb config fingerprint v2"`, over the
    /// concatenated canonical fields. It depends only on these bytes, never on Rust names
    /// or `Debug` text, so every build on every machine computes the same value for the
    /// same file.
    ///
    /// The hash covers the cluster-wide fields in a canonical encoding, in [`field_name`]
    /// order, each `tag (u8) ‖ length (u16, big-endian) ‖ value`, where the tag
    /// is the field's index. The values (integers big-endian, enums by the fixed codes
    /// below, never by their Rust names or `Debug` text):
    ///
    /// | index | field | value |
    /// |---|---|---|
    /// | 0 | `cluster.vips` | count (u8), then each VIP's four octets, in ascending order |
    /// | 1 | `cluster.mode` | unicast 1, multicast 2, igmp 3 |
    /// | 2 | `cluster.heartbeat_ms` | u16 |
    /// | 3 | `cluster.tolerance` | u8 |
    /// | 4 | authentication | 1 with `key_file`, 0 without (the key itself is never hashed) |
    /// | 5 | number of rules | u8 (a file without rules has one: [`Rule::catch_all`]) |
    /// | 6 + i | rule i + 1 | VIP: 0 for "all", or 1 and four octets; first port (u16); last port (u16); protocol (tcp 1, udp 2, both 3); mode (multiple 1, single 2, disabled 3); affinity (none 1, single 2, network 3) |
    ///
    /// Weights and priorities are this host's own, and are not encoded.
    pub fn fingerprint(&self) -> u64 {
        let mut hasher = blake3::Hasher::new_derive_key("nlb config fingerprint v2");
        for field in self.canonical_fields() {
            hasher.update(&field);
        }
        let digest = hasher.finalize();
        u64::from_be_bytes(digest.as_bytes()[..8].try_into().expect("8 bytes"))
    }

    /// One byte per cluster-wide field (unused slots are 0), so that two hosts can find
    /// the field where they differ: see [`field_name`]. Slot `i` is the first byte of
    /// BLAKE3 (key derivation, context `"nlb config field v2"`) over field `i`'s canonical
    /// bytes, with its low bit set so that it is never 0.
    pub fn field_digests(&self) -> [u8; FIELD_DIGESTS_LEN] {
        let mut digests = [0u8; FIELD_DIGESTS_LEN];
        for (slot, field) in digests.iter_mut().zip(self.canonical_fields()) {
            let mut hasher = blake3::Hasher::new_derive_key("nlb config field v2");
            hasher.update(&field);
            // Never 0, so that "unused" and "differs" cannot be confused.
            *slot = hasher.finalize().as_bytes()[0] | 1;
        }
        digests
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{MINIMAL, parse};

    #[test]
    fn fingerprint_ignores_host_part_and_names_differing_field() {
        let a = parse(MINIMAL).unwrap();
        let b = parse(&MINIMAL.replace("id = 1", "id = 2")).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.field_digests(), b.field_digests());
        let c = parse(&MINIMAL.replace("[host]", "mode = \"unicast\"\n[host]")).unwrap();
        assert_ne!(a.fingerprint(), c.fingerprint());
        let differing: Vec<_> = a
            .field_digests()
            .iter()
            .zip(c.field_digests())
            .enumerate()
            .filter(|(_, (x, y))| **x != *y)
            .map(|(i, _)| field_name(i))
            .collect();
        assert_eq!(differing, vec!["cluster.mode".to_owned()]);
    }

    /// A fixed file with two VIPs, non-default timers and two rules.
    const GOLDEN: &str = r#"
[cluster]
interface = "eth0"
vips = ["198.18.0.11", "198.18.0.10"]
mode = "igmp"
heartbeat_ms = 100
tolerance = 3
key_file = "/etc/nlb/cluster.key"

[host]
id = 2

[[rule]]
vip = "198.18.0.10"
ports = "8000-8100"
protocol = "tcp"
affinity = "none"
weight = 30

[[rule]]
ports = "53"
protocol = "udp"
mode = "single"
priority = 2
"#;

    #[test]
    fn canonical_encoding_is_the_documented_bytes() {
        let config = parse(GOLDEN).unwrap();
        let expected: Vec<Vec<u8>> = vec![
            vec![0, 0, 9, 2, 198, 18, 0, 10, 198, 18, 0, 11],
            vec![1, 0, 1, 3],
            vec![2, 0, 2, 0, 100],
            vec![3, 0, 1, 3],
            vec![4, 0, 1, 1],
            vec![5, 0, 1, 2],
            vec![6, 0, 12, 1, 198, 18, 0, 10, 0x1f, 0x40, 0x1f, 0xa4, 1, 1, 1],
            vec![7, 0, 8, 0, 0, 53, 0, 53, 2, 2, 2],
        ];
        assert_eq!(config.canonical_fields(), expected);
    }

    /// Written down once: if this fails, the encoding changed, and hosts built before and
    /// after the change will call each other misconfigured. Change it only on purpose,
    /// with the context strings' version.
    #[test]
    fn fingerprint_is_the_golden_value() {
        let config = parse(GOLDEN).unwrap();
        assert_eq!(
            config.fingerprint(),
            GOLDEN_FINGERPRINT,
            "{:#018x}",
            config.fingerprint()
        );
        assert_eq!(
            config.field_digests(),
            GOLDEN_DIGESTS,
            "{:?}",
            config.field_digests()
        );
    }

    const GOLDEN_FINGERPRINT: u64 = 0x3ed7_62e9_597d_e67b;
    const GOLDEN_DIGESTS: [u8; FIELD_DIGESTS_LEN] = [
        189, 247, 203, 175, 131, 205, 9, 197, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn each_field_changes_its_own_digest_only() {
        let base = parse(GOLDEN).unwrap();
        let cases: [(&str, &str, &str); 14] = [
            ("\"198.18.0.11\", ", "\"198.18.0.12\", ", "cluster.vips"),
            ("mode = \"igmp\"", "mode = \"unicast\"", "cluster.mode"),
            (
                "heartbeat_ms = 100",
                "heartbeat_ms = 101",
                "cluster.heartbeat_ms",
            ),
            ("tolerance = 3", "tolerance = 4", "cluster.tolerance"),
            (
                "key_file = \"/etc/nlb/cluster.key\"",
                "insecure_no_key = true",
                "cluster.key_file (authentication on or off)",
            ),
            (
                "vip = \"198.18.0.10\"",
                "vip = \"198.18.0.11\"",
                "[[rule]] number 1",
            ),
            (
                "vip = \"198.18.0.10\"",
                "vip = \"all\"",
                "[[rule]] number 1",
            ),
            ("8000-8100", "8000-8101", "[[rule]] number 1"),
            ("8000-8100", "7999-8100", "[[rule]] number 1"),
            (
                "protocol = \"tcp\"",
                "protocol = \"both\"",
                "[[rule]] number 1",
            ),
            (
                "affinity = \"none\"",
                "affinity = \"network\"",
                "[[rule]] number 1",
            ),
            (
                "mode = \"single\"",
                "mode = \"disabled\"",
                "[[rule]] number 2",
            ),
            ("ports = \"53\"", "ports = \"54\"", "[[rule]] number 2"),
            (
                "protocol = \"udp\"",
                "protocol = \"tcp\"",
                "[[rule]] number 2",
            ),
        ];
        for (from, to, field) in cases {
            assert!(GOLDEN.contains(from), "{from}");
            let changed = parse(&GOLDEN.replace(from, to)).unwrap();
            let differing: Vec<_> = base
                .field_digests()
                .iter()
                .zip(changed.field_digests())
                .enumerate()
                .filter(|(_, (x, y))| **x != *y)
                .map(|(i, _)| field_name(i))
                .collect();
            assert_eq!(differing, vec![field.to_owned()], "{from} -> {to}");
            assert_ne!(base.fingerprint(), changed.fingerprint(), "{from} -> {to}");
        }
        // This host's own part changes nothing; nor does the key file's path.
        for (from, to) in [
            ("id = 2", "id = 3"),
            ("weight = 30", "weight = 70"),
            ("priority = 2", "priority = 5"),
            ("interface = \"eth0\"", "interface = \"eth1\""),
            ("/etc/nlb/cluster.key", "/etc/nlb/other.key"),
        ] {
            let same = parse(&GOLDEN.replace(from, to)).unwrap();
            assert_eq!(base.fingerprint(), same.fingerprint(), "{from} -> {to}");
            assert_eq!(base.field_digests(), same.field_digests(), "{from} -> {to}");
        }
        // Adding a rule changes the count and fills a slot that was unused.
        let more = parse(&format!(
            "{GOLDEN}\n[[rule]]\nports = \"443\"\nprotocol = \"tcp\"\n"
        ))
        .unwrap();
        let differing: Vec<_> = (0..FIELD_DIGESTS_LEN)
            .filter(|&i| base.field_digests()[i] != more.field_digests()[i])
            .map(field_name)
            .collect();
        assert_eq!(
            differing,
            vec!["the number of [[rule]] tables", "[[rule]] number 3"]
        );
    }
}

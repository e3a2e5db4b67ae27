//! The generated ruleset loads into the running kernel's nftables, in every mode, lists
//! back, takes lease refreshes, and replaces itself atomically.

use nlb_core::buckets::BUCKETS;
use nlb_core::config::Config;
use nlb_linux::netns::NetNs;
use nlb_linux::nft::{NftSession, SessionError};
use nlb_linux::ruleset::{RuleState, Ruleset, Update};
use nlb_wire::bitmap::BucketBitmap;
use std::time::Duration;

fn config(mode: &str, interface: &str) -> Config {
    Config::parse(
        &format!(
            "[cluster]\ninterface = \"{interface}\"\nvips = [\"198.18.0.10\"]\nmode = \"{mode}\"\n[host]\nid = 1\n[[rule]]\nports = \"80\"\nprotocol = \"tcp\"\naffinity = \"none\"\n[[rule]]\nports = \"53\"\nprotocol = \"udp\"\nmode = \"single\"\npriority = 1\n"
        ),
        "t.toml",
    )
    .unwrap()
}

#[test]
fn generated_ruleset_loads_lists_and_refreshes() {
    if !nlb_linux::netns::require_root("generated_ruleset_loads_lists_and_refreshes") {
        return;
    }
    let ns = NetNs::create(&nlb_linux::netns::unique_name("nlbt-rs")).unwrap();
    let interface = "rs0";
    ns.ip(&[
        "link", "add", interface, "type", "veth", "peer", "name", "rs1",
    ])
    .unwrap();
    for mode in ["unicast", "multicast", "igmp"] {
        let config = config(mode, interface);
        let mut half = BucketBitmap::new(BUCKETS);
        (0..128).for_each(|b| half.insert(b));
        let mut some = BucketBitmap::new(BUCKETS);
        (200..210).for_each(|b| some.insert(b));
        let rules = vec![
            RuleState {
                owned: half.clone(),
                draining: some.clone(),
                keep_established: true,
            },
            RuleState {
                owned: BucketBitmap::new(BUCKETS),
                draining: BucketBitmap::new(BUCKETS),
                keep_established: true,
            },
            RuleState {
                owned: half,
                draining: some,
                keep_established: false,
            },
        ];
        let ruleset = Ruleset {
            config: &config,
            rules: &rules,
            lease: Duration::from_millis(300),
            local_ports: nlb_linux::ruleset::DEFAULT_LOCAL_PORTS,
            drain_idle: nlb_linux::ruleset::DEFAULT_DRAIN_IDLE,
        };
        // Twice: the second load replaces the first atomically.
        for _ in 0..2 {
            for batch in ruleset.batches() {
                ns.nft(&batch)
                    .unwrap_or_else(|e| panic!("{mode}: {e}\n{batch}"));
            }
        }
        let table = ruleset.table();
        assert!(table.starts_with("nlb_rs0_"), "{table}");
        let listed = ns.exec("nft", &["list", "ruleset"], None).unwrap();
        assert!(listed.contains(&format!("table inet {table}")), "{listed}");
        assert!(listed.contains(&format!("table arp {table}")), "{listed}");
        assert!(
            listed.contains(&format!("table netdev {table}")),
            "{listed}"
        );
        assert_eq!(
            listed.contains("meta pkttype set host\n"),
            mode == "unicast",
            "{listed}"
        );
        assert!(listed.contains("seed 0x"), "{listed}");
        let chain = ns
            .exec("nft", &["-j", "list", "chain", "inet", &table, "pre"], None)
            .unwrap();
        let ingress = ns
            .exec("nft", &["-j", "list", "table", "netdev", &table], None)
            .unwrap();
        let mut counters = nlb_linux::ruleset::parse_counters(&chain);
        counters.extend(nlb_linux::ruleset::parse_counters(&ingress));
        let names: Vec<&str> = counters.iter().map(|(name, _)| name.as_str()).collect();
        for want in [
            "established",
            "invalid",
            "not syn",
            "draining new",
            "rule1 accept",
            "rule1 no lease",
            "rule1 deferred drop",
            "local port",
            "not tcp or udp",
            "rule1 drop",
            "default drop",
            "fragment",
        ] {
            assert!(
                names.contains(&want),
                "{mode}: {want} missing from {names:?}"
            );
        }
        assert!(counters.iter().all(|(_, packets)| *packets == 0));
        ns.nft(&ruleset.lease_refresh()).unwrap();
        let lease = ns
            .exec("nft", &["list", "set", "inet", &table, "lease"], None)
            .unwrap();
        assert!(lease.contains("198.18.0.10 timeout 300ms"), "{lease}");
        // A release (buckets 0..10 of rule 1 start draining) and a claim (128..130), as
        // one line of element changes on an `nft -i` session.
        let mut after = rules.clone();
        for bucket in 0..10 {
            after[0].owned.remove(bucket);
            after[0].draining.insert(bucket);
        }
        (128..130).for_each(|b| after[0].owned.insert(b));
        let changed = Ruleset {
            config: &config,
            rules: &after,
            lease: Duration::from_millis(300),
            local_ports: nlb_linux::ruleset::DEFAULT_LOCAL_PORTS,
            drain_idle: nlb_linux::ruleset::DEFAULT_DRAIN_IDLE,
        };
        let Update::Elements(line) = changed.update_from(&rules) else {
            panic!("{mode}: only elements change");
        };
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    ns.enter_current_thread().unwrap();
                    let mut session = NftSession::start().unwrap();
                    session.run(&line, Duration::from_secs(2)).unwrap();
                    // Again: the deleted elements are gone, so nft refuses it whole.
                    let again = session.run(&line, Duration::from_secs(2)).unwrap_err();
                    assert!(matches!(again, SessionError::Refused { .. }), "{again}");
                })
                .join()
                .unwrap();
        });
        let map = ns
            .exec(
                "nft",
                &["-j", "list", "map", "netdev", &table, "rule1"],
                None,
            )
            .unwrap();
        let verdicts = map_elements(&map);
        let wanted: Vec<(u64, String)> = (0..130)
            .chain(200..210)
            .map(|b| {
                let chain = if (10..130).contains(&b) {
                    "owned"
                } else {
                    "draining_rule1"
                };
                (b, chain.to_owned())
            })
            .collect();
        assert_eq!(verdicts, wanted, "{mode}");
        let set = ns
            .exec("nft", &["-j", "list", "set", "inet", &table, "rule1"], None)
            .unwrap();
        assert_eq!(
            set_elements(&set),
            (10..130).collect::<Vec<u64>>(),
            "{mode}"
        );
        ns.nft(&ruleset.teardown()).unwrap();
        let listed = ns.exec("nft", &["list", "ruleset"], None).unwrap();
        assert!(!listed.contains("nlb_rs0"), "{listed}");
    }
}

/// The integer elements of a set, from `nft -j list set`.
fn set_elements(json: &str) -> Vec<u64> {
    let doc: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut out: Vec<u64> = doc["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item.get("set")?.get("elem")?.as_array().cloned())
        .flatten()
        .filter_map(|e| e.as_u64())
        .collect();
    out.sort_unstable();
    out
}

/// The `bucket : jump chain` elements of a verdict map, from `nft -j list map`.
fn map_elements(json: &str) -> Vec<(u64, String)> {
    let doc: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut out: Vec<(u64, String)> = doc["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item.get("map")?.get("elem")?.as_array().cloned())
        .flatten()
        .map(|pair| {
            let key = pair[0].as_u64().unwrap_or_else(|| panic!("{pair}"));
            let target = pair[1]["jump"]["target"]
                .as_str()
                .unwrap_or_else(|| panic!("{pair}"));
            (key, target.to_owned())
        })
        .collect();
    out.sort();
    out
}

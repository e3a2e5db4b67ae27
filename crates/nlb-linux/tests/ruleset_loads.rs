//! The generated ruleset loads into the running kernel's nftables, in every mode, lists
//! back, takes lease refreshes, and replaces itself atomically.

use nlb_core::buckets::BUCKETS;
use nlb_core::config::Config;
use nlb_linux::netns::NetNs;
use nlb_linux::ruleset::{RuleState, Ruleset};
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
        let rules = vec![
            RuleState {
                owned: half.clone(),
                keep_established: true,
            },
            RuleState {
                owned: BucketBitmap::new(BUCKETS),
                keep_established: true,
            },
            RuleState {
                owned: half,
                keep_established: false,
            },
        ];
        let ruleset = Ruleset {
            config: &config,
            rules: &rules,
            lease: Duration::from_millis(300),
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
        assert_eq!(
            listed.contains(&format!("table netdev {table}")),
            mode == "unicast",
            "{listed}"
        );
        assert!(listed.contains("seed 0x"), "{listed}");
        let chain = ns
            .exec("nft", &["-j", "list", "chain", "inet", &table, "pre"], None)
            .unwrap();
        let counters = nlb_linux::ruleset::parse_counters(&chain);
        let names: Vec<&str> = counters.iter().map(|(name, _)| name.as_str()).collect();
        for want in [
            "established",
            "invalid",
            "not syn",
            "rule1 accept",
            "rule1 drop",
            "default drop",
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
        ns.nft(&ruleset.teardown()).unwrap();
        let listed = ns.exec("nft", &["list", "ruleset"], None).unwrap();
        assert!(!listed.contains("nlb_rs0"), "{listed}");
    }
}

//! The nft ruleset of one host, as a pure function of its configuration and what it owns.
//!
//! Three tables, each named by [`table_name`] after the interface and the cluster, so
//! that clusters on different interfaces, and clusters on one interface, do not collide:
//!
//! - **`arp`**: the kernel must never answer ARP for a VIP (the daemon answers, with the
//!   cluster MAC), and any ARP packet the kernel sends *from* a VIP (an outbound
//!   connection sourced from it) gets the cluster MAC as its sender hardware address, so
//!   no peer ever caches a VIP at one host's own MAC.
//! - **`netdev`** (unicast mode only): frames to the unicast cluster MAC are marked as
//!   addressed to this host before the IP layer would drop them as `otherhost`.
//! - **`inet`**: per packet to a VIP, in order:
//!   1. rules this host disabled (or all rules, when it is stopped) drop everything;
//!   2. packets of connections conntrack already knows are accepted (this host has them);
//!   3. packets conntrack finds invalid (such as the SYN-ACK answering another host's
//!      outbound connection) and new TCP packets that are not a SYN are dropped, so this
//!      host neither resets nor adopts another host's connection;
//!   4. for each rule, then the fallback rule ([`Rule::FALLBACK`]): if the flow's
//!      bucket ([`Affinity::nft_hash_expr`]: `jhash <affinity key> mod 256 seed
//!      <cluster seed>`, exactly as [`nlb_core::filter::decide`] computes it) is owned,
//!      accept; otherwise drop.
//!
//! **Leases.** The accept rules of step 4 also require `ip daddr @lease`, a set holding
//! the VIPs with an element timeout. The daemon re-adds them every few heartbeats. If it
//! is killed, the elements expire and the host stops taking new connections on its own,
//! before its peers (who wait for the failure window) take its buckets over.
//!
//! Why the owned buckets are anonymous sets in the rules and not named sets with
//! timeouts: nft 1.0.6 cannot type a named set for a `jhash` key except with
//! `typeof jhash ...`, and then `nft list ruleset` crashes (checked in a namespace); a
//! set of `meta mark` would need the packet mark, which other software uses. Ownership
//! changes only when the view changes, so rewriting the table atomically then is cheap,
//! and the lease set carries the per-heartbeat refresh.
//!
//! Every rule of the `inet` chain counts its packets and carries a comment naming it
//! (`established`, `rule1 accept`, `default drop`, ...), which [`parse_counters`] reads
//! back for the metrics. The fallback rule's counters keep the name `default`, which
//! metrics and dashboards already know.
//!
//! nft 1.0.6 refuses an `arp` table and an `inet` table that matches `ip daddr` in one
//! batch ("conflicting protocols"), so [`Ruleset::batches`] returns them separately.

use nlb_core::config::{Affinity, Config, Protocol, Rule, RuleMode};
use nlb_core::filter::{RuleRef, cluster_seed};
use nlb_wire::addressing::{ClusterMode, cluster_mac};
use nlb_wire::heartbeat::BucketBitmap;
use std::fmt::Write;
use std::time::Duration;

/// What the kernel should do for one rule slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleState {
    /// Buckets to accept new connections for.
    pub owned: BucketBitmap,
    /// Whether packets of existing connections are accepted.
    pub keep_established: bool,
}

/// The inputs of the ruleset.
#[derive(Debug, Clone)]
pub struct Ruleset<'a> {
    /// The host's configuration.
    pub config: &'a Config,
    /// Per rule slot, the fallback rule last.
    pub rules: &'a [RuleState],
    /// How long a lease lasts without a refresh.
    pub lease: Duration,
}

/// The nft table name of a cluster on an interface: `nlb_`, the interface name
/// escaped, `_`, and the cluster id in hex: `nlb_eth0_c612000a`. Letters and digits stay;
/// `_` becomes `__` and any other character `_` and its hex code (`eth0.10` is
/// `eth0_2e10`, `eth0_10` is `eth0__10`), so two interface names never share a table.
pub fn table_name(interface: &str, cluster_id: u32) -> String {
    let mut escaped = String::new();
    for c in interface.chars() {
        match c {
            c if c.is_ascii_alphanumeric() => escaped.push(c),
            '_' => escaped.push_str("__"),
            c => {
                for byte in c.to_string().bytes() {
                    let _ = write!(escaped, "_{byte:02x}");
                }
            }
        }
    }
    format!("nlb_{escaped}_{cluster_id:08x}")
}

fn vip_set(config: &Config) -> String {
    let vips: Vec<String> = config.cluster.vips.iter().map(|v| v.to_string()).collect();
    format!("{{ {} }}", vips.join(", "))
}

fn millis(duration: Duration) -> String {
    format!("{}ms", duration.as_millis().max(1))
}

impl Ruleset<'_> {
    /// The table name.
    pub fn table(&self) -> String {
        table_name(
            &self.config.cluster.interface,
            nlb_wire::addressing::cluster_id(&self.config.cluster.vips),
        )
    }

    /// The `arp` table.
    pub fn arp_table(&self) -> String {
        let table = self.table();
        let mut out = String::new();
        let _ = writeln!(out, "table arp {table} {{");
        let _ = writeln!(
            out,
            "\tchain in {{\n\t\ttype filter hook input priority 0; policy accept;\n\t\tarp operation request arp daddr ip {} drop\n\t}}",
            vip_set(self.config)
        );
        let _ = writeln!(
            out,
            "\tchain out {{\n\t\ttype filter hook output priority 0; policy accept;"
        );
        for &vip in &self.config.cluster.vips {
            let mac = cluster_mac(vip, self.config.cluster.mode);
            let _ = writeln!(out, "\t\tarp saddr ip {vip} arp saddr ether set {mac}");
        }
        out.push_str("\t}\n}\n");
        out
    }

    /// The `netdev` table, in unicast mode only.
    pub fn netdev_table(&self) -> Option<String> {
        if self.config.cluster.mode != ClusterMode::Unicast {
            return None;
        }
        let macs: Vec<String> = self
            .config
            .cluster
            .vips
            .iter()
            .map(|&vip| cluster_mac(vip, ClusterMode::Unicast).to_string())
            .collect();
        Some(format!(
            "table netdev {table} {{\n\tchain ingress {{\n\t\ttype filter hook ingress device \"{dev}\" priority -500; policy accept;\n\t\tether daddr {{ {macs} }} meta pkttype set host\n\t}}\n}}\n",
            table = self.table(),
            dev = self.config.cluster.interface,
            macs = macs.join(", ")
        ))
    }

    /// The match of a configured rule: VIP, protocol and ports.
    fn rule_match(&self, slot: usize) -> String {
        let rule = &self.config.rules[slot];
        let vip = rule.vip.map_or_else(
            || format!("ip daddr {}", vip_set(self.config)),
            |v| format!("ip daddr {v}"),
        );
        let proto = match rule.protocol {
            Protocol::Tcp => "meta l4proto tcp",
            Protocol::Udp => "meta l4proto udp",
            Protocol::Both => "meta l4proto { tcp, udp }",
        };
        let ports = if rule.ports.start() == rule.ports.end() {
            rule.ports.start().to_string()
        } else {
            format!("{}-{}", rule.ports.start(), rule.ports.end())
        };
        if *rule.ports.start() == 0 && *rule.ports.end() == 65535 {
            format!("{vip} {proto}")
        } else {
            format!("{vip} {proto} th dport {ports}")
        }
    }

    fn hash(&self, affinity: Affinity) -> String {
        affinity.nft_hash_expr(cluster_seed(self.config))
    }

    /// The `inet` table, with the lease set filled.
    pub fn inet_table(&self) -> String {
        let table = self.table();
        let vips = vip_set(self.config);
        let configured = self.config.rules.len();
        let mut out = String::new();
        let _ = writeln!(out, "table inet {table} {{");
        let _ = writeln!(
            out,
            "\tset lease {{\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t\telements = {{ {} }}\n\t}}",
            self.lease_elements()
        );
        let _ = writeln!(
            out,
            "\tchain pre {{\n\t\ttype filter hook prerouting priority -150; policy accept;"
        );
        // 0. This host's own connections to a VIP (a health check of the local service, a
        //    local client) come in on `lo`: the buckets share the segment's clients, and
        //    a local client is this host's whatever it owns.
        let _ = writeln!(
            out,
            "\t\tiifname \"lo\" ip daddr {vips} counter accept comment \"local\""
        );
        // 1. Disabled rules (or a stopped host): drop everything, connections included.
        for slot in 0..configured {
            let dropped = !self.rules[slot].keep_established
                || self.config.rules[slot].mode == RuleMode::Disabled;
            if dropped {
                let _ = writeln!(
                    out,
                    "\t\t{} counter drop comment \"rule{} disabled\"",
                    self.rule_match(slot),
                    slot + 1
                );
            }
        }
        if !self.rules[configured].keep_established {
            let _ = writeln!(out, "\t\tip daddr {vips} counter drop comment \"stopped\"");
        }
        // 2. Connections this host has.
        let _ = writeln!(
            out,
            "\t\tip daddr {vips} ct state established,related meta pkttype set host counter accept comment \"established\""
        );
        // 3. Someone else's connection: conntrack calls a SYN-ACK it has no SYN for
        //    (the reply to another host's outbound connection) invalid, and would pick up
        //    a mid-stream packet as new. Neither may reach this host's TCP stack, which
        //    would answer with a reset.
        let _ = writeln!(
            out,
            "\t\tip daddr {vips} ct state invalid counter drop comment \"invalid\""
        );
        let _ = writeln!(
            out,
            "\t\tip daddr {vips} ct state new tcp flags & (fin | syn | rst | ack) != syn counter drop comment \"not syn\""
        );
        // 4. New flows by rule, then the fallback rule.
        for slot in 0..=configured {
            let rule = RuleRef::from_slot(self.config, slot).expect("a slot of this config");
            let Rule { mode, affinity, .. } = *rule.rule(self.config);
            if mode == RuleMode::Disabled {
                continue;
            }
            let (name, matched) = match rule {
                RuleRef::Configured(index) => (format!("rule{}", index + 1), self.rule_match(slot)),
                // All traffic to the VIPs that the rules before did not take.
                RuleRef::Fallback => ("default".to_owned(), format!("ip daddr {vips}")),
            };
            let owned = &self.rules[slot].owned;
            if !owned.is_empty() {
                let _ = writeln!(
                    out,
                    "\t\t{matched} ip daddr @lease {} {} meta pkttype set host counter accept comment \"{name} accept\"",
                    self.hash(affinity),
                    owned_set(affinity, owned)
                );
            }
            let _ = writeln!(out, "\t\t{matched} counter drop comment \"{name} drop\"");
        }
        out.push_str("\t}\n}\n");
        out
    }

    fn lease_elements(&self) -> String {
        let lease = millis(self.lease);
        self.config
            .cluster
            .vips
            .iter()
            .map(|vip| format!("{vip} timeout {lease} expires {lease}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The command that refreshes the leases, for `nft -f` or an `nft -i` session.
    pub fn lease_refresh(&self) -> String {
        format!(
            "add element inet {} lease {{ {} }}\n",
            self.table(),
            self.lease_elements()
        )
    }

    /// Batches for `nft -f`, each atomic, that replace whatever tables of this name
    /// exist (a stale run's included) with these: the `arp` table first, then the
    /// `netdev` (unicast) and `inet` tables.
    pub fn batches(&self) -> Vec<String> {
        let table = self.table();
        let replace = |family: &str, body: String| {
            format!("table {family} {table} {{}}\ndelete table {family} {table}\n{body}")
        };
        let mut second = String::new();
        if let Some(netdev) = self.netdev_table() {
            second.push_str(&replace("netdev", netdev));
        }
        second.push_str(&replace("inet", self.inet_table()));
        vec![replace("arp", self.arp_table()), second]
    }

    /// A batch that removes the tables of the name nlb used before table names carried
    /// the cluster (`nlb_` and the interface with `_` for anything but letters and
    /// digits), which a daemon killed before an upgrade leaves behind; its `inet` table
    /// would drop every new connection to the VIP once its lease ran out.
    pub fn legacy_teardown(&self) -> String {
        let cleaned: String = self
            .config
            .cluster
            .interface
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let table = format!("nlb_{cleaned}");
        ["arp", "netdev", "inet"]
            .iter()
            .map(|family| format!("table {family} {table} {{}}\ndelete table {family} {table}\n"))
            .collect()
    }

    /// A batch that removes every table of this name.
    pub fn teardown(&self) -> String {
        let table = self.table();
        ["arp", "netdev", "inet"]
            .iter()
            .map(|family| format!("table {family} {table} {{}}\ndelete table {family} {table}\n"))
            .collect()
    }
}

/// The buckets of `owned` as the nft set the hash of `affinity` is looked up in.
///
/// nft 1.0.6 refuses an interval (`0-15`, in a set or alone) after a hash of a masked
/// key, as affinity network's `ip saddr & 255.255.255.0` is: "Value 4294967040 exceeds
/// valid range 0-0" (checked in a namespace, and by `tests/ruleset_agrees.rs`). Single
/// values load, so those buckets are listed one by one; the others as ranges.
fn owned_set(affinity: Affinity, owned: &BucketBitmap) -> String {
    let elements = match affinity {
        Affinity::Network => owned
            .iter()
            .map(|bucket| bucket.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        Affinity::None | Affinity::Single => owned.ranges_text(),
    };
    format!("{{ {elements} }}")
}

/// The packet counters of the `inet` chain, by rule comment, from the JSON of
/// `nft -j list chain inet <table> pre`.
pub fn parse_counters(json: &str) -> Vec<(String, u64)> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let Some(items) = doc["nftables"].as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let rule = item.get("rule")?;
            let comment = rule["comment"].as_str()?.to_owned();
            let packets = rule["expr"]
                .as_array()?
                .iter()
                .find_map(|e| e.get("counter")?["packets"].as_u64())?;
            Some((comment, packets))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlb_core::buckets::BUCKETS;

    fn config(mode: &str, rules: &str) -> Config {
        Config::parse(
            &format!(
                "[cluster]\ninterface = \"veth-h1\"\nvips = [\"198.18.0.10\", \"198.18.0.11\"]\nmode = \"{mode}\"\n[host]\nid = 1\n{rules}"
            ),
            "t.toml",
        )
        .unwrap()
    }

    /// A bitmap of the buckets in `[start, end)` pairs.
    fn owning(ranges: &[(u16, u16)]) -> BucketBitmap {
        let mut bitmap = BucketBitmap::new(BUCKETS);
        for &(start, end) in ranges {
            (start..end).for_each(|b| bitmap.insert(b));
        }
        bitmap
    }

    #[test]
    fn table_names_never_collide() {
        let names = ["eth0.10", "eth0_10", "eth0-10", "eth010", "eth0_2e10"]
            .map(|name| table_name(name, 0xc612_000a));
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(table_name("eth0", 0xc612_000a), "nlb_eth0_c612000a");
        assert_eq!(table_name("eth0.10", 1), "nlb_eth0_2e10_00000001");
        assert_ne!(table_name("eth0", 1), table_name("eth0", 2));
    }

    #[test]
    fn multicast_ruleset_snapshot() {
        let config = config(
            "multicast",
            "[[rule]]\nports = \"80\"\nprotocol = \"tcp\"\naffinity = \"none\"\n[[rule]]\nvip = \"198.18.0.11\"\nports = \"5000-5100\"\nprotocol = \"both\"\naffinity = \"network\"\n[[rule]]\nports = \"25\"\nprotocol = \"tcp\"\nmode = \"disabled\"\n",
        );
        let rules = vec![
            RuleState {
                owned: owning(&[(0, 86)]),
                keep_established: true,
            },
            RuleState {
                owned: owning(&[]),
                keep_established: true,
            },
            RuleState {
                owned: owning(&[]),
                keep_established: true,
            },
            RuleState {
                owned: owning(&[(0, 256)]),
                keep_established: true,
            },
        ];
        let ruleset = Ruleset {
            config: &config,
            rules: &rules,
            lease: Duration::from_millis(100),
        };
        insta::assert_snapshot!(ruleset.batches().join("\n# ---- next batch ----\n"));
    }

    #[test]
    fn network_affinity_lists_buckets_one_by_one() {
        let owned = owning(&[(0, 3), (7, 8)]);
        assert_eq!(owned_set(Affinity::Network, &owned), "{ 0, 1, 2, 7 }");
        assert_eq!(owned_set(Affinity::Single, &owned), "{ 0-2, 7 }");
        assert_eq!(owned_set(Affinity::None, &owned), "{ 0-2, 7 }");
    }

    #[test]
    fn unicast_stopped_ruleset_snapshot() {
        let config = config("unicast", "");
        let rules = vec![
            RuleState {
                owned: owning(&[]),
                keep_established: false,
            },
            RuleState {
                owned: owning(&[]),
                keep_established: false,
            },
        ];
        let ruleset = Ruleset {
            config: &config,
            rules: &rules,
            lease: Duration::from_millis(100),
        };
        insta::assert_snapshot!(ruleset.batches().join("\n# ---- next batch ----\n"));
        assert_eq!(
            ruleset.lease_refresh(),
            "add element inet nlb_veth_2dh1_1db57edb lease { 198.18.0.10 timeout 100ms expires 100ms, 198.18.0.11 timeout 100ms expires 100ms }\n"
        );
    }
}

//! The nft ruleset of one host, as a pure function of its configuration and what it owns.
//!
//! Three tables, each named by [`table_name`] after the interface and the cluster, so
//! that clusters on different interfaces, and clusters on one interface, do not collide:
//!
//! - **`arp`**: the kernel must never answer ARP for a VIP (the daemon answers, with the
//!   cluster MAC), and any ARP packet the kernel sends *from* a VIP (an outbound
//!   connection sourced from it) gets the cluster MAC as its sender hardware address, so
//!   no peer ever caches a VIP at one host's own MAC.
//! - **`netdev`**, ingress on the cluster interface, priority -500, **before conntrack**:
//!   the first stage, which decides by bucket. In unicast mode, frames to the unicast
//!   cluster MAC are first marked as addressed to this host. Then, per packet to a VIP:
//!   1. what this stage cannot judge is *deferred* to the `inet` chain, marked
//!      [`DEFER_MARK`]: fragments (see below), protocols other than TCP and UDP (ICMP
//!      errors about this host's connections are `related` in conntrack), and packets to
//!      a port in the kernel's local port range ([`Ruleset::local_ports`]), which are
//!      mostly replies to connections this host opened from a VIP, in any bucket;
//!   2. for each rule in order, then the fallback rule ([`Rule::FALLBACK`](nlb_core::config::Rule::FALLBACK)), the first
//!      whose match covers the packet decides: a disabled rule drops it; otherwise its
//!      bucket ([`Affinity::nft_hash_expr`], exactly as [`nlb_core::filter::decide`]
//!      computes it) is looked up in the rule's verdict map: **owned** buckets are
//!      accepted, **draining** buckets (released by this host, which may still have
//!      connections in them) go on to conntrack marked with [`drain_mark`] (the rule
//!      slot and the bucket), except TCP SYNs, which are dropped; any other bucket is
//!      dropped here, and never costs conntrack anything.
//! - **`inet`**, prerouting at -150, after conntrack: the second stage, which knows
//!   connections. Per packet to a VIP, in order:
//!   1. this host's own connections (`lo`) are accepted;
//!   2. rules this host disabled (or all rules, when it is stopped) drop everything;
//!   3. a new flow in a draining bucket is dropped ([`DRAIN_TAG`]); a packet of a
//!      draining bucket that conntrack finds established puts its [`drain_mark`] in
//!      the `recent` set, or restarts its timeout there (see **Draining** below);
//!   4. packets of connections conntrack already knows are accepted;
//!   5. packets conntrack finds invalid (such as the SYN-ACK answering another host's
//!      outbound connection) and new TCP packets that are not a SYN are dropped, so this
//!      host neither resets nor adopts another host's connection;
//!   6. a new flow that did not come in on the cluster interface (so the first stage did
//!      not judge it) is dropped;
//!   7. a new flow the first stage did not mark owned ([`OWNED_MARK`]) or deferred is
//!      dropped: the `inet` chain never takes an unjudged packet for an owned one, so
//!      if the `netdev` stage is not running (its hook lost with a re-created device on
//!      a kernel that does not re-attach it, its chain flushed by hand) the host fails
//!      closed instead of accepting every bucket;
//!   8. for each rule, then the fallback rule: a deferred new flow ([`DEFER_MARK`]) is
//!      judged by bucket here, against the rule's set of owned buckets; then a new flow
//!      is accepted if the lease is live.
//!
//! **Leases.** The accept rules of step 8 require `ip daddr @lease`, a set holding the
//! VIPs with an element timeout. The daemon re-adds them every few heartbeats. If it is
//! killed, the elements expire and the host stops taking new connections on its own,
//! before its peers (who wait for the failure window) take its buckets over.
//!
//! **Ownership is elements, not rules.** Each enabled rule slot has a verdict map in the
//! `netdev` table (`bucket : jump owned` or `bucket : jump draining_<rule>`; absent:
//! not owned) and a set of its owned buckets in the `inet` table, both named after the rule
//! (`rule1`, ..., `default`). A release or a claim is [`Ruleset::update_from`]: one line
//! of element deletes and adds, one transaction, sent on the daemon's long-lived
//! `nft -i` session; only a change of the tables' shape (a stopped host, a reload)
//! rewrites them.
//!
//! **The packet mark.** nft 1.0.6 can key a named map by a `jhash` only with
//! `typeof jhash ...`, and then `nft list ruleset` crashes (checked); so the bucket is
//! computed into `meta mark` and looked up from there, the same way in both stages.
//! This is safe for other software that uses marks because: at netdev ingress the mark
//! of a received packet is 0 (a NIC delivers 0 and a veth scrubs it between namespaces;
//! only a tc ingress program, which runs before, could have set one); the `netdev`
//! chain leaves it at one of nlb's marks ([`OWNED_MARK`], [`DEFER_MARK`], or a
//! [`drain_mark`]: [`DRAIN_TAG`] in the high half) on every path that does not drop;
//! the `inet` chain resets those to 0 before it accepts, and uses the mark as a scratch
//! register only on packets that carry [`DEFER_MARK`]. So the mark is never nlb's value
//! outside nlb's own chains, except in prerouting chains of other software between
//! priorities -500 and -150 (raw, conntrack), and a `meta mark`-based policy there sees
//! nlb's marks. A mark that
//! a tc ingress program (or XDP metadata) put on a packet to a VIP is lost: nlb's
//! chains leave it 0. nft 1.0.6 has no way to keep it (no register-to-register
//! bitwise operations), so nlb does not coexist with software that marks VIP traffic
//! at tc ingress (Cilium's, for example) and reads the mark later.
//!
//! **Draining.** A released bucket stays draining (its packets reach conntrack, so this
//! host's connections in it go on) while any connection of this host in it is alive,
//! whatever serves it: a socket, a service behind DNAT (which has no socket on the VIP),
//! a UDP flow. The kernel keeps the evidence in the `inet` table's **`recent` set**
//! (`type mark`, `flags dynamic,timeout`, at most 256 elements per rule slot, keyed by
//! [`drain_mark`]): the transaction that releases a bucket adds it with a timeout of
//! [`Ruleset::drain_idle`] (`[host] drain_idle_ms`, default [`DEFAULT_DRAIN_IDLE`]), a
//! rewrite of the tables puts every draining bucket in it again, and every packet of a
//! draining bucket that conntrack finds `established` restarts its timeout
//! (`update @recent`). The daemon lets a bucket go (deletes its verdict, so it is
//! dropped at netdev again) only once it is not in `recent`, holds none of this host's
//! sockets (`ss`) and none of conntrack's entries to a VIP that are not over
//! (`conntrack -L`, DNAT'd ones included; see the daemon's `drain.rs`). Only this host's confirmed connections are `established`
//! here: the new owner's connections, seen by every host, are new to this host's
//! conntrack (their SYNs never got through, their UDP datagrams are dropped as new) and
//! are never confirmed, so they refresh nothing, and a flood to a released bucket costs
//! conntrack's lookup, as it did before the netdev stage, and adds no state. Owners pay
//! nothing: only draining packets reach the rule. With conntrack's entries counted, a
//! connection keeps its bucket as long as conntrack keeps it, idle or not (as on
//! `main`), and `recent` only adds up to `drain_idle` of draining after its last
//! packet. Without the `conntrack` tool, a connection this host cannot see as a socket
//! and that sends nothing for `drain_idle` is cut when its bucket goes; the default,
//! 300 s, is longer than conntrack's UDP stream timeout (120 s), so it never cuts a UDP
//! flow conntrack still keeps, and longer than most TCP keepalive intervals set for NAT
//! (Linux's default, 2 h, is not).
//!
//! Checked on kernel 6.18 with nft 1.0.6: sets belong to one table, so the set is in
//! the `inet` table, where conntrack's verdict is known (`ct` is refused at netdev),
//! and the `netdev` stage does not read it (its verdict map keeps `draining` until the
//! daemon sees the element gone); `meta mark set meta mark | 0x6e6d0100` (a bitwise
//! operation with a constant) loads at netdev, `update @recent { meta mark timeout T }`
//! from the -150 prerouting chain adds and refreshes elements (a DNAT'd connection's
//! packets are `established` there, before the -100 DNAT), `add element` of an element
//! that is there restarts its timeout, and `nft list ruleset` prints all of it.
//!
//! **Fragments.** At netdev ingress a non-first fragment has no transport header, and
//! `th sport` and `th dport` read payload bytes there (checked: one source got two
//! buckets), so fragments are judged after reassembly, in the `inet` chain.
//!
//! **Cost.** Deferred and draining packets pay conntrack on every host, as all packets
//! did before the netdev stage: a rule whose ports lie in the local port range gets no
//! early drop. An outbound connection from a VIP with a local port outside that range
//! (bound by hand) has its replies judged by bucket at netdev, and is cut unless this
//! host owns the bucket.
//!
//! Every judging rule counts its packets and carries a comment naming it
//! (`established`, `rule1 accept`, `default drop`, ...), which [`parse_counters`] reads
//! back for the metrics: `ruleN drop` counts the packets of buckets this host does not
//! own, dropped at netdev. The fallback rule's counters keep the name `default`, which
//! metrics and dashboards already know.
//!
//! nft 1.0.6 refuses an `arp` table and an `inet` table that matches `ip daddr` in one
//! batch ("conflicting protocols"), so [`Ruleset::batches`] returns them separately.

use nlb_core::config::{Affinity, Config, Protocol, RuleMode};
use nlb_core::filter::{RuleRef, cluster_seed};
use nlb_wire::addressing::{ClusterMode, cluster_mac};
use nlb_wire::bitmap::BucketBitmap;
use std::fmt::Write;
use std::time::Duration;

/// The packet mark the `netdev` chain gives a packet of an owned bucket, for the `inet`
/// chain, which accepts a new flow only with it (or [`DEFER_MARK`], judged there) and
/// resets it: a packet the first stage did not judge (its hook gone with a re-created
/// device on a kernel that does not re-attach it, its chain flushed by hand) arrives
/// with another mark and is dropped, instead of being taken for owned. Above 255, so
/// never a bucket.
pub const OWNED_MARK: u32 = 0x6e6c_626f;
/// The high half of the packet mark the `netdev` chain gives a packet of a draining
/// bucket: [`drain_mark`] puts the rule slot and the bucket in the low half, so that the
/// `inet` chain, which drops the packet if it starts a new flow, can note the bucket
/// active in `@recent` if conntrack finds it established, and resets the mark. Never a
/// bucket, [`OWNED_MARK`] or [`DEFER_MARK`] (their high half is `0x6e6c`).
pub const DRAIN_TAG: u32 = 0x6e6d_0000;
/// The mask of [`DRAIN_TAG`].
pub const DRAIN_TAG_MASK: u32 = 0xffff_0000;

/// The mark of a draining packet of `bucket` in rule slot `slot` ([`DRAIN_TAG`]), and
/// the key of that bucket in the `inet` table's `recent` set.
pub fn drain_mark(slot: usize, bucket: u16) -> u32 {
    debug_assert!(slot <= nlb_core::config::MAX_RULES && bucket < 256);
    DRAIN_TAG | (slot as u32) << 8 | u32::from(bucket)
}

/// How long a released bucket stays in the `recent` set after the last packet of this
/// host's connections in it (and after its release): `[host] drain_idle_ms`'s default
/// ([`nlb_core::config::DEFAULT_DRAIN_IDLE_MS`]).
pub const DEFAULT_DRAIN_IDLE: Duration =
    Duration::from_millis(nlb_core::config::DEFAULT_DRAIN_IDLE_MS as u64);

/// The (rule slot, bucket) of each element of the `recent` set, from the JSON of
/// `nft -j list set inet <table> recent`; `None` if it cannot be read or holds anything
/// but drain marks, so that the caller lets nothing stop draining.
pub fn parse_recent(json: &str) -> Option<Vec<(usize, u16)>> {
    let doc = serde_json::from_str::<serde_json::Value>(json).ok()?;
    let set = doc["nftables"]
        .as_array()?
        .iter()
        .find_map(|item| item.get("set"))?;
    let Some(elements) = set.get("elem") else {
        return Some(Vec::new());
    };
    elements
        .as_array()?
        .iter()
        .map(|element| {
            // `{"elem": {"val": N, "timeout": .., "expires": ..}}`, or a bare N.
            let value = element
                .get("elem")
                .map_or(element, |e| &e["val"])
                .as_u64()?;
            let mark = u32::try_from(value).ok()?;
            (mark & DRAIN_TAG_MASK == DRAIN_TAG)
                .then_some(((mark >> 8 & 0xff) as usize, (mark & 0xff) as u16))
        })
        .collect()
}

/// The packet mark the `netdev` chain gives a packet it defers (a fragment, say), so that
/// the `inet` chain judges its bucket after conntrack.
pub const DEFER_MARK: u32 = 0x6e6c_6266;

/// The kernel's default `net.ipv4.ip_local_port_range`.
pub const DEFAULT_LOCAL_PORTS: (u16, u16) = (32768, 60999);

/// What the kernel should do for one rule slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleState {
    /// Buckets to accept new connections for.
    pub owned: BucketBitmap,
    /// Buckets this host released and still has connections in: their packets reach
    /// conntrack, but no new flow is accepted. A bucket in `owned` is owned, whatever
    /// this says.
    pub draining: BucketBitmap,
    /// Whether packets of existing connections are accepted.
    pub keep_established: bool,
}

impl RuleState {
    /// Nothing owned or draining.
    pub fn empty(keep_established: bool) -> RuleState {
        RuleState {
            owned: BucketBitmap::new(nlb_core::buckets::BUCKETS),
            draining: BucketBitmap::new(nlb_core::buckets::BUCKETS),
            keep_established,
        }
    }

    /// The verdict of `bucket` in the `netdev` map of the rule named `name`, if it has
    /// one.
    fn verdict(&self, bucket: u16, name: &str) -> Option<String> {
        if self.owned.contains(bucket) {
            Some("jump owned".to_owned())
        } else if self.draining.contains(bucket) {
            Some(format!("jump draining_{name}"))
        } else {
            None
        }
    }

    /// Whether `bucket` drains (and is not owned).
    fn drains(&self, bucket: u16) -> bool {
        self.draining.contains(bucket) && !self.owned.contains(bucket)
    }
}

/// How the kernel gets from one [`Ruleset`] to another: [`Ruleset::update_from`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// The kernel already does it.
    Nothing,
    /// One line for `nft -i`: element deletes and adds, one transaction.
    Elements(String),
    /// The tables' shape changed: [`Ruleset::batches`] must replace them.
    Tables,
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
    /// The kernel's `net.ipv4.ip_local_port_range`, where the replies to connections
    /// opened from a VIP arrive ([`local_port_range`]).
    pub local_ports: (u16, u16),
    /// How long a draining bucket stays in the `recent` set after its release and after
    /// each packet of a connection conntrack knows in it ([`DEFAULT_DRAIN_IDLE`]).
    pub drain_idle: Duration,
}

/// `net.ipv4.ip_local_port_range` of this network namespace, or
/// [`DEFAULT_LOCAL_PORTS`] if it cannot be read.
pub fn local_port_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut ports = text.split_whitespace().map(|p| p.parse::<u16>());
            match (ports.next(), ports.next()) {
                (Some(Ok(low)), Some(Ok(high))) if low <= high => Some((low, high)),
                _ => None,
            }
        })
        .unwrap_or(DEFAULT_LOCAL_PORTS)
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

    /// The name of the map and set of rule slot `slot`, `None` for a disabled rule (it
    /// has none).
    fn slot_name(&self, slot: usize) -> Option<String> {
        let rule = RuleRef::from_slot(self.config, slot).expect("a slot of this config");
        if rule.rule(self.config).mode == RuleMode::Disabled {
            return None;
        }
        Some(match rule {
            RuleRef::Configured(index) => format!("rule{}", index + 1),
            RuleRef::Fallback => "default".to_owned(),
        })
    }

    /// The match of rule slot `slot`, the fallback rule's included (every VIP).
    fn slot_match(&self, slot: usize) -> String {
        if slot < self.config.rules.len() {
            self.rule_match(slot)
        } else {
            format!("ip daddr {}", vip_set(self.config))
        }
    }

    fn slot_affinity(&self, slot: usize) -> Affinity {
        let rule = RuleRef::from_slot(self.config, slot).expect("a slot of this config");
        rule.rule(self.config).affinity
    }

    /// The `netdev` table: the first stage (see the module documentation).
    pub fn netdev_table(&self) -> String {
        let table = self.table();
        let vips = vip_set(self.config);
        let mut out = String::new();
        let _ = writeln!(out, "table netdev {table} {{");
        for slot in 0..self.rules.len() {
            let Some(name) = self.slot_name(slot) else {
                continue;
            };
            let state = &self.rules[slot];
            let elements: Vec<String> = (0..nlb_core::buckets::BUCKETS)
                .filter_map(|b| state.verdict(b, &name).map(|v| format!("{b} : {v}")))
                .collect();
            let _ = write!(out, "\tmap {name} {{\n\t\ttype mark : verdict\n");
            if !elements.is_empty() {
                let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
            }
            out.push_str("\t}\n");
        }
        let _ = writeln!(
            out,
            "\tchain owned {{\n\t\tmeta mark set {OWNED_MARK:#x} accept\n\t}}"
        );
        // One chain per enabled rule: its bucket, looked up in its map; a draining
        // bucket's packets get the rule slot and the bucket in the mark (`drain_mark`,
        // the mark is the bucket when the map jumps).
        for slot in 0..self.rules.len() {
            let Some(name) = self.slot_name(slot) else {
                continue;
            };
            let _ = writeln!(
                out,
                "\tchain draining_{name} {{\n\t\ttcp flags & (fin | syn | rst | ack) == syn meta mark set 0 counter drop comment \"draining syn\"\n\t\tmeta mark set meta mark | {:#x} accept\n\t}}",
                drain_mark(slot, 0)
            );
            let _ = writeln!(
                out,
                "\tchain judge_{name} {{\n\t\tmeta mark set {} meta mark vmap @{name}\n\t\tcounter drop comment \"{name} drop\"\n\t}}",
                self.hash(self.slot_affinity(slot))
            );
        }
        // Packets to a VIP: what cannot be judged here, then the rules in order.
        let (low, high) = self.local_ports;
        let _ = writeln!(
            out,
            "\tchain vip {{\n\t\tip frag-off & 0x3fff != 0 meta mark set {DEFER_MARK:#x} counter accept comment \"fragment\"\n\t\tmeta l4proto != {{ tcp, udp }} meta mark set {DEFER_MARK:#x} counter accept comment \"not tcp or udp\"\n\t\tth dport {low}-{high} meta mark set {DEFER_MARK:#x} counter accept comment \"local port\""
        );
        for slot in 0..self.rules.len() {
            let matched = self.vip_chain_match(slot);
            let space = if matched.is_empty() { "" } else { " " };
            match self.slot_name(slot) {
                Some(name) => {
                    let _ = writeln!(out, "\t\t{matched}{space}jump judge_{name}");
                }
                None => {
                    let _ = writeln!(
                        out,
                        "\t\t{matched}{space}counter drop comment \"rule{} disabled\"",
                        slot + 1
                    );
                }
            }
        }
        out.push_str("\t}\n");
        let _ = writeln!(
            out,
            "\tchain ingress {{\n\t\ttype filter hook ingress device \"{dev}\" priority -500; policy accept;",
            dev = self.config.cluster.interface
        );
        if self.config.cluster.mode == ClusterMode::Unicast {
            let macs: Vec<String> = self
                .config
                .cluster
                .vips
                .iter()
                .map(|&vip| cluster_mac(vip, ClusterMode::Unicast).to_string())
                .collect();
            let _ = writeln!(
                out,
                "\t\tether daddr {{ {} }} meta pkttype set host",
                macs.join(", ")
            );
        }
        let _ = writeln!(out, "\t\tip daddr {vips} jump vip");
        out.push_str("\t}\n}\n");
        out
    }

    /// The match of rule slot `slot` inside the `netdev` table's `vip` chain, where the
    /// destination is known to be a VIP: protocol and ports, and the VIP if the rule
    /// names one; empty for the fallback rule.
    fn vip_chain_match(&self, slot: usize) -> String {
        let Some(rule) = self.config.rules.get(slot) else {
            return String::new();
        };
        let all = self.rule_match(slot);
        match rule.vip {
            Some(_) => all,
            None => all
                .strip_prefix(&format!("ip daddr {} ", vip_set(self.config)))
                .unwrap_or(&all)
                .to_owned(),
        }
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

    /// The `inet` table, with the lease set filled: the second stage (see the module
    /// documentation).
    pub fn inet_table(&self) -> String {
        let table = self.table();
        let vips = vip_set(self.config);
        let configured = self.config.rules.len();
        let interface = &self.config.cluster.interface;
        let mut out = String::new();
        let _ = writeln!(out, "table inet {table} {{");
        let _ = writeln!(
            out,
            "\tset lease {{\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t\telements = {{ {} }}\n\t}}",
            self.lease_elements()
        );
        for slot in 0..self.rules.len() {
            let Some(name) = self.slot_name(slot) else {
                continue;
            };
            let owned = &self.rules[slot].owned;
            let _ = write!(out, "\tset {name} {{\n\t\ttype mark\n");
            if !owned.is_empty() {
                let elements: Vec<String> = owned.iter().map(|b| b.to_string()).collect();
                let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
            }
            out.push_str("\t}\n");
        }
        // The draining buckets with recent activity: filled with every draining bucket
        // (a rewrite restarts their time), refreshed by their established packets. At
        // most one element per bucket of each slot.
        let idle = millis(self.drain_idle);
        let recent: Vec<String> = (0..self.rules.len())
            .filter(|&slot| self.slot_name(slot).is_some())
            .flat_map(|slot| {
                let state = &self.rules[slot];
                (0..nlb_core::buckets::BUCKETS)
                    .filter(|&b| state.drains(b))
                    .map(move |b| drain_mark(slot, b))
            })
            .map(|mark| format!("{mark:#x} timeout {idle}"))
            .collect();
        let _ = write!(
            out,
            "\tset recent {{\n\t\ttype mark\n\t\tsize {}\n\t\tflags dynamic,timeout\n\t\ttimeout {idle}\n",
            self.rules.len().max(1) * usize::from(nlb_core::buckets::BUCKETS)
        );
        if !recent.is_empty() {
            let _ = writeln!(out, "\t\telements = {{ {} }}", recent.join(", "));
        }
        out.push_str("\t}\n");
        let _ = writeln!(
            out,
            "\tchain pre {{\n\t\ttype filter hook prerouting priority -150; policy accept;"
        );
        // 1. This host's own connections to a VIP (a health check of the local service, a
        //    local client) come in on `lo`: the buckets share the segment's clients, and
        //    a local client is this host's whatever it owns.
        let _ = writeln!(
            out,
            "\t\tiifname \"lo\" ip daddr {vips} counter accept comment \"local\""
        );
        // 2. Disabled rules (or a stopped host): drop everything, connections included.
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
        // 3. A draining bucket: only the connections this host has, and each of their
        //    packets keeps the bucket in `recent` (so draining) for `drain_idle` more.
        let drain = format!("meta mark & {DRAIN_TAG_MASK:#x} == {DRAIN_TAG:#x}");
        let _ = writeln!(
            out,
            "\t\tip daddr {vips} {drain} ct state new counter drop comment \"draining new\""
        );
        let _ = writeln!(
            out,
            "\t\tip daddr {vips} {drain} ct state established update @recent {{ meta mark timeout {idle} }} counter comment \"draining established\""
        );
        let _ = writeln!(out, "\t\tip daddr {vips} {drain} meta mark set 0");
        // 4. Connections this host has.
        let _ = writeln!(
            out,
            "\t\tip daddr {vips} meta mark {{ {OWNED_MARK:#x}, {DEFER_MARK:#x} }} ct state established,related meta mark set 0"
        );
        let _ = writeln!(
            out,
            "\t\tip daddr {vips} ct state established,related meta pkttype set host counter accept comment \"established\""
        );
        // 5. Someone else's connection: conntrack calls a SYN-ACK it has no SYN for
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
        // 6. Only the cluster interface's traffic was judged by bucket.
        let _ = writeln!(
            out,
            "\t\tiifname != \"{interface}\" ip daddr {vips} counter drop comment \"not via the cluster interface\""
        );
        // 7. Only what the first stage judged: owned there, or deferred to be judged
        //    here. Anything else did not go through it, and is not taken for owned.
        let _ = writeln!(
            out,
            "\t\tip daddr {vips} meta mark != {{ {OWNED_MARK:#x}, {DEFER_MARK:#x} }} counter drop comment \"not judged\""
        );
        // 8. New flows by rule, then the fallback rule.
        for slot in 0..=configured {
            let Some(name) = self.slot_name(slot) else {
                continue;
            };
            let matched = self.slot_match(slot);
            let _ = writeln!(
                out,
                "\t\t{matched} meta mark {DEFER_MARK:#x} meta mark set {} meta mark != @{name} counter drop comment \"{name} deferred drop\"",
                self.hash(self.slot_affinity(slot))
            );
            let _ = writeln!(
                out,
                "\t\t{matched} ip daddr @lease meta mark set 0 meta pkttype set host counter accept comment \"{name} accept\""
            );
            let _ = writeln!(
                out,
                "\t\t{matched} counter drop comment \"{name} no lease\""
            );
        }
        out.push_str("\t}\n}\n");
        out
    }

    /// How to get the kernel from `kernel` (what it was last told) to this ruleset:
    /// element changes if only ownership changed, the tables if anything else did.
    pub fn update_from(&self, kernel: &[RuleState]) -> Update {
        if kernel.len() != self.rules.len()
            || kernel
                .iter()
                .zip(self.rules)
                .any(|(have, want)| have.keep_established != want.keep_established)
        {
            return Update::Tables;
        }
        let table = self.table();
        let idle = millis(self.drain_idle);
        let mut deletes = Vec::new();
        let mut adds = Vec::new();
        let mut recent = Vec::new();
        for (slot, (have, want)) in kernel.iter().zip(self.rules).enumerate() {
            let Some(name) = self.slot_name(slot) else {
                continue;
            };
            let (mut map_del, mut map_add, mut set_del, mut set_add) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for bucket in 0..nlb_core::buckets::BUCKETS {
                let (old, new) = (have.verdict(bucket, &name), want.verdict(bucket, &name));
                if old != new {
                    if old.is_some() {
                        map_del.push(bucket.to_string());
                    }
                    if let Some(verdict) = new {
                        map_add.push(format!("{bucket} : {verdict}"));
                    }
                    // A bucket that starts to drain is recent from its release on, in
                    // the same transaction (re-adding an element restarts its time).
                    if want.drains(bucket) {
                        recent.push(format!("{:#x} timeout {idle}", drain_mark(slot, bucket)));
                    }
                }
                match (have.owned.contains(bucket), want.owned.contains(bucket)) {
                    (true, false) => set_del.push(bucket.to_string()),
                    (false, true) => set_add.push(bucket.to_string()),
                    _ => {}
                }
            }
            let push = |to: &mut Vec<String>, verb: &str, family: &str, elements: Vec<String>| {
                if !elements.is_empty() {
                    to.push(format!(
                        "{verb} element {family} {table} {name} {{ {} }}",
                        elements.join(", ")
                    ));
                }
            };
            push(&mut deletes, "delete", "netdev", map_del);
            push(&mut deletes, "delete", "inet", set_del);
            push(&mut adds, "add", "netdev", map_add);
            push(&mut adds, "add", "inet", set_add);
        }
        if !recent.is_empty() {
            adds.push(format!(
                "add element inet {table} recent {{ {} }}",
                recent.join(", ")
            ));
        }
        if deletes.is_empty() && adds.is_empty() {
            return Update::Nothing;
        }
        deletes.extend(adds);
        Update::Elements(format!("{}\n", deletes.join("; ")))
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
    /// `netdev` and `inet` tables, together.
    pub fn batches(&self) -> Vec<String> {
        let table = self.table();
        let replace = |family: &str, body: String| {
            format!("table {family} {table} {{}}\ndelete table {family} {table}\n{body}")
        };
        let mut second = replace("netdev", self.netdev_table());
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

/// The packet counters of nlb's rules, by rule comment, from the JSON of
/// `nft -j list table <family> <table>` (or of one chain).
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
                draining: owning(&[(86, 90)]),
                keep_established: true,
            },
            RuleState {
                owned: owning(&[(0, 3), (7, 8)]),
                draining: owning(&[]),
                keep_established: true,
            },
            RuleState {
                owned: owning(&[]),
                draining: owning(&[]),
                keep_established: true,
            },
            RuleState {
                owned: owning(&[(0, 256)]),
                draining: owning(&[]),
                keep_established: true,
            },
        ];
        let ruleset = Ruleset {
            config: &config,
            rules: &rules,
            lease: Duration::from_millis(100),
            local_ports: DEFAULT_LOCAL_PORTS,
            drain_idle: DEFAULT_DRAIN_IDLE,
        };
        insta::assert_snapshot!(ruleset.batches().join("\n# ---- next batch ----\n"));
    }

    #[test]
    fn ownership_changes_are_one_line_of_element_changes() {
        let config = config(
            "multicast",
            "[[rule]]\nports = \"80\"\nprotocol = \"tcp\"\n[[rule]]\nports = \"25\"\nprotocol = \"tcp\"\nmode = \"disabled\"\n",
        );
        let state = |owned: &[(u16, u16)], draining: &[(u16, u16)]| RuleState {
            owned: owning(owned),
            draining: owning(draining),
            keep_established: true,
        };
        let before = vec![
            state(&[(0, 4)], &[]),
            state(&[], &[]),
            state(&[(0, 256)], &[]),
        ];
        // Release 2 and 3 of rule 1 (they drain), claim 9, and let the fallback rule be.
        let after = vec![
            state(&[(0, 2), (9, 10)], &[(2, 4)]),
            state(&[], &[]),
            state(&[(0, 256)], &[]),
        ];
        let ruleset = |rules| Ruleset {
            config: &config,
            rules,
            lease: Duration::from_millis(100),
            local_ports: DEFAULT_LOCAL_PORTS,
            drain_idle: DEFAULT_DRAIN_IDLE,
        };
        let table = "nlb_veth_2dh1_1db57edb";
        assert_eq!(
            ruleset(&after).update_from(&before),
            Update::Elements(format!(
                "delete element netdev {table} rule1 {{ 2, 3 }}; delete element inet {table} rule1 {{ 2, 3 }}; \
                 add element netdev {table} rule1 {{ 2 : jump draining_rule1, 3 : jump draining_rule1, 9 : jump owned }}; \
                 add element inet {table} rule1 {{ 9 }}; \
                 add element inet {table} recent {{ 0x6e6d0002 timeout 300000ms, 0x6e6d0003 timeout 300000ms }}\n"
            ))
        );
        // Drained: the buckets leave the map; the owned set does not change.
        let drained = vec![
            state(&[(0, 2), (9, 10)], &[]),
            state(&[], &[]),
            state(&[(0, 256)], &[]),
        ];
        assert_eq!(
            ruleset(&drained).update_from(&after),
            Update::Elements(format!("delete element netdev {table} rule1 {{ 2, 3 }}\n"))
        );
        assert_eq!(ruleset(&drained).update_from(&drained), Update::Nothing);
        assert_eq!(
            parse_recent(
                r#"{"nftables": [{"metainfo": {}}, {"set": {"name": "recent", "elem": [{"elem": {"val": 1852637445, "timeout": 300, "expires": 299}}, 1852639746]}}]}"#
            ),
            Some(vec![(1, 5), (10, 2)])
        );
        assert_eq!(
            parse_recent(r#"{"nftables": [{"set": {"name": "recent"}}]}"#),
            Some(vec![])
        );
        assert_eq!(parse_recent("garbage"), None);
        // A stopped host drops connections too: the rules change, so the tables do.
        let mut stopped = drained.clone();
        stopped[2].keep_established = false;
        assert_eq!(ruleset(&stopped).update_from(&drained), Update::Tables);
        assert_eq!(ruleset(&drained).update_from(&drained[..2]), Update::Tables);
    }

    #[test]
    fn unicast_stopped_ruleset_snapshot() {
        let config = config("unicast", "");
        let rules = vec![RuleState::empty(false), RuleState::empty(false)];
        let ruleset = Ruleset {
            config: &config,
            rules: &rules,
            lease: Duration::from_millis(100),
            local_ports: DEFAULT_LOCAL_PORTS,
            drain_idle: DEFAULT_DRAIN_IDLE,
        };
        insta::assert_snapshot!(ruleset.batches().join("\n# ---- next batch ----\n"));
        assert_eq!(
            ruleset.lease_refresh(),
            "add element inet nlb_veth_2dh1_1db57edb lease { 198.18.0.10 timeout 100ms expires 100ms, 198.18.0.11 timeout 100ms expires 100ms }\n"
        );
    }
}

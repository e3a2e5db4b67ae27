//! The generated nft ruleset and `nlb_core::filter::decide` agree, packet by packet, on
//! the running kernel, for every rule shape.
//!
//! Every shape of rule (mode multiple, single or disabled × affinity none, single or
//! network × protocol tcp, udp or both × one VIP or all) gets a port range in one of a
//! few configurations of two VIPs. For each configuration, the host owns a seeded
//! random share of every rule slot's buckets (some slots none, some all), its
//! [`Ruleset`] is loaded into a namespace, and new flows go in through a veth pair:
//! TCP SYNs and UDP datagrams from distinct sources in 198.18.0.0/15, to both VIPs, to
//! ports inside each rule's range, just past it, and to a port no rule covers (the
//! fallback rule). Some buckets the host does not own are *draining* (released, with
//! connections left): a new flow in one must be dropped too, a TCP SYN at netdev, a UDP
//! datagram after conntrack. A netdev ingress chain before nlb's (priority -600)
//! records every source that arrived, an `ip` prerouting chain after nlb's `inet` chain
//! (priority -100) every source nlb's two stages let through, and counts packets that
//! reach it with a packet mark (nlb uses the mark as a scratch register and must leave
//! it 0). The test asserts that the kernel accepted exactly the flows `decide` accepts,
//! that no mark leaked, that no new flow put a bucket in the `recent` set, and that the per-rule counters of both stages (`rule3 accept`
//! and `default drop`, `draining syn`, ...) count what `decide` says about each flow.
//!
//! Only 198.18.0.0/15 is used, inside a namespace the test creates; dropping the
//! namespace (also on a panic) deletes everything it built.

use etherparse::PacketBuilder;
use nlb_core::buckets::BUCKETS;
use nlb_core::config::{Config, Protocol, RuleMode};
use nlb_core::filter::{Decision, Flow, RuleRef, cluster_seed, decide};
use nlb_linux::netns::NetNs;
use nlb_linux::packet::PacketSocket;
use nlb_linux::ruleset::{RuleState, Ruleset, parse_counters};
use nlb_wire::bitmap::BucketBitmap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const SENDER: &str = "ras0";
const RECEIVER: &str = "rar0";
const SENDER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x01];
const RECEIVER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x02];
const VIPS: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 18, 0, 10), Ipv4Addr::new(198, 18, 0, 11)];
/// A port no rule of any configuration covers: the fallback rule's traffic.
const UNCOVERED_PORT: u16 = 9;
/// Flows per rule, VIP and protocol.
const FLOWS_PER_CASE: usize = 10;
/// Rules per configuration (at most `MAX_RULES`).
const RULES_PER_CONFIG: usize = 14;

/// One rule shape, as `[[rule]]` keys.
#[derive(Debug, Clone, Copy)]
struct Shape {
    mode: &'static str,
    affinity: &'static str,
    protocol: &'static str,
    one_vip: bool,
}

fn shapes() -> Vec<Shape> {
    let mut out = Vec::new();
    for mode in ["multiple", "single", "disabled"] {
        for affinity in ["none", "single", "network"] {
            for protocol in ["tcp", "udp", "both"] {
                for one_vip in [true, false] {
                    out.push(Shape {
                        mode,
                        affinity,
                        protocol,
                        one_vip,
                    });
                }
            }
        }
    }
    out
}

/// Rule `index` of all shapes covers ports `first..=first + 4`.
fn first_port(index: usize) -> u16 {
    2000 + 10 * index as u16
}

fn config(shapes: &[(usize, Shape)]) -> Config {
    let mut text = format!(
        "[cluster]\ninterface = \"{RECEIVER}\"\nvips = [\"{}\", \"{}\"]\nmode = \"multicast\"\n[host]\nid = 1\n",
        VIPS[0], VIPS[1]
    );
    for &(index, shape) in shapes {
        let first = first_port(index);
        text += &format!(
            "[[rule]]\nvip = \"{}\"\nports = \"{first}-{}\"\nprotocol = \"{}\"\nmode = \"{}\"\naffinity = \"{}\"\n",
            if shape.one_vip {
                VIPS[0].to_string()
            } else {
                "all".to_owned()
            },
            first + 4,
            shape.protocol,
            shape.mode,
            shape.affinity,
        );
        if shape.mode == "single" {
            text += "priority = 1\n";
        }
    }
    Config::parse(&text, "agree.toml").expect("a valid configuration")
}

/// What the host owns per slot: a random share, except that every fifth slot owns
/// nothing and the one after it everything; and, of the buckets it does not own, a
/// random share drains.
fn ownership(slots: usize, rng: &mut StdRng) -> Vec<RuleState> {
    (0..slots)
        .map(|slot| {
            let mut owned = BucketBitmap::new(BUCKETS);
            let mut draining = BucketBitmap::new(BUCKETS);
            for bucket in 0..BUCKETS {
                let take = match slot % 5 {
                    3 => false,
                    4 => true,
                    _ => rng.random_bool(0.5),
                };
                if take {
                    owned.insert(bucket);
                } else if rng.random_bool(0.3) {
                    draining.insert(bucket);
                }
            }
            RuleState {
                owned,
                draining,
                keep_established: true,
            }
        })
        .collect()
}

/// Flows for every rule of `shapes`, and to the uncovered port, each from a source no
/// other flow of the test uses.
fn flows(shapes: &[(usize, Shape)], used: &mut BTreeSet<Ipv4Addr>, rng: &mut StdRng) -> Vec<Flow> {
    let mut ports: Vec<(u16, u16)> = shapes
        .iter()
        .map(|&(index, _)| (first_port(index), first_port(index) + 5))
        .collect();
    ports.push((UNCOVERED_PORT, UNCOVERED_PORT));
    let mut out = Vec::new();
    for (low, high) in ports {
        for vip in VIPS {
            for protocol in [Protocol::Tcp, Protocol::Udp] {
                for _ in 0..FLOWS_PER_CASE {
                    let src = loop {
                        // 198.18.0.0/15 without 198.18.0.0/24, where the VIPs are.
                        let host: u32 = rng.random_range(256..(1 << 17));
                        let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + host);
                        if used.insert(src) {
                            break src;
                        }
                    };
                    out.push(Flow {
                        src,
                        src_port: rng.random_range(1024..=65535),
                        dst: vip,
                        // Mostly inside the range; the last port is just past it.
                        dst_port: rng.random_range(low..=high),
                        protocol,
                    });
                }
            }
        }
    }
    out
}

/// The frames of `flow`: a TCP SYN or a UDP datagram, which goes in two IPv4 fragments
/// if `fragmented`.
fn frames(flow: &Flow, fragmented: bool) -> Vec<Vec<u8>> {
    let whole = frame(flow);
    if !fragmented {
        return vec![whole];
    }
    // 14 bytes of Ethernet, 20 of IPv4 header (no options), then the UDP header and
    // payload: the first 32 bytes of it in the first fragment (more fragments), the rest
    // at offset 32 (4 units of 8 bytes).
    let (ethernet, ip) = whole.split_at(14);
    let (header, payload) = ip.split_at(20);
    let fragment = |data: &[u8], offset_units: u16, more: bool| {
        let mut header = header.to_vec();
        header[2..4].copy_from_slice(&((20 + data.len()) as u16).to_be_bytes());
        let flags_offset = offset_units | if more { 0x2000 } else { 0 };
        header[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        header[10..12].copy_from_slice(&[0, 0]);
        let sum: u32 = header
            .chunks(2)
            .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
            .sum();
        let folded = (sum & 0xffff) + (sum >> 16);
        let checksum = !((folded & 0xffff) + (folded >> 16)) as u16;
        header[10..12].copy_from_slice(&checksum.to_be_bytes());
        [ethernet, &header, data].concat()
    };
    vec![
        fragment(&payload[..32], 0, true),
        fragment(&payload[32..], 4, false),
    ]
}

/// A TCP SYN or a UDP datagram of `flow` (with a payload long enough to fragment).
fn frame(flow: &Flow) -> Vec<u8> {
    let ip = PacketBuilder::ethernet2(SENDER_MAC, RECEIVER_MAC).ipv4(
        flow.src.octets(),
        flow.dst.octets(),
        64,
    );
    let mut out = Vec::new();
    match flow.protocol {
        Protocol::Tcp => {
            let builder = ip.tcp(flow.src_port, flow.dst_port, 1, 64240).syn();
            builder.write(&mut out, &[]).unwrap();
        }
        _ => {
            let builder = ip.udp(flow.src_port, flow.dst_port);
            builder
                .write(
                    &mut out,
                    b"nlb agree probe, long enough to go in two fragments",
                )
                .unwrap();
        }
    }
    out
}

/// The tables that record what arrived (before nlb's netdev chain) and what nlb's two
/// stages let through (after its inet chain).
fn recorder() -> String {
    format!(
        "table netdev nlbagree {{\n  set seen {{ type ipv4_addr; size 65536; flags dynamic; }}\n  set tails {{ type ipv4_addr; size 65536; flags dynamic; }}\n  chain before {{\n    type filter hook ingress device \"{RECEIVER}\" priority -600;\n    ip frag-off & 0x1fff == 0 add @seen {{ ip saddr }}\n    ip frag-off & 0x1fff != 0 add @tails {{ ip saddr }}\n  }}\n}}\ntable ip nlbagree {{\n  set accepted {{ type ipv4_addr; size 65536; flags dynamic; }}\n  chain after {{\n    type filter hook prerouting priority -100;\n    iifname \"{RECEIVER}\" meta mark != 0 counter comment \"mark leaked\"\n    iifname \"{RECEIVER}\" add @accepted {{ ip saddr }} drop\n  }}\n}}\n"
    )
}

/// The addresses in set `set` of recorder table `family nlbagree`.
fn read_addresses(ns: &NetNs, family: &str, set: &str) -> BTreeSet<Ipv4Addr> {
    let json = ns
        .exec("nft", &["-j", "list", "set", family, "nlbagree", set], None)
        .expect("nft list set");
    let doc: Value = serde_json::from_str(&json).expect("nft prints JSON");
    let mut out = BTreeSet::new();
    for item in doc["nftables"].as_array().expect("a list") {
        let Some(elements) = item.get("set").and_then(|s| s.get("elem")) else {
            continue;
        };
        for element in elements.as_array().expect("a list") {
            let text = element
                .as_str()
                .or_else(|| element["elem"]["val"].as_str())
                .unwrap_or_else(|| panic!("unexpected set element {element}"));
            out.insert(text.parse().expect("an address"));
        }
    }
    out
}

/// The counter comment the ruleset uses for `decision` on `flow`, where the host
/// drains `draining` (per slot).
fn counter_name(
    config: &Config,
    decision: &Decision,
    flow: &Flow,
    draining: &[BucketBitmap],
) -> String {
    let name = match decision.rule {
        RuleRef::Configured(index) => format!("rule{}", index + 1),
        RuleRef::Fallback => "default".to_owned(),
    };
    let drains = decision
        .bucket
        .is_some_and(|bucket| draining[decision.slot].contains(bucket));
    if decision.rule.rule(config).mode == RuleMode::Disabled {
        format!("{name} disabled")
    } else if decision.accept {
        format!("{name} accept")
    } else if drains && flow.protocol == Protocol::Tcp {
        "draining syn".to_owned()
    } else if drains {
        "draining new".to_owned()
    } else {
        format!("{name} drop")
    }
}

/// The counter comment the ruleset uses for `decision` on a fragmented flow, judged
/// reassembled by the inet stage.
fn fragment_counter_name(config: &Config, decision: &Decision) -> String {
    let name = match decision.rule {
        RuleRef::Configured(index) => format!("rule{}", index + 1),
        RuleRef::Fallback => "default".to_owned(),
    };
    if decision.rule.rule(config).mode == RuleMode::Disabled {
        format!("{name} disabled")
    } else if decision.accept {
        format!("{name} accept")
    } else {
        format!("{name} deferred drop")
    }
}

/// Sends `flows` from the sender end until each has arrived, every fragment of it (a
/// frame the receiving queue dropped never reached netfilter, so it is sent again),
/// within 10 s. The flows from `fragmented` go in two fragments.
fn deliver(ns: &NetNs, socket: &PacketSocket, flows: &[Flow], fragmented: &BTreeSet<Ipv4Addr>) {
    let mut missing: Vec<Flow> = flows.to_vec();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !missing.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} flows never arrived, first {:?}",
            missing.len(),
            missing.first()
        );
        for flow in &missing {
            for frame in frames(flow, fragmented.contains(&flow.src)) {
                socket.send(&frame).expect("send frame");
            }
        }
        let mut pause = Duration::from_millis(5);
        let settle = Instant::now() + Duration::from_secs(2);
        loop {
            let seen = read_addresses(ns, "netdev", "seen");
            let tails = read_addresses(ns, "netdev", "tails");
            missing.retain(|flow| {
                !seen.contains(&flow.src)
                    || (fragmented.contains(&flow.src) && !tails.contains(&flow.src))
            });
            if missing.is_empty() || Instant::now() > settle {
                break;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}

/// A namespace named from `prefix` with the veth pair `SENDER`–`RECEIVER` up and the
/// recorder loaded.
fn recording_namespace(prefix: &str) -> NetNs {
    let ns = NetNs::create(&nlb_linux::netns::unique_name(prefix)).expect("create namespace");
    ns.ip(&[
        "link",
        "add",
        SENDER,
        "address",
        "02:00:00:00:01:01",
        "type",
        "veth",
        "peer",
        "name",
        RECEIVER,
        "address",
        "02:00:00:00:01:02",
    ])
    .expect("veth pair");
    ns.ip(&["link", "set", SENDER, "up"]).unwrap();
    ns.ip(&["link", "set", RECEIVER, "up"]).unwrap();
    ns.nft(&recorder()).expect("load the recorder");
    ns
}

#[test]
fn ruleset_and_decide_agree_for_every_rule_shape() {
    if !nlb_linux::netns::require_root("ruleset_and_decide_agree_for_every_rule_shape") {
        return;
    }
    let ns = recording_namespace("nlbt-ag");

    let shapes: Vec<(usize, Shape)> = shapes().into_iter().enumerate().collect();
    let mut rng = StdRng::seed_from_u64(0x0061_6772_6565);
    let mut used = BTreeSet::new();
    let mut checked = 0;
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            ns.enter_current_thread().expect("enter namespace");
            PacketSocket::bind(SENDER).expect("AF_PACKET socket")
        });
        let socket = sender.join().expect("sender thread");
        for (round, group) in shapes.chunks(RULES_PER_CONFIG).enumerate() {
            let config = config(group);
            let seed = cluster_seed(&config);
            let rules = ownership(config.rules.len() + 1, &mut rng);
            let ruleset = Ruleset {
                config: &config,
                rules: &rules,
                lease: Duration::from_secs(600),
                local_ports: nlb_linux::ruleset::DEFAULT_LOCAL_PORTS,
                drain_idle: nlb_linux::ruleset::DEFAULT_DRAIN_IDLE,
            };
            for batch in ruleset.batches() {
                ns.nft(&batch)
                    .unwrap_or_else(|e| panic!("round {round}: {e}\n{batch}"));
            }
            ns.nft("flush set netdev nlbagree seen\nflush set netdev nlbagree tails\nflush set ip nlbagree accepted\n")
                .expect("flush the recorder");
            let recent = || {
                let json = ns
                    .exec(
                        "nft",
                        &["-j", "list", "set", "inet", &ruleset.table(), "recent"],
                        None,
                    )
                    .expect("nft list set");
                nlb_linux::ruleset::parse_recent(&json)
            };
            // Loaded with every draining bucket of the enabled rules, by slot.
            let mut loaded = recent().expect("recent");
            loaded.sort_unstable();
            let wanted: Vec<(usize, u16)> = (0..rules.len())
                .filter(|&slot| {
                    RuleRef::from_slot(&config, slot)
                        .is_some_and(|r| r.rule(&config).mode != RuleMode::Disabled)
                })
                .flat_map(|slot| rules[slot].draining.iter().map(move |b| (slot, b)))
                .collect();
            assert_eq!(loaded, wanted, "round {round}");
            // Empty, so that what a new flow would put in it shows.
            ns.nft(&format!("flush set inet {} recent\n", ruleset.table()))
                .expect("flush recent");
            let flows = flows(group, &mut used, &mut rng);
            // A third of the UDP flows in fragments, which the netdev stage cannot judge
            // (it defers them) and the inet stage judges reassembled.
            let fragmented: BTreeSet<Ipv4Addr> = flows
                .iter()
                .filter(|flow| flow.protocol == Protocol::Udp && rng.random_bool(0.3))
                .map(|flow| flow.src)
                .collect();
            deliver(&ns, &socket, &flows, &fragmented);

            let owned: Vec<BucketBitmap> = rules.iter().map(|r| r.owned.clone()).collect();
            let draining: Vec<BucketBitmap> = rules.iter().map(|r| r.draining.clone()).collect();
            let accepted = read_addresses(&ns, "ip", "accepted");
            let mut expected_counters: BTreeMap<String, u64> = BTreeMap::new();
            let mut disagreements = Vec::new();
            for flow in &flows {
                let decision = decide(&config, &owned, seed, flow);
                let name = if fragmented.contains(&flow.src) {
                    *expected_counters.entry("fragment".to_owned()).or_default() += 2;
                    fragment_counter_name(&config, &decision)
                } else {
                    counter_name(&config, &decision, flow, &draining)
                };
                *expected_counters.entry(name).or_default() += 1;
                if decision.accept != accepted.contains(&flow.src) {
                    disagreements.push((*flow, decision));
                }
            }
            assert!(
                disagreements.is_empty(),
                "round {round}: {} of {} flows differ; first (flow, decide): {:?}\n{}",
                disagreements.len(),
                flows.len(),
                &disagreements[..disagreements.len().min(3)],
                ruleset.netdev_table()
            );
            let table = |family: &str| {
                let json = ns
                    .exec(
                        "nft",
                        &["-j", "list", "table", family, &ruleset.table()],
                        None,
                    )
                    .expect("nft list table");
                parse_counters(&json)
            };
            let mut counters: BTreeMap<String, u64> = BTreeMap::new();
            for (name, packets) in table("netdev")
                .into_iter()
                .chain(table("inet"))
                .filter(|&(_, packets)| packets > 0)
            {
                *counters.entry(name).or_default() += packets;
            }
            assert_eq!(counters, expected_counters, "round {round}");
            // Only packets of connections conntrack knows keep a bucket recent: new
            // flows (a flood included) add nothing.
            assert_eq!(
                recent(),
                Some(vec![]),
                "round {round}: new flows made buckets recent"
            );
            let recorder = ns
                .exec(
                    "nft",
                    &["-j", "list", "chain", "ip", "nlbagree", "after"],
                    None,
                )
                .expect("nft list chain");
            assert_eq!(
                parse_counters(&recorder),
                vec![("mark leaked".to_owned(), 0)],
                "round {round}: a packet left nlb's chains with a mark"
            );
            // Every shape of the round saw flows both ways where it can.
            let accepts = flows.iter().filter(|f| accepted.contains(&f.src)).count();
            assert!(accepts > 0 && accepts < flows.len(), "round {round}");
            checked += flows.len();
            eprintln!(
                "round {round}: {} rules, {} flows ({} in fragments), {accepts} accepted; kernel and decide agree on every one",
                config.rules.len(),
                flows.len(),
                fragmented.len()
            );
        }
    });
    assert_eq!(checked, used.len());
}

/// If the `netdev` stage does not run (its hook gone with a re-created device on a
/// kernel that does not re-attach it, its chain flushed by hand), the `inet` stage must
/// not take the unjudged packets for owned ones: nothing new is accepted, whatever the
/// host owns, and the packets count as `not judged`.
#[test]
fn without_the_netdev_stage_nothing_new_is_accepted() {
    if !nlb_linux::netns::require_root("without_the_netdev_stage_nothing_new_is_accepted") {
        return;
    }
    let ns = recording_namespace("nlbt-nj");
    let shapes: Vec<(usize, Shape)> = shapes().into_iter().enumerate().take(6).collect();
    let config = config(&shapes);
    let mut rng = StdRng::seed_from_u64(0x006e_6a75_6467);
    let rules = ownership(config.rules.len() + 1, &mut rng);
    let ruleset = Ruleset {
        config: &config,
        rules: &rules,
        lease: Duration::from_secs(600),
        local_ports: nlb_linux::ruleset::DEFAULT_LOCAL_PORTS,
        drain_idle: nlb_linux::ruleset::DEFAULT_DRAIN_IDLE,
    };
    for batch in ruleset.batches() {
        ns.nft(&batch).expect("load the ruleset");
    }
    ns.nft(&format!("flush chain netdev {} ingress\n", ruleset.table()))
        .expect("flush the netdev hook chain");
    let flows = flows(&shapes, &mut BTreeSet::new(), &mut rng);
    let owned: Vec<BucketBitmap> = rules.iter().map(|r| r.owned.clone()).collect();
    let seed = cluster_seed(&config);
    assert!(
        flows
            .iter()
            .any(|f| decide(&config, &owned, seed, f).accept),
        "some flows are in owned buckets"
    );
    std::thread::scope(|scope| {
        let socket = scope
            .spawn(|| {
                ns.enter_current_thread().expect("enter namespace");
                PacketSocket::bind(SENDER).expect("AF_PACKET socket")
            })
            .join()
            .expect("sender thread");
        deliver(&ns, &socket, &flows, &BTreeSet::new());
    });
    let accepted = read_addresses(&ns, "ip", "accepted");
    assert!(
        accepted.is_empty(),
        "{} of {} unjudged flows accepted",
        accepted.len(),
        flows.len()
    );
    let json = ns
        .exec(
            "nft",
            &["-j", "list", "table", "inet", &ruleset.table()],
            None,
        )
        .expect("nft list table");
    let not_judged = parse_counters(&json)
        .into_iter()
        .find(|(name, _)| name == "not judged")
        .map_or(0, |(_, packets)| packets);
    assert!(not_judged > 0, "the unjudged packets are counted");
}

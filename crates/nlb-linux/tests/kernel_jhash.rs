//! The Rust `nft jhash` against the running kernel's, flow by flow.
//!
//! One namespace holds a veth pair. An nft chain on the receiving end's prerouting hook
//! marks each packet with `jhash ... mod N seed S` and records `(key, mark)` in dynamic
//! sets. The test sends thousands of UDP frames with varied sources through an
//! AF_PACKET socket on the other end, reads the sets back, and compares every mark with
//! `FlowKey::nft_jhash`. Each affinity gives both sides: its nft key
//! (`Affinity::nft_hash_key`, what the ruleset hashes) and its flow key
//! (`Affinity::flow_key`, what `decide` hashes).

use etherparse::PacketBuilder;
use nlb_core::config::{Affinity, Protocol};
use nlb_core::filter::Flow;
use nlb_linux::netns::NetNs;
use nlb_linux::packet::PacketSocket;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const FLOWS: usize = 3000;
const BIG_MODULUS: u32 = 4_294_967_291; // the largest prime below 2^32: nearly the raw hash
const BUCKETS: u32 = 1024;
const SEED_A: u32 = 0x9e37_79b9;
const SEED_B: u32 = 0x0000_0001;
const SENDER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const RECEIVER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

/// Which key a set records, and the hash parameters its rule used.
struct Case {
    set: &'static str,
    affinity: Affinity,
    modulus: u32,
    seed: u32,
    with_port: bool,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            set: "addr_big",
            affinity: Affinity::Single,
            modulus: BIG_MODULUS,
            seed: SEED_A,
            with_port: false,
        },
        Case {
            set: "addr_buckets",
            affinity: Affinity::Single,
            modulus: BUCKETS,
            seed: SEED_B,
            with_port: false,
        },
        Case {
            set: "port_big",
            affinity: Affinity::None,
            modulus: BIG_MODULUS,
            seed: SEED_A,
            with_port: true,
        },
        Case {
            set: "port_buckets",
            affinity: Affinity::None,
            modulus: BUCKETS,
            seed: SEED_B,
            with_port: true,
        },
        Case {
            set: "net_big",
            affinity: Affinity::Network,
            modulus: BIG_MODULUS,
            seed: SEED_A,
            with_port: false,
        },
        Case {
            set: "net_buckets",
            affinity: Affinity::Network,
            modulus: BUCKETS,
            seed: SEED_B,
            with_port: false,
        },
    ]
}

fn ruleset(receiver: &str) -> String {
    let mut sets = String::new();
    let mut rules = String::new();
    for case in cases() {
        let (typeof_key, element) = if case.with_port {
            (
                "ip saddr . udp sport . meta mark",
                "ip saddr . udp sport . meta mark",
            )
        } else {
            ("ip saddr . meta mark", "ip saddr . meta mark")
        };
        sets += &format!(
            "  set {} {{ typeof {typeof_key}; size 65536; flags dynamic; }}\n",
            case.set
        );
        rules += &format!(
            "    iifname \"{receiver}\" ip saddr 198.18.0.0/15 meta mark set jhash {} mod {} seed {:#x} add @{} {{ {element} }}\n",
            case.affinity.nft_hash_key(),
            case.modulus,
            case.seed,
            case.set
        );
    }
    format!(
        "table ip nlbtest {{\n{sets}  chain pre {{\n    type filter hook prerouting priority -300;\n{rules}    iifname \"{receiver}\" drop\n  }}\n}}\n"
    )
}

/// The parts of one set element, whatever wrapper nft put around it.
fn concat_parts(element: &Value) -> Vec<Value> {
    if let Some(parts) = element.get("concat").and_then(Value::as_array) {
        return parts.clone();
    }
    if let Some(inner) = element.get("elem").and_then(|e| e.get("val")) {
        return concat_parts(inner);
    }
    panic!("unexpected set element {element}");
}

fn as_u32(value: &Value) -> u32 {
    match value {
        Value::Number(n) => n.as_u64().expect("non-negative") as u32,
        Value::String(s) => {
            let hex = s.trim_start_matches("0x");
            u32::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("mark {s}"))
        }
        other => panic!("unexpected mark {other}"),
    }
}

/// Reads a set as (address, port or 0) -> mark.
fn read_set(ns: &NetNs, set: &str, with_port: bool) -> BTreeMap<(Ipv4Addr, u16), u32> {
    let json = ns
        .exec("nft", &["-j", "list", "set", "ip", "nlbtest", set], None)
        .expect("nft list set");
    let doc: Value = serde_json::from_str(&json).expect("nft prints JSON");
    let mut out = BTreeMap::new();
    for item in doc["nftables"].as_array().unwrap() {
        let Some(elements) = item.get("set").and_then(|s| s.get("elem")) else {
            continue;
        };
        for element in elements.as_array().unwrap() {
            let parts = concat_parts(element);
            let addr: Ipv4Addr = parts[0].as_str().unwrap().parse().unwrap();
            let (port, mark) = if with_port {
                (as_u32(&parts[1]) as u16, as_u32(&parts[2]))
            } else {
                (0, as_u32(&parts[1]))
            };
            out.insert((addr, port), mark);
        }
    }
    out
}

fn random_flows() -> Vec<(Ipv4Addr, u16)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6e6c62);
    let mut flows = BTreeSet::new();
    while flows.len() < FLOWS {
        // 198.18.0.0/15: 131072 addresses, 512 /24 networks.
        let host: u32 = rng.random_range(0..(1 << 17));
        let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + host);
        flows.insert((addr, rng.random_range(1024..=65535)));
    }
    flows.into_iter().collect()
}

fn frame(src: Ipv4Addr, sport: u16) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(SENDER_MAC, RECEIVER_MAC)
        .ipv4(src.octets(), [198, 19, 0, 1], 64)
        .udp(sport, 9);
    let payload = b"nlb jhash probe";
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).unwrap();
    out
}

#[test]
fn rust_jhash_matches_kernel_for_every_flow() {
    if !nlb_linux::netns::require_root("rust_jhash_matches_kernel_for_every_flow") {
        return;
    }
    let ns = NetNs::create(&nlb_linux::netns::unique_name("nlbt-jh")).expect("create namespace");
    let sender = "jhs0";
    let receiver = "jhr0";
    ns.ip(&[
        "link",
        "add",
        sender,
        "address",
        "02:00:00:00:00:01",
        "type",
        "veth",
        "peer",
        "name",
        receiver,
        "address",
        "02:00:00:00:00:02",
    ])
    .expect("veth pair");
    ns.ip(&["link", "set", sender, "up"]).unwrap();
    ns.ip(&["link", "set", receiver, "up"]).unwrap();
    ns.nft(&ruleset(receiver)).expect("load nft ruleset");

    let flows = random_flows();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                ns.enter_current_thread().expect("enter namespace");
                let socket = PacketSocket::bind(sender).expect("AF_PACKET socket");
                for &(src, sport) in &flows {
                    socket.send(&frame(src, sport)).expect("send frame");
                }
            })
            .join()
            .expect("sender thread");
    });

    for case in cases() {
        let expected: BTreeSet<(Ipv4Addr, u16)> = flows
            .iter()
            .map(|&(addr, port)| (addr, if case.with_port { port } else { 0 }))
            .collect();
        // The kernel processes the frames in softirq after `send` returns: wait until
        // every key has arrived in the set, or give up after 10 s.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut pause = Duration::from_millis(5);
        let seen = loop {
            let seen = read_set(&ns, case.set, case.with_port);
            if seen.len() >= expected.len() || Instant::now() > deadline {
                break seen;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        };
        assert_eq!(
            seen.keys().copied().collect::<BTreeSet<_>>(),
            expected,
            "set {} did not record every flow",
            case.set
        );
        let mut mismatches = Vec::new();
        for (&(addr, port), &kernel) in &seen {
            let flow = Flow {
                src: addr,
                src_port: port,
                dst: Ipv4Addr::new(198, 19, 0, 1),
                dst_port: 9,
                protocol: Protocol::Udp,
            };
            let rust = case
                .affinity
                .flow_key(&flow)
                .nft_jhash(case.modulus, case.seed);
            if rust != kernel {
                mismatches.push((addr, port, kernel, rust));
            }
        }
        assert!(
            mismatches.is_empty(),
            "set {}: {} of {} flows differ, first (addr, port, kernel, rust): {:?}",
            case.set,
            mismatches.len(),
            seen.len(),
            &mismatches[..mismatches.len().min(5)]
        );
        eprintln!(
            "{}: {} flows, kernel and Rust agree on every one",
            case.set,
            seen.len()
        );
    }
}

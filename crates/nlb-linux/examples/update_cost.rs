//! How long an ownership change takes the kernel: one bucket released (into draining)
//! and claimed back, as element updates on an `nft -i` session (what the daemon does),
//! against replacing the netdev and inet tables with `nft -f` (what it did before issue
//! 16). Run it inside a scratch network namespace, as `bench/update-cost.sh` does:
//!
//!   ip netns exec NS target/debug/examples/update_cost [ROUNDS] [BIG_SET_ELEMENTS]
//!
//! With BIG_SET_ELEMENTS > 0 a table `inet bigset` with that many set elements is
//! loaded first (as a firewall blocklist would be), which made `nft --echo` stall.
//! Prints the median and the 90th percentile of each, in microseconds.

use nlb_core::buckets::BUCKETS;
use nlb_core::config::Config;
use nlb_linux::nft::{NftSession, apply};
use nlb_linux::ruleset::{DEFAULT_DRAIN_IDLE, DEFAULT_LOCAL_PORTS, RuleState, Ruleset, Update};
use nlb_wire::bitmap::BucketBitmap;
use std::time::{Duration, Instant};

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index].as_secs_f64() * 1e6
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let big: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let config = Config::parse(
        "[cluster]\ninterface = \"lo\"\nvips = [\"198.18.0.10\"]\nmode = \"multicast\"\n[host]\nid = 1\n[[rule]]\nports = \"80\"\nprotocol = \"tcp\"\naffinity = \"none\"\n",
        "bench.toml",
    )
    .expect("config");
    if big > 0 {
        let elements: Vec<String> = (0..big)
            .map(|i| format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255))
            .collect();
        apply(&[format!(
            "table inet bigset {{\n\tset blocked {{\n\t\ttype ipv4_addr\n\t\telements = {{ {} }}\n\t}}\n}}\n",
            elements.join(", ")
        )])
        .expect("load the big set");
    }
    let mut half = BucketBitmap::new(BUCKETS);
    (0..128).for_each(|b| half.insert(b));
    let owning = |owned: &BucketBitmap, draining: &[u16]| {
        let mut state = RuleState {
            owned: owned.clone(),
            ..RuleState::empty(true)
        };
        draining.iter().for_each(|&b| state.draining.insert(b));
        vec![state.clone(), state]
    };
    let claimed = owning(&half, &[]);
    let mut less = half.clone();
    less.remove(7);
    let released = owning(&less, &[7]);
    let ruleset = |rules| Ruleset {
        config: &config,
        rules,
        lease: Duration::from_secs(600),
        local_ports: DEFAULT_LOCAL_PORTS,
        drain_idle: DEFAULT_DRAIN_IDLE,
    };
    apply(&ruleset(&claimed).batches()).expect("load the ruleset");
    let (Update::Elements(release), Update::Elements(claim)) = (
        ruleset(&released).update_from(&claimed),
        ruleset(&claimed).update_from(&released),
    ) else {
        panic!("element updates expected");
    };
    let mut session = NftSession::start().expect("nft -i");
    let mut elements = Vec::new();
    for _ in 0..rounds {
        for line in [&release, &claim] {
            let start = Instant::now();
            session.run(line, Duration::from_secs(5)).expect("update");
            elements.push(start.elapsed());
        }
    }
    // The completion marker alone (an empty line, then the marker).
    let mut markers = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        session.run("\n", Duration::from_secs(5)).expect("marker");
        markers.push(start.elapsed());
    }
    let mut tables = Vec::new();
    for _ in 0..rounds.min(40) {
        for rules in [&released, &claimed] {
            let batches = ruleset(rules).batches();
            let start = Instant::now();
            apply(&batches[1..]).expect("apply");
            tables.push(start.elapsed());
        }
    }
    println!(
        "big set elements: {big}; element updates: {} changes, table rewrites: {}",
        elements.len(),
        tables.len()
    );
    println!(
        "element update on nft -i: median {:.0} us, p90 {:.0} us",
        percentile(&mut elements, 0.5),
        percentile(&mut elements, 0.9)
    );
    println!(
        "of which the completion marker alone: median {:.0} us, p90 {:.0} us",
        percentile(&mut markers, 0.5),
        percentile(&mut markers, 0.9)
    );
    println!(
        "netdev+inet rewrite, nft -f: median {:.0} us, p90 {:.0} us",
        percentile(&mut tables, 0.5),
        percentile(&mut tables, 0.9)
    );
}

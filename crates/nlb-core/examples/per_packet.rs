//! Runs one per-packet operation N times, for callgrind's instruction counts
//! (`bench/micro.sh`): `per_packet <decide|encode|decode> <N>`. The difference between
//! runs with N and with 0 iterations, divided by N, is the cost of one operation.

use std::hint::black_box;

#[allow(dead_code, unreachable_pub)]
#[path = "../benches/workload.rs"]
mod workload;

fn main() {
    let mut args = std::env::args().skip(1);
    let op = args.next().unwrap_or_default();
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let work = workload::Workload::new();
    let mut out = vec![0u8; work.frame.len()];
    match op.as_str() {
        "decide" => (0..n).for_each(|i| {
            black_box(work.decide(black_box(i)));
        }),
        "encode" => (0..n).for_each(|_| work.encode(black_box(&mut out))),
        "decode" => (0..n).for_each(|_| {
            black_box(work.decode());
        }),
        other => {
            eprintln!("usage: per_packet <decide|encode|decode> <N> (not {other:?})");
            std::process::exit(2);
        }
    }
}

//! Per-packet costs in wall time (criterion): the filter decision a host makes for
//! every new flow, and heartbeat encode and decode (with the BLAKE3 tag), each host
//! doing both 100 times a second per peer. `cargo bench -p nlb-core`; instruction counts,
//! which are stable on a noisy machine, come from `bench/micro.sh` (callgrind).

#![allow(missing_docs)] // criterion's macros generate undocumented functions

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

#[allow(dead_code, unreachable_pub)]
mod workload;

fn per_packet(c: &mut Criterion) {
    let work = workload::Workload::new();
    let mut i = 0usize;
    c.bench_function("filter decide", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(work.decide(black_box(i)))
        })
    });
    let mut out = vec![0u8; work.frame.len()];
    c.bench_function("heartbeat encode+tag", |b| {
        b.iter(|| work.encode(black_box(&mut out)))
    });
    c.bench_function("heartbeat verify+decode", |b| {
        b.iter(|| black_box(work.decode()))
    });
}

criterion_group!(benches, per_packet);
criterion_main!(benches);

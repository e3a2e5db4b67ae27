//! Side-by-side benchmarks (skeleton).
fn main() {}

#!/usr/bin/env bash
# How long an ownership change takes the kernel: element updates on the daemon's
# `nft -i` session against table rewrites with `nft -f`, in a scratch namespace, without
# and with a 20,000-element set elsewhere in it (crates/nlb-linux/examples/update_cost.rs).
#
#   sudo bench/update-cost.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-200}
NS=nlbb-u$$
trap 'ip netns del $NS 2>/dev/null || true' EXIT INT TERM
cargo build -q -p nlb-linux --example update_cost
ip netns add $NS
ip -n $NS link set lo up
for big in 0 20000; do
  ip netns exec $NS target/debug/examples/update_cost "$ROUNDS" "$big"
  ip netns exec $NS nft flush ruleset
done | tee bench/results/update-cost.md

#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 300) on stable Rust, one after another,
# and prints how many executions each made. Crashes land in fuzz/artifacts/<target>/.
#   fuzz/run.sh [SECONDS] [TARGET...]
# Overflow checks are on (-a): an arithmetic overflow is a crash too.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame arp igmp heartbeat msnlb capture node)
for target in "${targets[@]}"; do
  max_len=2048
  [ "$target" = capture ] && max_len=16384
  mkdir -p "corpus/$target"
  log="/tmp/nlb-fuzz-$target.log"
  cargo fuzz run --sanitizer none -O -a "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len="$max_len" >"$log" 2>&1 || { echo "$target: CRASH, see $log"; tail -30 "$log"; exit 1; }
  runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -1)
  echo "$target: $runs in ${seconds}s"
done

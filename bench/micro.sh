#!/usr/bin/env bash
# Per-packet costs: callgrind instruction counts (stable whatever else the machine does)
# and criterion wall times, for the filter decision and heartbeat encode/decode.
#
#   bench/micro.sh            # both
#   SKIP_CRITERION=1 bench/micro.sh
#
# Instructions per operation = (Ir of N operations - Ir of 0) / N, from
# `valgrind --tool=callgrind` on crates/nlb-core/examples/per_packet.rs, so set-up costs
# cancel out. Writes bench/results/micro.md and bench/results/micro.json. Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
mkdir -p bench/results target/bench
cargo build --release --locked -q -p nlb-core --example per_packet
ir() {
  local out=target/bench/callgrind.$1.$2
  valgrind --tool=callgrind --callgrind-out-file="$out" target/release/examples/per_packet "$1" "$2" 2>/dev/null
  grep '^summary:' "$out" | awk '{print $2}'
}
declare -A per_op
for op in decide encode decode; do
  base=$(ir "$op" 0)
  full=$(ir "$op" "$N")
  per_op[$op]=$(( (full - base) / N ))
  echo "$op: $(( full - base )) instructions for $N operations" >&2
done

declare -A wall
if [ "${SKIP_CRITERION:-0}" != 1 ]; then
  cargo bench --locked -q -p nlb-core --bench per_packet -- --warm-up-time 1 --measurement-time 3 \
    2>/dev/null | tee target/bench/criterion.txt >&2
  for pair in "decide:filter decide" "encode:heartbeat encode+tag" "decode:heartbeat verify+decode"; do
    op=${pair%%:*}; name=${pair#*:}
    wall[$op]=$(grep -A0 "^$name" target/bench/criterion.txt | grep -o 'time: *\[[^]]*\]' | awk '{print $4, $5}')
  done
fi

{
  echo "| operation | instructions (callgrind) | wall time, median (criterion) |"
  echo "|---|---|---|"
  echo "| filter decision (rule lookup + kernel jhash + bitmap) | ${per_op[decide]} | ${wall[decide]:-not run} |"
  echo "| heartbeat encode + BLAKE3 tag (3 rules x 256 buckets) | ${per_op[encode]} | ${wall[encode]:-not run} |"
  echo "| heartbeat tag check + decode | ${per_op[decode]} | ${wall[decode]:-not run} |"
  echo
  echo "N = $N operations per count; $(nproc) CPUs; load: $(uptime | sed 's/.*load/load/')"
} | tee bench/results/micro.md
python3 - "${per_op[decide]}" "${per_op[encode]}" "${per_op[decode]}" "${wall[decide]:-}" "${wall[encode]:-}" "${wall[decode]:-}" <<'PY' > bench/results/micro.json
import json, sys
a = sys.argv[1:]
print(json.dumps({
    "instructions": {"decide": int(a[0]), "encode": int(a[1]), "decode": int(a[2])},
    "criterion_median": {"decide": a[3], "encode": a[4], "decode": a[5]},
}, indent=2))
PY

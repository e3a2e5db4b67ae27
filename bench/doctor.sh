#!/usr/bin/env bash
# The doctor against tshark on one generated capture, side by side in one run:
#
#   bench/doctor.sh                 # 5,000,000 frames (380 MB), 3 runs each
#   FRAMES=1000000 RUNS=5 bench/doctor.sh
#
# The capture comes from `cargo run --release -p nlb-doctor --example gen_capture`:
# mostly ordinary ARP among 2,000 hosts, with duplicates, dead addresses, a storm,
# probes, announcements, a cluster MAC as source and malformed frames mixed in. Both
# tools run pinned to CPU 0 (one core), alternating, from a warm page cache; the table
# gives medians of whole-command wall times. It also checks that both report the same
# duplicate IPs (tshark's expert info "Duplicate IP address configured").
#
# Writes bench/results/doctor.md and bench/results/doctor.json. Needs tshark (apt-get
# install tshark) and a release build: cargo build --release -p nlb
set -euo pipefail
cd "$(dirname "$0")/.."
FRAMES=${FRAMES:-5000000}
RUNS=${RUNS:-3}
NLB=${NLB:-target/release/nlb}
capture=${CAPTURE:-target/bench/doctor-$FRAMES.pcap}
mkdir -p target/bench bench/results

command -v tshark >/dev/null || { echo "tshark is missing: apt-get install tshark" >&2; exit 1; }
[ -x "$NLB" ] || { echo "$NLB is missing: cargo build --release -p nlb" >&2; exit 1; }
if [ ! -s "$capture" ]; then
  cargo build --release --locked -q -p nlb-doctor --example gen_capture
  target/release/examples/gen_capture "$capture" "$FRAMES"
fi
cat "$capture" > /dev/null # warm the page cache for both

pin() { if command -v taskset >/dev/null; then taskset -c 0 "$@"; else "$@"; fi; }
now() { date +%s.%N; }
doctor_times=()
tshark_times=()
for run in $(seq "$RUNS"); do
  start=$(now)
  pin "$NLB" doctor "$capture" --json > target/bench/doctor.json
  doctor_times+=("$(echo "$(now) - $start" | bc -l)")
  start=$(now)
  pin tshark -r "$capture" -q -z expert > target/bench/tshark.txt 2>/dev/null
  tshark_times+=("$(echo "$(now) - $start" | bc -l)")
  echo "run $run/$RUNS: doctor ${doctor_times[-1]} s, tshark ${tshark_times[-1]} s" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
doctor_s=$(median "${doctor_times[@]}")
tshark_s=$(median "${tshark_times[@]}")

ours=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("\n".join(sorted({f["ip"] for f in r["findings"] if f["kind"]=="duplicate_ip"})))' target/bench/doctor.json)
theirs=$(grep -o 'Duplicate IP address configured ([0-9.]*)' target/bench/tshark.txt | grep -o '[0-9.]*[0-9]' | sort -u)
if [ "$ours" = "$theirs" ]; then same=yes; else same=no; fi
count=$(wc -l <<<"$ours")

python3 - "$FRAMES" "$doctor_s" "$tshark_s" "$same" "$count" "$RUNS" "$(nproc)" "$(uptime)" <<'EOF'
import json, sys
frames, doctor_s, tshark_s = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
same, count, runs, cpus, load = sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), sys.argv[7], sys.argv[8]
result = {
    "frames": frames, "runs": runs,
    "doctor_s": round(doctor_s, 3), "tshark_s": round(tshark_s, 3),
    "doctor_frames_per_s": round(frames / doctor_s),
    "tshark_frames_per_s": round(frames / tshark_s),
    "ratio": round(tshark_s / doctor_s, 1),
    "duplicate_ips": count, "same_duplicate_ips_as_tshark": same == "yes",
    "load": load.strip(),
}
md = f"""| tool | median wall time | frames/s | duplicate IPs |
|---|---|---|---|
| nlb doctor --json | {doctor_s:.2f} s | {frames/doctor_s/1e6:.2f} M | {count} |
| tshark -q -z expert | {tshark_s:.2f} s | {frames/tshark_s/1e6:.2f} M | {count if same == 'yes' else 'differs'} |

{frames:,} frames, {runs} runs each, pinned to one CPU; doctor is {tshark_s/doctor_s:.1f}x faster; same duplicate-IP findings as tshark: {same}. Load: {load.strip()}
"""
open("bench/results/doctor.json", "w").write(json.dumps(result, indent=2) + "\n")
open("bench/results/doctor.md", "w").write(md)
print(md)
EOF
[ "$same" = yes ] || { echo "the doctor and tshark disagree on duplicate IPs:"; diff <(echo "$ours") <(echo "$theirs"); exit 1; }

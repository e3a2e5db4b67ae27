#!/usr/bin/env bash
# The doctor against tshark on every generated capture shape, side by side in one run:
#
#   bench/doctor.sh                      # 1,000,000 frames a shape, 3 runs each: about a
#                                        # minute, nearly all of it tshark
#   FRAMES=5000000 RUNS=5 bench/doctor.sh
#   SHAPES="ordinary storms" bench/doctor.sh
#
# The captures come from `cargo run --release -p nlb-doctor --example gen_capture`
# (its docs describe each shape): `ordinary` (mostly ordinary ARP among 2,000 hosts,
# every anomaly mixed in) and the anomaly-dense `unanswered`, `unsolicited`, `flapping`,
# `storms` and `vlans`. Both tools run pinned to CPU 0 (one core), alternating, from a
# warm page cache; the table gives medians of whole-command wall times, and of their CPU
# times (user + system): on a machine shared with other work, a pinned process waits
# for its core, and the CPU time is the steadier measure. It also checks that both
# report the same duplicate IPs (tshark's expert info "Duplicate IP address
# configured"), where either reports any.
#
# Writes bench/results/doctor.md and bench/results/doctor.json. Needs tshark (apt-get
# install tshark) and a release build: cargo build --release -p nlb
#
# Same findings before and after a change, byte for byte:
#
#   bench/doctor.sh save DIR      # the --json output of every shape and fixture, to DIR
#   bench/doctor.sh compare DIR   # the same again, diffed against DIR (exit 1 if any differ)
set -euo pipefail
cd "$(dirname "$0")/.."
FRAMES=${FRAMES:-1000000}
RUNS=${RUNS:-3}
NLB=${NLB:-target/release/nlb}
SHAPES=${SHAPES:-ordinary unanswered unsolicited flapping storms vlans}
mkdir -p target/bench bench/results

[ -x "$NLB" ] || { echo "$NLB is missing: cargo build --release -p nlb" >&2; exit 1; }
cargo build --release --locked -q -p nlb-doctor --example gen_capture
capture() { echo "target/bench/doctor-$1-$FRAMES.pcap"; }
for shape in $SHAPES; do
  # Generating is deterministic and fast (0.1 s a million frames): always afresh.
  target/release/examples/gen_capture "$(capture "$shape")" "$FRAMES" "$shape" 2>/dev/null
done

# The doctor's JSON for every shape and every fixture capture, into directory $1.
outputs() {
  mkdir -p "$1"
  for shape in $SHAPES; do
    "$NLB" doctor "$(capture "$shape")" --json > "$1/$shape.json"
  done
  for fixture in crates/nlb-doctor/tests/fixtures/*.pcap*; do
    "$NLB" doctor "$fixture" --json > "$1/$(basename "$fixture").json" || true
  done
}
case "${1:-}" in
  save) outputs "${2:?save DIR}"; echo "saved $(ls "$2" | wc -l) outputs to $2"; exit 0 ;;
  compare)
    outputs target/bench/compare
    # The file name is in the output and differs only if the captures moved.
    if diff -r -q "${2:?compare DIR}" target/bench/compare; then
      echo "same output for $(ls "$2" | wc -l) captures"
      exit 0
    fi
    exit 1 ;;
  "") ;;
  *) echo "usage: bench/doctor.sh [save DIR | compare DIR]" >&2; exit 2 ;;
esac

command -v tshark >/dev/null || { echo "tshark is missing: apt-get install tshark" >&2; exit 1; }
pin() { if command -v taskset >/dev/null; then taskset -c 0 "$@"; else "$@"; fi; }
# timed OUT CMD...: runs CMD with its output to OUT; prints its wall and CPU seconds.
timed() {
  local out=$1 TIMEFORMAT='%R %U %S'
  shift
  { time "$@" > "$out" 2>/dev/null; } 2>&1 | awk '{print $1, $2 + $3}'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
rows=target/bench/doctor-rows.txt
: > "$rows"
for shape in $SHAPES; do
  file=$(capture "$shape")
  cat "$file" > /dev/null # warm the page cache for both
  doctor_times=() doctor_cpu=() tshark_times=() tshark_cpu=()
  for run in $(seq "$RUNS"); do
    read -r wall cpu < <(timed target/bench/doctor.json pin "$NLB" doctor "$file" --json)
    doctor_times+=("$wall") doctor_cpu+=("$cpu")
    read -r wall cpu < <(timed target/bench/tshark.txt pin tshark -r "$file" -q -z expert)
    tshark_times+=("$wall") tshark_cpu+=("$cpu")
    echo "$shape run $run/$RUNS: doctor ${doctor_times[-1]} s (CPU ${doctor_cpu[-1]} s), tshark ${tshark_times[-1]} s (CPU ${tshark_cpu[-1]} s)" >&2
  done
  ours=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("\n".join(sorted({f["ip"] for f in r["findings"] if f["kind"]=="duplicate_ip"})))' target/bench/doctor.json)
  theirs=$(grep -o 'Duplicate IP address configured ([0-9.]*)' target/bench/tshark.txt | grep -o '[0-9.]*[0-9]' | sort -u || true)
  if [ -z "$ours$theirs" ]; then same=n/a; elif [ "$ours" = "$theirs" ]; then same=yes; else same=no; fi
  if [ "$same" = no ]; then
    echo "$shape: the doctor and tshark disagree on duplicate IPs:" >&2
    diff <(echo "$ours") <(echo "$theirs") >&2 || true
  fi
  frames=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["capture"]["frames"])' target/bench/doctor.json)
  echo "$shape $frames $(median "${doctor_times[@]}") $(median "${tshark_times[@]}") $(median "${doctor_cpu[@]}") $(median "${tshark_cpu[@]}") $same $(grep -c . <<<"$ours" || true)" >> "$rows"
done

python3 - "$rows" "$RUNS" "$(uptime)" <<'EOF'
import json, sys
rows, runs, load = sys.argv[1], int(sys.argv[2]), sys.argv[3].strip()
shapes = []
for line in open(rows):
    shape, frames, doctor_s, tshark_s, doctor_cpu, tshark_cpu, same, count = line.split()
    frames, doctor_s, tshark_s = int(frames), float(doctor_s), float(tshark_s)
    doctor_cpu, tshark_cpu = float(doctor_cpu), float(tshark_cpu)
    shapes.append({
        "shape": shape, "frames": frames,
        "doctor_s": round(doctor_s, 3), "tshark_s": round(tshark_s, 3),
        "doctor_cpu_s": round(doctor_cpu, 3), "tshark_cpu_s": round(tshark_cpu, 3),
        "doctor_frames_per_s": round(frames / doctor_s),
        "tshark_frames_per_s": round(frames / tshark_s),
        "doctor_frames_per_cpu_s": round(frames / doctor_cpu),
        "ratio": round(tshark_s / doctor_s, 1),
        "cpu_ratio": round(tshark_cpu / doctor_cpu, 1),
        "duplicate_ips": int(count),
        "same_duplicate_ips_as_tshark": None if same == "n/a" else same == "yes",
    })
md = ["| shape | frames | doctor --json | tshark -q -z expert | doctor M frames/s | tshark / doctor | CPU: doctor, tshark, ratio | duplicate IPs, same as tshark |",
      "|---|---|---|---|---|---|---|---|"]
for s in shapes:
    same = s["same_duplicate_ips_as_tshark"]
    agree = "none found by either" if same is None else f"{s['duplicate_ips']}, {'yes' if same else 'NO'}"
    md.append(f"| {s['shape']} | {s['frames']:,} | {s['doctor_s']:.3f} s | {s['tshark_s']:.2f} s | "
              f"{s['doctor_frames_per_s']/1e6:.1f} | {s['ratio']:.1f}x | "
              f"{s['doctor_cpu_s']:.3f} s, {s['tshark_cpu_s']:.2f} s, {s['cpu_ratio']:.1f}x | {agree} |")
md.append("")
md.append(f"Medians of {runs} runs each, whole-command wall times (and CPU times, user + system), "
          f"both pinned to one CPU and alternating, warm page cache. Load: {load}")
open("bench/results/doctor.json", "w").write(json.dumps({"runs": runs, "load": load, "shapes": shapes}, indent=2) + "\n")
open("bench/results/doctor.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
EOF
! grep -q ' no ' "$rows"

#!/usr/bin/env bash
# The per-packet cost of a packet this host does not own, before and after issue 16's
# netdev stage, side by side in one run, on this kernel, in network namespaces.
#
#   sudo bench/nonowner-cost.sh            # ACKs (mid-stream packets of other hosts' flows)
#   sudo MODE=syn bench/nonowner-cost.sh   # SYNs (other hosts' new connections)
#
# Two namespaces, nlbb-c (sender) and nlbb-h (host), joined by a veth pair whose host
# end is called veth-h1, as in the ruleset snapshots; VIP 198.18.0.10 on the host's lo;
# spoofed sources in 198.19.0.0/16. Variants, loaded in turn, ROUNDS alternating rounds:
#
#   floor   netdev `ip daddr 198.18.0.10 drop`, no hash (the send + receive floor)
#   before  bench/nonowner/before.nft: nlb's inet table before issue 16 (drop after
#           conntrack at -150)
#   after   the current multicast ruleset snapshot (netdev stage + inet stage), from
#           crates/nlb-linux/src/snapshots/
#
# In `before` and `after`, rule 1 (TCP port 80, affinity none) owns no bucket, so every
# packet of the flood is a non-owned one. `blast` sends 40-byte TCP packets with
# IP_HDRINCL over sendmmsg from 1024 sources to 198.18.0.10:80, pinned to CPU 0; veth
# delivers them in the sender's own context, so the sender's CPU time per packet
# (rusage) is send + receive + drop. There are no PMU counters on this VM
# (`perf stat -e cycles` is <not supported>), so rusage is the measure; nft counters
# say where each variant dropped. Prints a table and writes bench/results/nonowner.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-1.5}
MODE=${MODE:-ack}
C=nlbb-c
H=nlbb-h
WORK=$(mktemp -d)
cleanup() { ip netns del $C 2>/dev/null || true; ip netns del $H 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM
ip netns del $C 2>/dev/null || true
ip netns del $H 2>/dev/null || true

# The sender of the kernel-facts research (section 4), built as it says.
gcc -O2 -fno-strict-aliasing -o "$WORK/blast" docs/research/issue16-scripts/blast.c
SNAP=crates/nlb-linux/src/snapshots/nlb_linux__ruleset__tests__multicast_ruleset_snapshot.snap
TABLE=nlb_veth_2dh1_1db57edb
# The snapshot without its insta header: the arp batch, then netdev + inet.
sed '1,/^---$/d' "$SNAP" | sed 's/^# ---- next batch ----$//' > "$WORK/after-all.nft"
sed -n '/^table netdev/,$p' "$WORK/after-all.nft" > "$WORK/after.nft"
grep -v 'rule1 accept' bench/nonowner/before.nft > "$WORK/before.nft"

ip netns add $C
ip netns add $H
ip link add nlbb-vc netns $C type veth peer name veth-h1 netns $H
ip -n $C addr add 198.18.0.1/24 dev nlbb-vc
ip -n $H addr add 198.18.0.2/24 dev veth-h1
ip -n $H addr add 198.18.0.10/32 dev lo
ip -n $C link set nlbb-vc up
ip -n $C link set lo up
ip -n $H link set veth-h1 up
ip -n $H link set lo up
ip -n $C route add 198.18.0.10/32 via 198.18.0.2
ip -n $H route add 198.19.0.0/16 via 198.18.0.1

hn() { ip netns exec $H nft "$@"; }
load() {
  hn flush ruleset
  case $1 in
  floor) printf 'table netdev f {\n\tchain in {\n\t\ttype filter hook ingress device "veth-h1" priority -500; policy accept;\n\t\tip daddr 198.18.0.10 counter drop comment "floor"\n\t}\n}\n' | hn -f - ;;
  before) hn -f "$WORK/before.nft" ;;
  after)
    hn -f "$WORK/after.nft"
    hn flush map netdev $TABLE rule1
    hn flush set inet $TABLE rule1 ;;
  esac
}
# Where the flood was dropped: the counters that moved.
counters() { hn list ruleset | grep -E 'counter packets [1-9]' | sed -E 's/^\s*//; s/ bytes [0-9]+//' | grep -oE 'counter packets [0-9]+.*' || true; }

VARIANTS="floor before after"
declare -A CPU PPS
for round in $(seq 1 "$ROUNDS"); do
  for v in $VARIANTS; do
    load $v
    read -r sent elapsed pps cpu ns < <(ip netns exec $C taskset -c 0 "$WORK/blast" 1024 "$SECS" "$MODE")
    CPU[$v]="${CPU[$v]:-} $ns"
    PPS[$v]="${PPS[$v]:-} $pps"
    if [ "$round" = 1 ]; then
      echo "$v, round 1: $sent packets in ${elapsed}s; dropped by:" >&2
      counters | sed 's/^/    /' >&2
    fi
  done
done
med() { tr ' ' '\n' <<<"$*" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
{
  echo "## Non-owned packet cost ($MODE), $(date -u +%Y-%m-%dT%H:%MZ), kernel $(uname -r), nft $(nft --version | awk '{print $2}')"
  echo
  echo "Sender CPU ns per packet (send + receive + drop), $ROUNDS alternating rounds of ${SECS} s; load average $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "| variant | ns/packet per round | median | kpps median |"
  echo "|---|---|---|---|"
  for v in $VARIANTS; do
    echo "| $v |${CPU[$v]} | $(med ${CPU[$v]}) | $(( $(med ${PPS[$v]}) / 1000 )) |"
  done
  b=$(med ${CPU[before]}); a=$(med ${CPU[after]}); f=$(med ${CPU[floor]})
  echo
  echo "before − after: $(( b - a )) ns per non-owned packet; above the floor: before $(( b - f )) ns, after $(( a - f )) ns."
} | tee bench/results/nonowner-$MODE.md

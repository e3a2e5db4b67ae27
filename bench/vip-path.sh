#!/usr/bin/env bash
# The cost of the VIP path, measured side by side in one run with wrk:
#   direct    - the HTTP server on host 1's own address, no nlb
#   vip-1     - the same server through the VIP of a 1-host nlb cluster (host 2 is
#               off the bridge meanwhile)
#   vip-2     - through the VIP of a 2-host cluster on the same machine
# Each is measured ROUNDS times, alternating, for SECONDS each; medians are compared.
# Builds its own namespaces (198.18.0.0/15 only) and removes them on exit. Needs root,
# wrk and a release build of nlb:  cargo build --release -p nlb && sudo bench/vip-path.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NLB=${NLB:-target/release/nlb}
ROUNDS=${ROUNDS:-4}
SECONDS_EACH=${SECONDS_EACH:-3}
CONNECTIONS=${CONNECTIONS:-32}
MODE=${MODE:-multicast}
tag=nlbb$$
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in sw h1 h2 c; do ip netns del "$tag-$ns" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

ip netns add "$tag-sw"
ip netns exec "$tag-sw" ip link add br0 type bridge
ip netns exec "$tag-sw" ip link set br0 up
for k in h1 h2 c; do
  ip netns add "$tag-$k"
  ip link add "$tag$k" type veth peer name "${tag}i$k"
  ip link set "$tag$k" netns "$tag-sw"
  ip link set "${tag}i$k" netns "$tag-$k"
  ip netns exec "$tag-sw" ip link set "$tag$k" master br0 up
  ip netns exec "$tag-$k" ip link set "${tag}i$k" name eth0
  ip netns exec "$tag-$k" ip link set eth0 up
  ip netns exec "$tag-$k" ip link set lo up
done
ip netns exec "$tag-h1" ip addr add 198.18.0.1/24 dev eth0
ip netns exec "$tag-h2" ip addr add 198.18.0.2/24 dev eth0
ip netns exec "$tag-c" ip addr add 198.18.0.100/24 dev eth0

config() { # id initial_state
  printf '[cluster]\ninterface = "eth0"\nvips = ["198.18.0.10"]\nmode = "%s"\n[host]\nid = %s\ninitial_state = "%s"\ncontrol_socket = "%s/h%s.sock"\n' \
    "$MODE" "$1" "$2" "$dir" "$1" > "$dir/h$1.toml"
}
config 1 started; config 2 stopped
for k in 1 2; do
  ip netns exec "$tag-h$k" "$NLB" serve-http --bind 0.0.0.0:80 --name "host$k" >/dev/null 2>&1 & pids+=($!)
  ip netns exec "$tag-h$k" "$NLB" run --config "$dir/h$k.toml" --run-dir "$dir/run$k" 2>"$dir/h$k.log" & pids+=($!)
done
wait_state() { # socket state
  for _ in $(seq 100); do
    "$NLB" query --json --socket "$1" 2>/dev/null | grep -q "\"state\":\"$2\"" && return 0
    sleep 0.1
  done
  echo "timed out waiting for $2 on $1" >&2; return 1
}
wait_state "$dir/h1.sock" converged
# Host 2 is off the bridge while host 1 runs alone, so that no frame is copied to it.
ip netns exec "$tag-sw" ip link set "${tag}h2" down

rate() { # url
  ip netns exec "$tag-c" wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_EACH}s" "$1" | awk '/Requests\/sec/ {print $2}'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A results
for round in $(seq "$ROUNDS"); do
  results[direct]+="$(rate http://198.18.0.1/) "
  results[vip1]+="$(rate http://198.18.0.10/) "
done
ip netns exec "$tag-sw" ip link set "${tag}h2" up
"$NLB" start --socket "$dir/h2.sock" >/dev/null
wait_state "$dir/h2.sock" converged
wait_state "$dir/h1.sock" converged
for round in $(seq "$ROUNDS"); do
  results[direct2]+="$(rate http://198.18.0.1/) "
  results[vip2]+="$(rate http://198.18.0.10/) "
done
d=$(tr ' ' '\n' <<<"${results[direct]}" | grep . | median)
v1=$(tr ' ' '\n' <<<"${results[vip1]}" | grep . | median)
d2=$(tr ' ' '\n' <<<"${results[direct2]}" | grep . | median)
v2=$(tr ' ' '\n' <<<"${results[vip2]}" | grep . | median)
echo "| path | requests/s (median of $ROUNDS x ${SECONDS_EACH}s) | all runs |"
echo "|---|---|---|"
echo "| direct (host 1's own address) | $d | ${results[direct]}|"
echo "| VIP, 1-host cluster ($MODE) | $v1 | ${results[vip1]}|"
echo "| direct, while host 2 is in the cluster | $d2 | ${results[direct2]}|"
echo "| VIP, 2-host cluster ($MODE) | $v2 | ${results[vip2]}|"
awk -v d="$d" -v v1="$v1" -v v2="$v2" 'BEGIN {
  printf "\nVIP path / direct path: %.2f\n2-host cluster / 1-host cluster: %.2f\n", v1/d, v2/v1 }'

#!/usr/bin/env bash
# False failovers under full CPU load: a 3-host cluster at its defaults runs for
# DURATION seconds (default 600) while one busy loop per core keeps every CPU at 100%,
# then counts the members declared dead and the views installed after the first
# convergence. Builds its own namespaces (198.18.0.0/15 only) and removes them on exit.
#   cargo build --release -p nlb && sudo bench/false-failover.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NLB=${NLB:-target/release/nlb}
DURATION=${DURATION:-600}
MODE=${MODE:-multicast}
tag=nlbf$$
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in sw h1 h2 h3; do ip netns del "$tag-$ns" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
ip netns add "$tag-sw"
ip netns exec "$tag-sw" ip link add br0 type bridge
ip netns exec "$tag-sw" ip link set br0 up
"$NLB" keygen --out "$dir/cluster.key" >/dev/null
for k in 1 2 3; do
  ip netns add "$tag-h$k"
  ip link add "${tag}h$k" type veth peer name "${tag}i$k"
  ip link set "${tag}h$k" netns "$tag-sw"
  ip link set "${tag}i$k" netns "$tag-h$k"
  ip netns exec "$tag-sw" ip link set "${tag}h$k" master br0 up
  ip netns exec "$tag-h$k" ip link set "${tag}i$k" name eth0
  ip netns exec "$tag-h$k" ip link set eth0 up
  ip netns exec "$tag-h$k" ip addr add "198.18.0.$k/24" dev eth0
  printf '[cluster]\ninterface = "eth0"\nvips = ["198.18.0.10"]\nmode = "%s"\nkey_file = "%s/cluster.key"\n[host]\nid = %s\ncontrol_socket = "%s/h%s.sock"\n' \
    "$MODE" "$dir" "$k" "$dir" "$k" > "$dir/h$k.toml"
  ip netns exec "$tag-h$k" "$NLB" run --config "$dir/h$k.toml" --run-dir "$dir/run$k" 2>"$dir/h$k.log" & pids+=($!)
done
for _ in $(seq 100); do
  all=1
  for k in 1 2 3; do
    "$NLB" query --json --socket "$dir/h$k.sock" 2>/dev/null | grep -q '"state":"converged"' || all=0
  done
  [ "$all" = 1 ] && break
  sleep 0.1
done
views_before=$(cat "$dir"/h*.log | grep -c nlb.view_installed || true)
for _ in $(seq "$(nproc)"); do (while :; do :; done) & pids+=($!); done
echo "cluster converged; loading every CPU for ${DURATION}s ..." >&2
sleep "$DURATION"
downs=$(cat "$dir"/h*.log | grep -c nlb.peer_down || true)
views=$(( $(cat "$dir"/h*.log | grep -c nlb.view_installed || true) - views_before ))
echo "| mode | duration | CPUs loaded | members declared dead | views installed after convergence |"
echo "|---|---|---|---|---|"
echo "| $MODE | ${DURATION} s | $(nproc) of $(nproc) | $downs | $views |"

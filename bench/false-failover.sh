#!/usr/bin/env bash
# False failovers under full CPU load and full data traffic: a 3-host cluster at its
# defaults runs for DURATION seconds (default 600) while one busy loop per core keeps
# every CPU at 100% and (TRAFFIC=1, the default) wrk drives HTTP through the VIP to
# `nlb serve-http` on every host from a client on the same bridge; then it counts the
# members declared dead, the stalls the hosts noticed and the views installed after the
# first convergence, and wrk's requests and errors. Builds its own namespaces
# (198.18.0.0/15 only) and removes them on exit. Needs wrk for the traffic.
#   cargo build --release -p nlb && sudo bench/false-failover.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NLB=${NLB:-target/release/nlb}
DURATION=${DURATION:-600}
MODE=${MODE:-multicast}
TRAFFIC=${TRAFFIC:-1}
tag=nlbf$$
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in sw h1 h2 h3 c; do ip netns del "$tag-$ns" 2>/dev/null || true; done
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
  if [ "$TRAFFIC" = 1 ]; then
    ip netns exec "$tag-h$k" "$NLB" serve-http --bind 198.18.0.10:80 --name "host$k" >/dev/null 2>&1 & pids+=($!)
  fi
done
if [ "$TRAFFIC" = 1 ]; then
  ip netns add "$tag-c"
  ip link add "${tag}hc" type veth peer name "${tag}ic"
  ip link set "${tag}hc" netns "$tag-sw"
  ip link set "${tag}ic" netns "$tag-c"
  ip netns exec "$tag-sw" ip link set "${tag}hc" master br0 up
  ip netns exec "$tag-c" ip link set "${tag}ic" name eth0
  ip netns exec "$tag-c" ip link set eth0 up
  ip netns exec "$tag-c" ip link set lo up
  ip netns exec "$tag-c" ip addr add 198.18.0.100/24 dev eth0
fi
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
if [ "$TRAFFIC" = 1 ]; then
  echo "cluster converged; loading every CPU and the VIP for ${DURATION}s ..." >&2
  ip netns exec "$tag-c" wrk -t1 -c16 -d"${DURATION}s" --timeout 3s http://198.18.0.10/ > "$dir/wrk.txt" 2>&1
  requests=$(awk '/requests in/ {print $1}' "$dir/wrk.txt")
  errors=$(grep -o 'Socket errors:.*' "$dir/wrk.txt" || echo "Socket errors: none")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$dir/wrk.txt")
else
  echo "cluster converged; loading every CPU for ${DURATION}s ..." >&2
  sleep "$DURATION"
  requests=-; errors=-; non2xx=-
fi
downs=$(cat "$dir"/h*.log | grep -c nlb.peer_down || true)
stalls=$(cat "$dir"/h*.log | grep -c nlb.stalled || true)
views=$(( $(cat "$dir"/h*.log | grep -c nlb.view_installed || true) - views_before ))
echo "| mode | duration | CPUs loaded | traffic (wrk requests; errors) | members declared dead | stalls | views installed after convergence |"
echo "|---|---|---|---|---|---|---|"
echo "| $MODE | ${DURATION} s | $(nproc) of $(nproc) | ${requests}; ${errors}${non2xx:+, non-2xx $non2xx} | $downs | $stalls | $views |"

#!/usr/bin/env bash
# What nlb run costs the traffic that is not its business, side by side in one run:
#
#  A. the daemon's CPU while a client floods UDP at the host's own address and at the
#     VIP (frames the daemon's socket filter drops in the kernel), per 100,000 packets/s;
#  B. wrk on the host's own address with the daemon running against paused (SIGSTOP),
#     rounds alternating.
#
# A bridge, one host (198.18.0.1, VIP 198.18.0.10, multicast mode) and a client
# (198.18.0.100), in namespaces this script creates and deletes (also on failure).
# Needs root, wrk, nftables, iproute2, python3, and target/release/nlb
# (cargo build --release -p nlb).
#
#   sudo bench/daemon-cost.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
seconds=${2:-3}
nlb=${NLB:-target/release/nlb}
tag=nlbc$$
sw=$tag-sw h=$tag-h1 c=$tag-c
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in "$h" "$c" "$sw"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

ip netns add "$sw"; ip netns add "$h"; ip netns add "$c"
ip -n "$sw" link add br0 type bridge
ip -n "$sw" link set br0 up
for pair in "$h:p1:198.18.0.1" "$c:pc:198.18.0.100"; do
  IFS=: read -r ns port addr <<<"$pair"
  ip -n "$sw" link add "$port" type veth peer name eth0 netns "$ns"
  ip -n "$sw" link set "$port" master br0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  ip -n "$ns" addr add "$addr/24" dev eth0
done

"$nlb" keygen --out "$dir/cluster.key" >/dev/null
cat >"$dir/h1.toml" <<EOF
[cluster]
interface = "eth0"
vips = ["198.18.0.10"]
mode = "multicast"
key_file = "$dir/cluster.key"

[host]
id = 1
control_socket = "$dir/h1.sock"

[[rule]]
ports = "80"
protocol = "tcp"
affinity = "single"
EOF
ip netns exec "$h" "$nlb" run --config "$dir/h1.toml" --run-dir "$dir/run" 2>"$dir/h1.log" &
pids+=($!)
# The daemon's own pid (ip netns exec execs it).
daemon=${pids[0]}
for _ in $(seq 100); do
  "$nlb" query --json --socket "$dir/h1.sock" 2>/dev/null | grep -q '"state":"converged"' && break
  sleep 0.1
done
"$nlb" query --json --socket "$dir/h1.sock" | grep -q '"state":"converged"' || { cat "$dir/h1.log"; exit 1; }
# One server on every address (the VIP is on eth0 now): the same server on both paths.
ip netns exec "$h" "$nlb" serve-http --bind 0.0.0.0:80 --name host1 >/dev/null 2>&1 &
pids+=($!)
ip netns exec "$c" ping -c1 -W1 198.18.0.10 >/dev/null || true

# CPU ticks of the daemon and of its `nft -i` lease session (a child process).
ticks() {
  local total
  total=$(awk '{print $14 + $15}' "/proc/$daemon/stat")
  for child in $(pgrep -P "$daemon" 2>/dev/null); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$child/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
rx() { ip netns exec "$h" cat /sys/class/net/eth0/statistics/rx_packets; }
hz=$(getconf CLK_TCK)

flood() { # DST SECONDS: UDP as fast as one Python thread goes
  ip netns exec "$c" python3 - "$1" "$2" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + float(sys.argv[2])
payload = b"x" * 18
dst = (sys.argv[1], 9999)
while time.monotonic() < end:
    for _ in range(1000):
        try:
            s.sendto(payload, dst)
        except OSError:
            pass
EOF
}

echo "## A. Daemon CPU under foreign traffic ($seconds s per run; the daemon and its nft -i session)"
echo
echo "| traffic | packets/s at the host | daemon CPU (% of a core) | above idle, per 100,000 packets/s |"
echo "|---|---|---|---|"
idle=
for target in none 198.18.0.1 198.18.0.10 none; do
  t0=$(ticks); r0=$(rx); s0=$(date +%s.%N)
  if [ "$target" = none ]; then sleep "$seconds"; else flood "$target" "$seconds"; fi
  t1=$(ticks); r1=$(rx); s1=$(date +%s.%N)
  line=$(awk -v t="$((t1 - t0))" -v r="$((r1 - r0))" -v s0="$s0" -v s1="$s1" -v hz="$hz" -v name="$target" -v idle="$idle" 'BEGIN {
    el = s1 - s0; pps = r / el; cpu = 100 * t / hz / el;
    per = (pps > 1000 && idle != "") ? sprintf("%.2f%% of a core", (cpu - idle) / (pps / 100000)) : "-";
    label = (name == "none") ? "none (heartbeats and leases only)" : ((name == "198.18.0.10") ? "UDP to the VIP, port 9999 (no rule)" : "UDP to the host own address");
    printf "%.3f| %s | %d | %.2f | %s |\n", cpu, label, pps, cpu, per }')
  [ -z "$idle" ] && idle=${line%%|*}
  echo "|${line#*|}"
done
echo

echo "## B. wrk on the host's own address, daemon running against paused; C. the VIP"
echo
runs_on=() runs_off=() runs_vip=()
for i in $(seq "$rounds"); do
  for state in on off vip; do
    [ "$state" = off ] && kill -STOP "$daemon"
    target=198.18.0.1
    [ "$state" = vip ] && target=198.18.0.10
    out=$(ip netns exec "$c" wrk -t2 -c32 -d"${seconds}s" "http://$target/" 2>&1)
    [ "$state" = off ] && kill -CONT "$daemon"
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    case $state in
      on) runs_on+=("$rps") ;;
      off) runs_off+=("$rps") ;;
      vip) runs_vip+=("$rps") ;;
    esac
    # Let a resumed daemon settle (it re-checks its view) before the next run.
    [ "$state" = off ] && for _ in $(seq 50); do
      "$nlb" query --json --socket "$dir/h1.sock" 2>/dev/null | grep -q '"state":"converged"' && break
      sleep 0.1
    done
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m_on=$(median "${runs_on[@]}"); m_off=$(median "${runs_off[@]}"); m_vip=$(median "${runs_vip[@]}")
echo "| path | runs (req/s) | median |"
echo "|---|---|---|"
echo "| own address, daemon running | ${runs_on[*]} | $m_on |"
echo "| own address, daemon paused (SIGSTOP): bare | ${runs_off[*]} | $m_off |"
echo "| the VIP of the 1-host cluster | ${runs_vip[*]} | $m_vip |"
echo
awk -v a="$m_on" -v b="$m_off" 'BEGIN { printf "own address, running / paused: **%.3f**\n", a / b }'
awk -v a="$m_vip" -v b="$m_off" 'BEGIN { printf "VIP / bare direct: **%.3f**\n", a / b }'
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); peer_down events: $(grep -c nlb.peer_down "$dir/h1.log" || true)"

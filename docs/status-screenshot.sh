#!/usr/bin/env bash
# Screenshots of the live status page (docs/status-page.png, and a phone-sized
# docs/status-page-phone.png) at a moment when a host's health check is down: runs
# `nlb lab --keep` (as root: it builds network namespaces, 198.18.0.0/24 only), kills host
# 1's web server, opens http://127.0.0.1:9102/ in headless Chromium inside host 1's
# namespace (Debian: apt-get install chromium), then removes the lab.
#   sudo docs/status-screenshot.sh [NLB-BINARY]     (default target/debug/nlb)
set -euo pipefail
cd "$(dirname "$0")/.."
# Namespaces are built under the machine's lab lock, held until they are gone.
if [ -z "${NLB_NETNS_LOCKED:-}" ]; then
  NLB_NETNS_LOCKED=1 exec flock /tmp/nlb-netns.lock "$0" "$@"
fi
nlb=${1:-target/debug/nlb}
wide=docs/status-page.png
phone=docs/status-page-phone.png
log=$(mktemp)
profile=$(mktemp -d)
pids=""
namespaces=""
labdir=""
cleanup() {
  # Only what this lab started: the pids and namespaces it printed.
  for pid in $pids; do kill "$pid" 2>/dev/null || true; done
  sleep 0.5
  for ns in $namespaces; do ip netns del "$ns" 2>/dev/null || true; done
  [ -z "$labdir" ] || rm -rf "$labdir"
  rm -rf "$log" "$profile"
}
trap cleanup EXIT

"$nlb" lab --keep > "$log"
remove=$(grep '^to remove it:' "$log")
pids=$(sed -E 's/^to remove it: sudo kill ([0-9 ]+);.*/\1/' <<<"$remove")
namespaces=$(sed -E 's/.*for ns in (.*); do .*/\1/' <<<"$remove")
host1=$(tr ' ' '\n' <<<"$namespaces" | grep -- '-h1$')
socket=$(grep -om1 '/[^ ]*/h1\.sock' "$log")
labdir=$(dirname "$socket")

# Host 1's web server: the lab's serve-http process in host 1's namespace.
server=""
for pid in $pids; do
  if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q serve-http \
    && [ "$(ip netns identify "$pid")" = "$host1" ]; then
    server=$pid
  fi
done
[ -n "$server" ] || { echo "no serve-http in $host1" >&2; exit 1; }
kill -9 "$server"
# fall 2 x interval 200 ms, then the buckets move; a little more for the events.
sleep 2
"$nlb" query --socket "$socket" | grep '^check '

shoot() { # OUT WIDTH,HEIGHT
  # Flags as for any headless Chromium on a closed network: no background fetches.
  # Niced, so that the daemons (heartbeats every 10 ms) keep the CPU while it starts.
  ip netns exec "$host1" nice -n 19 chromium --headless --no-sandbox --disable-gpu --disable-quic \
    --no-first-run --disable-background-networking --disable-component-update \
    --disable-sync --hide-scrollbars --user-data-dir="$profile" --window-size="$2" \
    --virtual-time-budget=3000 --screenshot="$(realpath "$1")" \
    http://127.0.0.1:9102/ 2>/dev/null
  echo "wrote $1"
}
shoot "$wide" 1200,1480
shoot "$phone" 400,1900

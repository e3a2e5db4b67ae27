#!/usr/bin/env bash
# Renders the doctor's HTML report for a capture in headless Chromium and saves a
# screenshot, to check the page by eye (Debian: apt-get install chromium).
#   docs/doctor-screenshot.sh [CAPTURE] [OUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
capture=${1:-../shared/captures/arp-oobr.pcap}
out=${2:-docs/doctor-report.png}
html=$(mktemp --suffix=.html)
profile=$(mktemp -d)
trap 'rm -rf "$html" "$profile"' EXIT
cargo run -q -p nlb -- doctor "$capture" --html "$html" > /dev/null
# Flags as for any headless Chromium on a closed network: no background fetches.
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size=1200,900 --screenshot="$(realpath "$out")" \
  "file://$html" 2>/dev/null
echo "wrote $out"

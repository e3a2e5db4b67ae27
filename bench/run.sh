#!/usr/bin/env bash
# Every benchmark of the repository, in one command (as root; about 17 minutes on a
# 2-core machine):
#
#   sudo bench/run.sh                      # all scenarios, tables on stdout
#   sudo bench/run.sh --quick              # a smoke test of everything (a few minutes)
#   sudo bench/run.sh --trials 20 ...      # extra arguments go to `nlb-bench all`
#   sudo bench/run.sh --health-trials 9    # (e.g. more trials of the dead-service scenario)
#
# 1. installs what is missing (keepalived, wrk, tshark, curl, nftables, iproute2) with apt-get,
#    and makes sure no system keepalived was started by the installation;
# 2. builds nlb and nlb-bench in release mode (SKIP_BUILD=1 skips it, for a root
#    without cargo: build first as your user);
# 3. runs `nlb-bench all --json bench/results/latest.json`: failover and planned changes
#    against keepalived, the data path with wrk, the bucket map's balance, and a dead
#    service (nlb's health checks against keepalived's track_script), each in
#    network namespaces it builds and deletes (198.18.0.0/24 only, nothing on the
#    host's own interfaces); the Markdown goes to bench/results/latest.md as well;
# 4. runs bench/doctor.sh and bench/micro.sh if they exist.
#
# keepalived only ever runs inside those namespaces, in the foreground, with its own
# configuration and pid files in a temporary directory; the system service is not used.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/run.sh builds network namespaces and installs packages: run it as root (sudo bench/run.sh)" >&2
  exit 1
fi

# --- 1. packages -------------------------------------------------------------------------
need=()
command -v keepalived >/dev/null 2>&1 || need+=(keepalived)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing ${need[*]} and no apt-get to install them: install them by hand" >&2
    exit 1
  fi
  before=$(pgrep -x keepalived || true)
  echo "== installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  # A package's postinst may start the system keepalived. Stop it only if the
  # installation started it and it has no configuration (so it serves nothing).
  for pid in $(pgrep -x keepalived || true); do
    if ! grep -qx "$pid" <<<"$before"; then
      if [ ! -s /etc/keepalived/keepalived.conf ]; then
        echo "== stopping the system keepalived (pid $pid) the installation started without a configuration" >&2
        kill "$pid" 2>/dev/null || true
      else
        echo "warning: a system keepalived (pid $pid) is running with /etc/keepalived/keepalived.conf;" \
             "the benchmark does not touch it (its own keepalived runs in namespaces)" >&2
      fi
    fi
  done
fi

# --- 2. build ----------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is not on root's PATH: build as your user with" \
         "\`cargo build --release -p nlb -p nlb-bench\`, then run SKIP_BUILD=1 sudo -E bench/run.sh" >&2
    exit 1
  fi
  echo "== cargo build --release -p nlb -p nlb-bench" >&2
  cargo build --release --locked -p nlb -p nlb-bench
fi
for binary in target/release/nlb target/release/nlb-bench; do
  if [ ! -x "$binary" ]; then
    echo "$binary is missing: run \`cargo build --release -p nlb -p nlb-bench\`" >&2
    exit 1
  fi
done

# --- 3. the network scenarios --------------------------------------------------------------
mkdir -p bench/results
failed=()
echo "== nlb-bench all $* ($(uptime))" >&2
if ! target/release/nlb-bench all --json bench/results/latest.json "$@" | tee bench/results/latest.md; then
  failed+=("nlb-bench")
fi

# --- 4. the other benchmarks ---------------------------------------------------------------
for script in bench/doctor.sh bench/micro.sh; do
  if [ -f "$script" ]; then
    echo "== $script" >&2
    bash "$script" || failed+=("$script")
  fi
done

echo "== done in $(( $(date +%s) - started )) s; $(uptime)" >&2
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi

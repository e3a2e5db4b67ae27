# r15 lab: r15-sw (bridge br0) + hosts r15-h1, r15-h2, client r15-c1. Sourced by experiments.
set -u
NS="r15-sw r15-h1 r15-h2 r15-c1"
r15_cleanup() {
  for p in ${CAPS:-} $(jobs -p); do kill "$p" 2>/dev/null; done
  for n in $NS; do ip netns del "$n" 2>/dev/null; done
}
trap r15_cleanup EXIT INT TERM
r15_up() {   # $1 = mcast_snooping (0/1)
  local snoop=${1:-0}
  r15_cleanup
  for n in $NS; do ip netns add "$n"; ip -n "$n" link set lo up; done
  ip -n r15-sw link add br0 type bridge mcast_snooping "$snoop"
  ip -n r15-sw link set br0 up
  local i=1
  for h in h1 h2 c1; do
    ip -n r15-sw link add "p-$h" type veth peer name eth0 netns "r15-$h"
    ip -n r15-sw link set "p-$h" master br0 up
    case $h in h1) mac=02:00:00:00:00:01; a=2001:db8::1;; h2) mac=02:00:00:00:00:02; a=2001:db8::2;; c1) mac=02:00:00:00:01:00; a=2001:db8::100;; esac
    ip netns exec "r15-$h" sysctl -qw net.ipv6.conf.eth0.accept_ra=0
    ip -n "r15-$h" link set eth0 address $mac
    ip -n "r15-$h" link set eth0 up
    ip -n "r15-$h" addr add $a/64 dev eth0 nodad
  done
  sleep 2.5   # link-local DAD
}
h1() { ip netns exec r15-h1 "$@"; }
h2() { ip netns exec r15-h2 "$@"; }
c1() { ip netns exec r15-c1 "$@"; }
# tcpdump in a namespace, background; $1 ns, $2 file, rest filter
CAPS=""
cap() { local n=$1 f=$2; shift 2; ip netns exec "$n" tcpdump -i eth0 -nn -e -vv -l -U "$@" >"$f" 2>/dev/null & CAPS="$CAPS $!"; sleep 0.7; }
stopcap() { sleep 0.3; for p in $CAPS; do kill $p 2>/dev/null; done; for p in $CAPS; do wait $p 2>/dev/null; done; CAPS=""; }

#!/bin/bash
. /tmp/r15/lib.sh
VIP=2001:db8::10
sw() { ip netns exec r15-sw "$@"; }
r15_up 1
for n in r15-h1 r15-h2; do ip netns exec $n tcpdump -i eth0 -nn -e -l -U 'udp or (ip6 and ip6[6]==0)' > /tmp/r15/$n.c 2>/dev/null & CAPS="$CAPS $!"; done
ip netns exec r15-sw tcpdump -i p-c1 -nn -l -U 'ip6 and ip6[6]==0' > /tmp/r15/sw.c 2>/dev/null & CAPS="$CAPS $!"
sleep 0.7; sleep ${PRE:-0}
T0=$(date +%s.%N)
echo "querier on at $(date +%T.%N | cut -c1-12)"
sw ip link set br0 type bridge mcast_querier 1 mcast_mld_version 2 mcast_query_interval 300 mcast_query_response_interval 100
h1 python3 /tmp/r15/join.py eth0 60 ff15::bf:10 >/dev/null & J=$!
for k in $(seq 0 24); do
  c1 python3 /tmp/r15/udp6.py eth0 02:00:00:00:01:00 33:33:00:bf:00:10 2001:db8::100 $VIP $((3000+k))
  c1 python3 /tmp/r15/udp6.py eth0 02:00:00:00:01:00 03:bf:00:00:00:10 2001:db8::100 $VIP $((4000+k))
  c1 python3 /tmp/r15/udp6.py eth0 02:00:00:00:01:00 33:33:00:bf:00:99 2001:db8::100 ff15::bf:99 $((5000+k))
  c1 python3 /tmp/r15/udp6.py eth0 02:00:00:00:01:00 33:33:00:bf:00:10 2001:db8::100 ff15::bf:10 $((6000+k))
  sleep 0.4
done
stopcap; kill $J
for n in r15-h1 r15-h2; do echo "--- $n"; grep -oE "^[0-9:.]{12}|2001:db8::100\.[0-9]+ > [^ ]+|listener query|listener report" /tmp/r15/$n.c | paste -sd' ' | sed 's/ \([0-9][0-9]:\)/\n\1/g' | sed 's/2001:db8::100\.//' ; done > /tmp/r15/exp4c.tl
echo "--- queries seen on the wire (sw p-c1):"; grep -E "query" /tmp/r15/sw.c | head -5

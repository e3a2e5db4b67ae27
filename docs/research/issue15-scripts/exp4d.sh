#!/bin/bash
. /tmp/r15/lib.sh
VIP=2001:db8::10
sw() { ip netns exec r15-sw "$@"; }
r15_up 1
sleep 2
sw ip -6 addr show dev br0 | grep inet6
for n in r15-h1 r15-h2; do ip netns exec $n tcpdump -i eth0 -nn -e -l -U 'udp' > /tmp/r15/$n.d 2>/dev/null & CAPS="$CAPS $!"; done
ip netns exec r15-sw tcpdump -i br0 -nn -l -U 'ip6 and ip6[6]==0 and ip6[48]==130' > /tmp/r15/sw.d 2>/dev/null & CAPS="$CAPS $!"
sleep 0.7
sw ip link set br0 type bridge mcast_querier 1 mcast_mld_version 2 mcast_query_interval 300 mcast_query_response_interval 100
h1 python3 /tmp/r15/join.py eth0 60 ff15::bf:10 >/dev/null & J=$!
sleep 10
phase() { # $1 = phase number; sends sport P01 (33:33 VIP), P02 (03:bf VIP), P03 (02:bf VIP), P04 (33:33 group)
  echo "phase $1: $2"
  c1 python3 /tmp/r15/udp6.py eth0 02:00:00:00:01:00 33:33:00:bf:00:10 2001:db8::100 $VIP ${1}01
  c1 python3 /tmp/r15/udp6.py eth0 02:00:00:00:01:00 03:bf:00:00:00:10 2001:db8::100 $VIP ${1}02
  c1 python3 /tmp/r15/udp6.py eth0 02:00:00:00:01:00 02:bf:00:00:00:10 2001:db8::100 $VIP ${1}03
  c1 python3 /tmp/r15/udp6.py eth0 02:00:00:00:01:00 33:33:00:bf:00:10 2001:db8::100 ff15::bf:10 ${1}04
  sleep 0.3
}
phase 1 "querier active, no extra config"
sw bridge mdb add dev br0 port p-h1 grp $VIP permanent && sw bridge mdb show | grep "grp $VIP"
phase 2 "static mdb entry grp=VIP on p-h1"
sw bridge mdb del dev br0 port p-h1 grp $VIP
sw bridge mdb add dev br0 port p-h1 grp 33:33:00:bf:00:10 permanent; sw bridge mdb add dev br0 port p-h1 grp 03:bf:00:00:00:10 permanent
phase 3 "static L2 mdb entries 33:33:00:bf:00:10, 03:bf:00:00:00:10 on p-h1"
sw bridge mdb del dev br0 port p-h1 grp 33:33:00:bf:00:10; sw bridge mdb del dev br0 port p-h1 grp 03:bf:00:00:00:10
sw bridge link set dev p-h1 mcast_router 2
phase 4 "p-h1 mcast_router 2 (permanent router port)"
sw bridge link set dev p-h1 mcast_router 1
sw ip link set br0 type bridge mcast_querier 0
sleep 4
phase 5 "mcast_querier 0, no other querier (after timers)"
sw ip link set br0 type bridge mcast_snooping 0
phase 6 "mcast_snooping 0"
stopcap; kill $J
echo "--- MLD queries seen on br0:"; cut -c1-15 /tmp/r15/sw.d | head -3
for n in r15-h1 r15-h2; do echo "$n got sports: $(grep -oE '2001:db8::100\.[0-9]+' /tmp/r15/$n.d | sed 's/.*\.//' | tr '\n' ' ')"; done

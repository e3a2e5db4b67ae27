#!/bin/bash
. /tmp/r15/lib.sh
VIP=2001:db8::10
sw() { ip netns exec r15-sw "$@"; }
send3() {
  for n in r15-h1 r15-h2; do ip netns exec $n tcpdump -i eth0 -nn -e -l -U udp > /tmp/r15/$n.udp 2>/dev/null & CAPS="$CAPS $!"; done; sleep 0.7
  c1 python3 /tmp/r15/udp6.py eth0 02:00:00:00:01:00 33:33:00:bf:00:10 2001:db8::100 $VIP 2001
  c1 python3 /tmp/r15/udp6.py eth0 02:00:00:00:01:00 03:bf:00:00:00:10 2001:db8::100 $VIP 2002
  c1 python3 /tmp/r15/udp6.py eth0 02:00:00:00:01:00 02:bf:00:00:00:10 2001:db8::100 $VIP 2003
  stopcap
  for n in r15-h1 r15-h2; do echo "  $n got sports: $(grep -oE '2001:db8::100\.[0-9]+ > [^ ]+' /tmp/r15/$n.udp | sed 's/2001:db8::100\.//' | tr '\n' ';')"; done
}
r15_up 1
sw ip link set br0 type bridge mcast_querier 1 mcast_mld_version 2 mcast_query_interval 300 mcast_query_response_interval 100
h1 python3 /tmp/r15/join.py eth0 60 ff15::bf:10 & J=$!
sleep 5
echo "=== snooping 1 + querier, h1 joined ff15::bf:10; frames with IP dst = VIP to 33:33:00:bf:00:10 (2001), 03:bf:00:00:00:10 (2002), 02:bf:00:00:00:10 (2003)"
send3
echo "=== static mdb entry keyed on the VIP?"; sw bridge mdb add dev br0 port p-h1 grp $VIP permanent; echo rc=$?; sw bridge mdb show | grep -i "db8::10 " ; send3; sw bridge mdb del dev br0 port p-h1 grp $VIP
echo "=== static L2 mdb entry 33:33:00:bf:00:10 for p-h1"; sw bridge mdb add dev br0 port p-h1 grp 33:33:00:bf:00:10 permanent; echo rc=$?; sw bridge mdb show | grep -i 33:33
send3
echo "=== bridge link set dev p-h1 mcast_router 2 (and p-h2)"
sw bridge link set dev p-h1 mcast_router 2; sw bridge link set dev p-h2 mcast_router 2
sw bridge -d link show | grep -oE "^[0-9]+: p-h[12]|mcast_router [0-9]" | tr '\n' ' '; echo
send3
sw bridge link set dev p-h1 mcast_router 1; sw bridge link set dev p-h2 mcast_router 1
echo "=== mcast_snooping 0"
sw ip link set br0 type bridge mcast_snooping 0
send3
kill $J

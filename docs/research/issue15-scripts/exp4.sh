#!/bin/bash
. /tmp/r15/lib.sh
VIP=2001:db8::10; G=ff15::bf:10; GMAC=33:33:00:bf:00:10
sw() { ip netns exec r15-sw "$@"; }
r15_up 1
sw ip link set br0 type bridge mcast_snooping 1 mcast_querier 1 mcast_mld_version 2 mcast_query_interval 300 mcast_query_response_interval 100
sleep 2.5
sw ip -d link show br0 | grep -oE "mcast_(snooping|querier|mld_version|query_interval|query_response_interval) [0-9]+" | tr '\n' ' '; echo
echo "=== 4.1 h1 joins $G on eth0 with IPV6_JOIN_GROUP (UDP socket); capture MLD on h1"
ip netns exec r15-h1 tcpdump -i eth0 -nn -e -vv -l -U 'ip6 and ip6[6]==0' > /tmp/r15/h1mld.txt 2>/dev/null & CAPS="$!"; sleep 0.7
h1 python3 /tmp/r15/join.py eth0 40 $G & J1=$!
sleep 5
stopcap
grep -v "^\s*$" /tmp/r15/h1mld.txt | head -30
echo "--- h1 ip -6 maddr show dev eth0:"; h1 ip -6 maddr show dev eth0
echo "--- bridge -d mdb show:"; sw bridge -d mdb show
echo "=== 4.2 h2: ip maddr add $GMAC (link layer only)"
h2 ip maddr add $GMAC dev eth0; h2 ip maddr show dev eth0 | grep link
sleep 4; echo "--- bridge -d mdb show:"; sw bridge -d mdb show
h2 ip maddr del $GMAC dev eth0
echo "=== 4.3 h2: ip -6 addr add $G/128 dev eth0 autojoin"
h2 ip -6 addr add $G/128 dev eth0 autojoin; echo rc=$?
sleep 2; h2 ip -6 maddr show dev eth0 | grep -i "bf:10\|ff15"; echo "--- bridge -d mdb show:"; sw bridge -d mdb show
h2 ip -6 addr del $G/128 dev eth0
sleep 1
echo "=== 4.4 delivery: c1 sends UDP frames to $GMAC; who receives? (h1 joined, h2 not)"
for n in r15-h1 r15-h2; do ip netns exec $n tcpdump -i eth0 -nn -e -l -U udp > /tmp/r15/$n.udp 2>/dev/null & CAPS="$CAPS $!"; done; sleep 0.7
c1 python3 /tmp/r15/udp6.py eth0 02:00:00:00:01:00 $GMAC 2001:db8::100 $G 1001
c1 python3 /tmp/r15/udp6.py eth0 02:00:00:00:01:00 $GMAC 2001:db8::100 $VIP 1002
c1 python3 /tmp/r15/udp6.py eth0 02:00:00:00:01:00 33:33:00:bf:00:99 2001:db8::100 ff15::bf:99 1003
stopcap
for n in r15-h1 r15-h2; do echo "--- $n got:"; sed 's/^/  /' /tmp/r15/$n.udp; done
echo "=== 4.5 solicited-node group of the VIP joined on eth0 (VIP kept on lo)"
h1 ip -6 addr add $VIP/128 dev lo
h1 python3 /tmp/r15/join.py eth0 20 ff02::1:ff00:10 & J2=$!
sleep 3; echo "--- bridge -d mdb show:"; sw bridge -d mdb show; h1 ip -6 maddr show dev eth0
for n in r15-h1 r15-h2; do ip netns exec $n tcpdump -i eth0 -nn -e -l -U icmp6 and 'ip6[40]==135' > /tmp/r15/$n.ns 2>/dev/null & CAPS="$CAPS $!"; done; sleep 0.7
c1 ping -6 -c1 -W1 $VIP >/dev/null
stopcap
for n in r15-h1 r15-h2; do echo "--- $n got NS:"; sed 's/^/  /' /tmp/r15/$n.ns; done
echo "=== 4.6 after the socket closes"
kill $J1 $J2; wait $J1 $J2 2>/dev/null; sleep 2; sw bridge -d mdb show

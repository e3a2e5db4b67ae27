#!/bin/bash
# IPv4 counterpart of exp4c: IGMP querier on, h1 joined 239.255.0.10; frames to VIP 198.18.0.10 via multicast MACs
. /tmp/r15/lib.sh
sw() { ip netns exec r15-sw "$@"; }
r15_up 1
h1 ip addr add 198.18.0.1/24 dev eth0; h2 ip addr add 198.18.0.2/24 dev eth0; c1 ip addr add 198.18.0.100/24 dev eth0
for n in r15-h1 r15-h2; do ip netns exec $n tcpdump -i eth0 -nn -e -l -U 'udp' > /tmp/r15/$n.c 2>/dev/null & CAPS="$CAPS $!"; done
sleep 0.7
sw ip link set br0 type bridge mcast_querier 1 mcast_igmp_version 2 mcast_query_interval 300 mcast_query_response_interval 100
h1 python3 -c "
import socket,struct,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP,socket.IP_ADD_MEMBERSHIP,socket.inet_aton('239.255.0.10')+socket.inet_aton('198.18.0.1')); time.sleep(40)" & J=$!
for k in $(seq 0 24); do
  c1 python3 /tmp/r15/udp4.py eth0 02:00:00:00:01:00 01:00:5e:7f:00:0a 198.18.0.100 198.18.0.10 $((3000+k))
  c1 python3 /tmp/r15/udp4.py eth0 02:00:00:00:01:00 03:bf:c6:12:00:0a 198.18.0.100 198.18.0.10 $((4000+k))
  c1 python3 /tmp/r15/udp4.py eth0 02:00:00:00:01:00 01:00:5e:7f:00:99 198.18.0.100 239.255.0.153 $((5000+k))
  c1 python3 /tmp/r15/udp4.py eth0 02:00:00:00:01:00 01:00:5e:7f:00:0a 198.18.0.100 239.255.0.10 $((6000+k))
  sleep 0.4
done
sw bridge -d mdb show | grep 239
sw bridge mdb add dev br0 port p-h1 grp 198.18.0.10 permanent; echo "static mdb grp VIP rc=$?"; sw bridge mdb show | grep 198.18
for k in 1 2 3; do
  c1 python3 /tmp/r15/udp4.py eth0 02:00:00:00:01:00 01:00:5e:7f:00:0a 198.18.0.100 198.18.0.10 $((7000+k))
  c1 python3 /tmp/r15/udp4.py eth0 02:00:00:00:01:00 03:bf:c6:12:00:0a 198.18.0.100 198.18.0.10 $((8000+k))
done
stopcap; kill $J

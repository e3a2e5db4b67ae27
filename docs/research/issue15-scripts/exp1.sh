#!/bin/bash
. /tmp/r15/lib.sh
VIP=2001:db8::10
H1MAC=02:00:00:00:00:01; C1MAC=02:00:00:00:01:00
probe() {  # label
  echo "=== $1"
  c1 ip -6 neigh flush dev eth0
  cap r15-c1 /tmp/r15/c1.txt icmp6
  cap r15-h1 /tmp/r15/h1.txt icmp6
  echo "--- multicast NS (ping from c1)"; c1 ping -6 -c1 -W1 $VIP | grep -E "bytes from|received"
  echo "--- c1 neigh:"; c1 ip -6 neigh show $VIP
  c1 ip -6 neigh flush dev eth0
  echo "--- unicast NS (NUD form) to h1's MAC, crafted"
  c1 python3 /tmp/r15/ndp.py eth0 $C1MAC $H1MAC 2001:db8::100 $VIP $VIP $C1MAC
  sleep 1
  stopcap
  echo "--- tcpdump on c1:"; grep -v "^\s*$" /tmp/r15/c1.txt | sed 's/^/  /'
}
r15_up 0
h1 ip -6 addr add $VIP/128 dev eth0 nodad
h1 ip -6 addr show dev eth0 | grep inet6
probe "1.0 VIP on eth0 (nodad), no filter"

h1 nft -f - <<'NFT'
table ip6 r15 { chain out { type filter hook output priority 0; policy accept;
  icmpv6 type nd-neighbor-advert @th,64,128 0x20010db8000000000000000000000010 counter drop
} }
NFT
probe "1.b VIP on eth0 + nft ip6 output drop NA with target=VIP"
h1 nft list ruleset
h1 nft delete table ip6 r15

h1 nft -f - <<'NFT'
table netdev r15 { chain eg { type filter hook egress device "eth0" priority 0; policy accept;
  icmpv6 type nd-neighbor-advert @th,64,128 0x20010db8000000000000000000000010 counter drop
} }
NFT
echo "netdev egress load rc=$?"
probe "1.b' VIP on eth0 + nft netdev egress drop NA target=VIP"
h1 nft list ruleset
h1 nft delete table netdev r15

h1 ip -6 addr del $VIP/128 dev eth0
h1 ip -6 addr add $VIP/128 dev lo
h1 ip -6 addr show dev lo | grep inet6
probe "1.a VIP on lo"
echo "--- h1 routes for VIP:"; h1 ip -6 route get $VIP; h1 ip -6 route show table local | grep -E "db8"
echo "--- h1 maddr eth0 / lo:"; h1 ip -6 maddr show dev eth0; h1 ip -6 maddr show dev lo

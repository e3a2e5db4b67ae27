#!/bin/bash
. /tmp/r15/lib.sh
VIP=2001:db8::10; CMAC=02:bf:00:00:00:10
out() { # label
  echo "=== $1"
  h1 ip -6 neigh flush dev eth0; c1 ip -6 neigh flush dev eth0
  cap r15-c1 /tmp/r15/c1.txt icmp6 and 'ip6[40]==135'
  h1 python3 /tmp/r15/cli2.py 2001:db8::100 9000 $VIP
  stopcap
  grep -v "^\s*$" /tmp/r15/c1.txt | head -4 | sed 's/^/  /'
  echo "--- c1 neigh:"; c1 ip -6 neigh show | sed 's/^/  /'
}
r15_up 0
c1 python3 /tmp/r15/srv.py 2001:db8::100 9000 & SRV=$!
h1 ip -6 addr add $VIP/128 dev eth0 nodad
out "2.0 VIP on eth0, outbound from VIP"
h1 ip -6 route replace 2001:db8::/64 dev eth0 src 2001:db8::1
h1 ip -6 route show dev eth0 | grep 2001
out "2.1 VIP on eth0 + route src 2001:db8::1"
h1 ip -6 route replace 2001:db8::/64 dev eth0 proto kernel metric 256
h1 nft -f - <<'NFT'
table ip6 r15 {
  chain out { type filter hook output priority 0; policy accept;
    icmpv6 type nd-neighbor-solicit ip6 saddr 2001:db8::10 @th,192,16 0x0101 @th,208,48 set 0x02bf00000010 counter
  }
}
NFT
echo "load rc=$?"
out "2.2 VIP on eth0 + nft ip6 output: SLLA of NS from VIP set to cluster MAC"
h1 nft list ruleset; h1 nft delete table ip6 r15
h1 nft -f - <<'NFT'
table ip6 r15 {
  chain out { type filter hook output priority 0; policy accept;
    icmpv6 type nd-neighbor-solicit ip6 saddr 2001:db8::10 ip6 saddr set 2001:db8::1 counter
  }
}
NFT
echo "load rc=$?"
out "2.3 VIP on eth0 + nft ip6 output: source of NS from VIP set to 2001:db8::1"
h1 nft list ruleset; h1 nft delete table ip6 r15
h1 ip -6 addr del $VIP/128 dev eth0; h1 ip -6 addr add $VIP/128 dev lo
out "2.4 VIP on lo, outbound from VIP"
c1 ip -6 neigh replace $VIP lladdr 02:00:00:00:00:01 dev eth0 nud permanent
out "2.5 VIP on lo, client pinned VIP->h1 MAC (stand-in for the daemon's NA), outbound from VIP"
kill $SRV

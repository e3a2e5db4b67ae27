#!/bin/bash
. /tmp/r15/lib.sh
VIP=2001:db8::10
r15_up 0
c1 python3 /tmp/r15/srv.py 2001:db8::100 9000 & SRV=$!
h1 ip -6 addr add $VIP/128 dev eth0 nodad
# SLLA host MAC 02:00:00:00:00:01 -> cluster MAC 02:bf:00:00:00:10; compensate the ones'-complement sum in the NS Reserved field (receivers MUST ignore it, RFC 4861 4.3)
h1 nft -f - <<'NFT'
table ip6 r15 {
  chain out { type filter hook output priority 0; policy accept;
    icmpv6 type nd-neighbor-solicit ip6 saddr 2001:db8::10 @th,192,16 0x0101 @th,208,48 set 0x02bf00000010 @th,32,16 set 0xff31 counter
  }
}
NFT
echo "load rc=$?"
h1 nft list ruleset | grep counter
cap r15-c1 /tmp/r15/c1.txt icmp6 and 'ip6[40]==135 or ip6[40]==136'
h1 python3 /tmp/r15/cli2.py 2001:db8::100 9000 $VIP
stopcap; grep -v "^\s*$" /tmp/r15/c1.txt | head -8
echo "--- c1 neigh:"; c1 ip -6 neigh show
kill $SRV

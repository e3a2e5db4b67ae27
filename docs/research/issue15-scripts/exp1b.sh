#!/bin/bash
. /tmp/r15/lib.sh
eval "$(sed -n '/^VIP=/,/^}/p' /tmp/r15/exp1.sh)"
r15_up 0
h1 ip -6 addr add $VIP/128 dev eth0 nodad
h1 nft -f - <<'NFT'
table ip6 r15 {
  chain out { type filter hook output priority 0; policy accept;
    icmpv6 type nd-neighbor-advert @th,64,128 0x20010db8000000000000000000000010 counter drop
  }
}
NFT
echo "ip6 output load rc=$?"
probe "1.b VIP on eth0 + nft ip6 output drop NA with target=VIP"
h1 nft list ruleset; h1 nft delete table ip6 r15
h1 nft -f - <<'NFT'
table netdev r15 {
  chain eg { type filter hook egress device "eth0" priority 0; policy accept;
    icmpv6 type nd-neighbor-advert @th,64,128 0x20010db8000000000000000000000010 counter drop
  }
}
NFT
echo "netdev egress load rc=$?"
probe "1.b' VIP on eth0 + nft netdev egress drop NA target=VIP"
h1 nft list ruleset; h1 nft delete table netdev r15
h1 ip -6 addr del $VIP/128 dev eth0
h1 ip -6 addr add $VIP/128 dev lo
echo "=== 1.a VIP on lo: incoming via eth0 (client pins VIP -> h1 MAC)"
c1 ip -6 neigh replace $VIP lladdr $H1MAC dev eth0 nud permanent
h1 python3 /tmp/r15/srv.py $VIP 8080 & SRV=$!
sleep 0.5
c1 ping -6 -c1 -W1 $VIP | grep -E "bytes from|received"
c1 python3 /tmp/r15/cli.py $VIP 8080
kill $SRV
echo "--- sysctls on h1:"; for k in all.proxy_ndp eth0.proxy_ndp all.forwarding lo.accept_dad eth0.accept_dad eth0.ndisc_notify eth0.drop_unsolicited_na all.ndisc_evict_nocarrier; do echo "  $k=$(h1 sysctl -n net.ipv6.conf.$k)"; done

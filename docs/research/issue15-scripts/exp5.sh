#!/bin/bash
. /tmp/r15/lib.sh
VIP=2001:db8::10
r15_up 0
cat > /tmp/r15/jh.nft <<'NFT'
table inet r15 {
  set a   { type ipv6_addr . mark; flags dynamic; }
  set ap  { type ipv6_addr . inet_service . mark; flags dynamic; }
  set n64 { type ipv6_addr . mark; flags dynamic; }
  set raw { type ipv6_addr . mark; flags dynamic; }
  chain pre { type filter hook prerouting priority -150; policy accept;
    ip6 daddr 2001:db8::10 meta mark set jhash ip6 saddr mod 256 seed 0x1 add @a { ip6 saddr . meta mark }
    ip6 daddr 2001:db8::10 meta mark set jhash ip6 saddr . th sport mod 256 seed 0x1 add @ap { ip6 saddr . th sport . meta mark }
    ip6 daddr 2001:db8::10 meta mark set jhash ip6 saddr & ffff:ffff:ffff:ffff:: mod 256 seed 0x1 add @n64 { ip6 saddr . meta mark }
    ip6 daddr 2001:db8::10 meta mark set jhash ip6 saddr mod 4294967291 seed 0x1 add @raw { ip6 saddr . meta mark }
  }
}
NFT
echo "--- nft --debug=netlink -c -f jh.nft (bytecode of the hash rules)"
h1 nft --debug=netlink -f /tmp/r15/jh.nft 2>&1 | grep -E "hash|bitwise|payload load|^inet r15 pre" 
echo "load rc=${PIPESTATUS[0]}"
h1 nft list table inet r15 >/dev/null && echo "loaded"
i=0
for a in 2001:db8::100 2001:db8::101 2001:db8::1:1 2001:db8:1::1 2001:db8:ffff:ffff:ffff:ffff:ffff:ffff 2001:db8::a 2001:db8:0:1::5 2001:db8:0:1::6 2001:db8:abcd:12::34 2001:db8::dead:beef; do
  c1 python3 /tmp/r15/udp6.py eth0 02:00:00:00:01:00 02:00:00:00:00:01 $a $VIP $((1000+i)); i=$((i+1))
done
sleep 0.5
h1 nft -j list table inet r15 > /tmp/r15/jh.json
h1 nft list table inet r15

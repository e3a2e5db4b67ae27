#!/bin/bash
. /tmp/r15/lib.sh
VIP=2001:db8::10
dadtest() { # label: h2 adds VIP with DAD while h1 holds it per recipe
  echo "=== $1"
  cap r15-c1 /tmp/r15/c1.txt icmp6 and '(ip6[40]==135 or ip6[40]==136)'
  h2 ip -6 addr add $VIP/128 dev eth0
  h2 ip -6 addr show dev eth0 | grep $VIP | sed 's/^/  h2 at once:/'
  sleep 2.5
  h2 ip -6 addr show dev eth0 | grep $VIP | sed 's/^/  h2 after 2.5s:/'
  h2 ip -6 route show table local | grep "$VIP " | sed 's/^/  h2 local route:/'
  stopcap; grep -v "^\s*$" /tmp/r15/c1.txt | grep -v 0x0000 | sed 's/^/  /'
  h2 ip -6 addr del $VIP/128 dev eth0
}
r15_up 0
echo "=== 3.0 add with DAD on h1 (no nodad); watch"
cap r15-c1 /tmp/r15/c1.txt icmp6
h1 ip -6 addr add $VIP/128 dev eth0
h1 ip -6 addr show dev eth0 | grep $VIP | sed 's/^/  at once:/'
sleep 2
h1 ip -6 addr show dev eth0 | grep $VIP | sed 's/^/  after 2s:/'
stopcap; grep -v "^\s*$" /tmp/r15/c1.txt | grep -vE "0x0000|router sol|fe80.*ff02::2" | sed 's/^/  /'
h1 ip -6 addr del $VIP/128 dev eth0
echo "=== 3.1 add with nodad on h1; watch"
cap r15-c1 /tmp/r15/c1.txt icmp6
h1 ip -6 addr add $VIP/128 dev eth0 nodad
h1 ip -6 addr show dev eth0 | grep $VIP | sed 's/^/  at once:/'
sleep 1.5
stopcap; grep -v "^\s*$" /tmp/r15/c1.txt | grep -vE "0x0000|router sol|fe80.*ff02::2" | sed 's/^/  /'
dadtest "3.2 h1: VIP on eth0 nodad, no filter; h2 adds VIP with DAD"
echo "--- crafted DAD probe (src ::) from c1 to h1, h1 VIP on eth0"
cap r15-c1 /tmp/r15/c1.txt icmp6 and '(ip6[40]==135 or ip6[40]==136)'
c1 python3 /tmp/r15/ndp.py eth0 02:00:00:00:01:00 33:33:ff:00:00:10 :: ff02::1:ff00:10 $VIP
stopcap; grep -v "^\s*$" /tmp/r15/c1.txt | grep -v 0x0000 | sed 's/^/  /'
h1 nft -f - <<'NFT'
table ip6 r15 {
  chain out { type filter hook output priority 0; policy accept;
    icmpv6 type nd-neighbor-advert @th,64,128 0x20010db8000000000000000000000010 counter drop
  }
}
NFT
dadtest "3.3 h1: VIP on eth0 nodad + nft drop NA target VIP; h2 adds VIP with DAD"
h1 nft delete table ip6 r15
h1 ip -6 addr del $VIP/128 dev eth0
h1 ip -6 addr add $VIP/128 dev lo
h1 ip -6 addr show dev lo | grep $VIP | sed 's/^/  h1 lo (no nodad given) at once:/'
dadtest "3.4 h1: VIP on lo; h2 adds VIP with DAD"
echo "=== 3.5 dadfailed on h2 (h1 VIP back on eth0, unfiltered); is the dadfailed address usable?"
h1 ip -6 addr del $VIP/128 dev lo; h1 ip -6 addr add $VIP/128 dev eth0 nodad
h2 ip -6 addr add $VIP/128 dev eth0; sleep 2.5
h2 ip -6 addr show dev eth0 | grep $VIP
h2 ip -6 route show table local | grep "$VIP" || echo "  no local route for VIP on h2"
h2 python3 -c "import socket; s=socket.socket(socket.AF_INET6); s.bind(('$VIP',80)); print('bind ok')" 2>&1 | tail -1
echo "--- dmesg lines:"; dmesg 2>/dev/null | grep -i "duplicate address" | tail -2
echo "--- re-add with nodad after dadfailed:"; h2 ip -6 addr replace $VIP/128 dev eth0 nodad; h2 ip -6 addr show dev eth0 | grep $VIP
h2 ip -6 addr del $VIP/128 dev eth0; h2 ip -6 addr add $VIP/128 dev eth0 nodad; h2 ip -6 addr show dev eth0 | grep $VIP

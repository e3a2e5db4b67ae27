. /tmp/r16/setup.sh
S=0x1db57edb
H="ip netns exec r16-h"
cat > /tmp/r16/q1c.nft <<NFT
table netdev r16 {
	map owned { type mark : verdict; }
	chain nonowned {
		counter drop
	}
	chain in {
		type filter hook ingress device "r16-vh" priority -500; policy accept;
		ip daddr 198.18.0.10 udp dport 1 meta mark set jhash ip saddr mod 256 seed $S
		ip daddr 198.18.0.10 udp dport 2 meta mark set jhash ip saddr . th sport mod 256 seed $S
		ip daddr 198.18.0.10 udp dport 3 meta mark set jhash ip saddr & 255.255.255.0 mod 256 seed $S
		ip daddr 198.18.0.10 meta mark vmap @owned
		ip daddr 198.18.0.10 meta mark set 0 counter
	}
}
NFT
$H nft -f /tmp/r16/q1c.nft || exit 1
even=$(seq -s, 0 2 254); low="0-127"; rnd=$(python3 -c "import random; random.seed(16); print(','.join(map(str,sorted(random.sample(range(256),128)))))")
for name in even low rnd; do
  A=${!name}
  velems=$(python3 -c "
import sys
a=sys.argv[1]; s=set()
for p in a.split(','):
    if '-' in p: x,y=map(int,p.split('-')); s.update(range(x,y+1))
    else: s.add(int(p))
print(', '.join('%d : jump nonowned'%b for b in sorted(s)))" "$A")
  $H nft -f - <<NFT
flush map netdev r16 owned
add element netdev r16 owned { $velems }
table inet r16c {}
delete table inet r16c
table inet r16c {
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		ip daddr 198.18.0.10 udp dport 1 jhash ip saddr mod 256 seed $S { $A } counter comment "k1 mismatch"
		ip daddr 198.18.0.10 udp dport 1 counter comment "k1 passed"
		ip daddr 198.18.0.10 udp dport 2 jhash ip saddr . th sport mod 256 seed $S { $A } counter comment "k2 mismatch"
		ip daddr 198.18.0.10 udp dport 2 counter comment "k2 passed"
		ip daddr 198.18.0.10 udp dport 3 jhash ip saddr & 255.255.255.0 mod 256 seed $S { $A } counter comment "k3 mismatch"
		ip daddr 198.18.0.10 udp dport 3 counter comment "k3 passed"
		ip daddr 198.18.0.10 meta mark != 0 counter comment "mark leaked"
	}
}
NFT
  $H nft reset counters netdev >/dev/null 2>&1; $H nft reset chain netdev r16 nonowned >/dev/null 2>&1
  for d in 1 2 3; do ip netns exec r16-c python3 /tmp/r16/send.py 2000 1 udp $d; done
  echo "--- dropped set $name (128 buckets):"
  $H nft list chain netdev r16 nonowned | grep counter
  $H nft list chain inet r16c pre | grep -o 'counter packets [0-9]* .*comment "[^"]*"' | sed 's/bytes [0-9]* //'
done

. /tmp/r16/setup.sh
S=0x1db57edb
H="ip netns exec r16-h"
try() { echo "=== $1"; printf '%s\n' "$2" | $H nft -f - 2>&1 | head -3; echo "rc=${PIPESTATUS[1]}"; }
try "inet: jhash ip saddr & mask, range set { 0-85 }" "table inet x { chain p { type filter hook prerouting priority -150; ip daddr 198.18.0.10 jhash ip saddr & 255.255.255.0 mod 256 seed $S { 0-85 } accept; } }"
try "inet: jhash ip saddr & mask, single elements { 1, 5 }" "table inet x { chain p { type filter hook prerouting priority -150; ip daddr 198.18.0.10 jhash ip saddr & 255.255.255.0 mod 256 seed $S { 1, 5 } accept; } }"
try "inet: jhash ip saddr & mask, one range 0-85 no braces" "table inet x { chain p { type filter hook prerouting priority -150; ip daddr 198.18.0.10 jhash ip saddr & 255.255.255.0 mod 256 seed $S 0-85 accept; } }"
try "inet: jhash ip saddr range set { 0-85 } (control)" "table inet x { chain p { type filter hook prerouting priority -150; ip daddr 198.18.0.10 jhash ip saddr mod 256 seed $S { 0-85 } accept; } }"
try "inet: meta mark set jhash ip saddr & mask; meta mark { 0-85 }" "table inet x { chain p { type filter hook prerouting priority -150; ip daddr 198.18.0.10 meta mark set jhash ip saddr & 255.255.255.0 mod 256 seed $S; ip daddr 198.18.0.10 meta mark { 0-85 } accept; } }"
$H nft delete table inet x 2>/dev/null
# typeof map functional test
cat > /tmp/r16/q1d.nft <<NFT
table netdev r16t {
	map owned { typeof jhash ip saddr mod 256 seed $S : verdict; }
	chain nonowned {
		counter drop
	}
	chain in {
		type filter hook ingress device "r16-vh" priority -500; policy accept;
		ip daddr 198.18.0.10 jhash ip saddr mod 256 seed $S vmap @owned
	}
}
NFT
$H nft -f /tmp/r16/q1d.nft; echo "typeof load rc=$?"
elems=$(seq -s, 0 2 254 | sed 's/,/ : jump nonowned, /g'); $H nft add element netdev r16t owned "{ $elems : jump nonowned }"; echo "add rc=$?"
cat <<NFT | $H nft -f -
table inet r16c {
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		ip daddr 198.18.0.10 jhash ip saddr mod 256 seed $S { $(seq -s, 0 2 254) } counter comment "mismatch"
		ip daddr 198.18.0.10 counter comment "passed"
	}
}
NFT
ip netns exec r16-c python3 /tmp/r16/send.py 2000 1 udp 1
$H nft -j list chain netdev r16t nonowned | grep -o '"packets": [0-9]*'
$H nft list chain inet r16c pre | grep -o 'counter packets [0-9]* .*comment "[^"]*"' | sed 's/bytes [0-9]* //'
echo "--- nft list ruleset with the typeof map present:"; $H nft list ruleset >/dev/null; echo "rc=$?"
echo "--- nft list chain netdev r16t in:"; $H nft list chain netdev r16t in; echo "rc=$?"

. /tmp/r16/setup.sh
try() { echo "=== $1"; printf '%s\n' "$2" | ip netns exec r16-h nft -c -f - 2>&1 | head -4; echo "rc=${PIPESTATUS[1]}"; }
mk() { printf 'table netdev t {\n%s\nchain in {\ntype filter hook ingress device "r16-vh" priority -500; policy accept;\n%s\n}\n}\n' "$1" "$2"; }
S=0x1db57edb
try "A: map type mark:verdict, jhash ip saddr vmap" "$(mk 'map owned { type mark : verdict; }' "ip daddr 198.18.0.10 jhash ip saddr mod 256 seed $S vmap @owned")"
try "B: set type mark, jhash ip saddr != @owned drop" "$(mk 'set owned { type mark; }' "ip daddr 198.18.0.10 jhash ip saddr mod 256 seed $S != @owned drop")"
try "C: map typeof jhash : verdict" "$(mk "map owned { typeof jhash ip saddr mod 256 seed $S : verdict; }" "ip daddr 198.18.0.10 jhash ip saddr mod 256 seed $S vmap @owned")"
try "D: jhash ip saddr . th sport vmap (type mark)" "$(mk 'map owned { type mark : verdict; }' "ip daddr 198.18.0.10 jhash ip saddr . th sport mod 256 seed $S vmap @owned")"
try "E: jhash ip saddr & mask vmap (type mark)" "$(mk 'map owned { type mark : verdict; }' "ip daddr 198.18.0.10 jhash ip saddr & 255.255.255.0 mod 256 seed $S vmap @owned")"
try "F: ct state in netdev" "$(mk '' "ip daddr 198.18.0.10 ct state established accept")"
try "G: ct mark in netdev" "$(mk '' "ip daddr 198.18.0.10 ct mark 1 accept")"
try "H: set type integer" "$(mk 'set owned { type integer; }' "ip daddr 198.18.0.10 jhash ip saddr mod 256 seed $S @owned drop")"
try "I: meta mark set jhash; meta mark vmap" "$(mk 'map owned { type mark : verdict; }' "ip daddr 198.18.0.10 meta mark set jhash ip saddr mod 256 seed $S meta mark vmap @owned")"
try "J: map type mark:verdict flags timeout" "$(mk 'map owned { type mark : verdict; flags timeout; }' "ip daddr 198.18.0.10 jhash ip saddr mod 256 seed $S vmap @owned")"
try "K: anonymous set in netdev" "$(mk '' "ip daddr 198.18.0.10 jhash ip saddr mod 256 seed $S != { 0-85 } drop")"
try "L: map type mark:verdict flags interval" "$(mk 'map owned { type mark : verdict; flags interval; }' "ip daddr 198.18.0.10 jhash ip saddr mod 256 seed $S vmap @owned")"
try "M: th sport in netdev (udp/tcp dependency)" "$(mk '' "ip daddr 198.18.0.10 meta l4proto { tcp, udp } th sport 1 counter")"

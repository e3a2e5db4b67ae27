. /tmp/r16/setup.sh
S=0x1db57edb
H="ip netns exec r16-h"
try() { echo "=== $1"; printf 'table inet x {\nchain p {\ntype filter hook prerouting priority -150;\n%s\n}\n}\n' "$2" | $H nft -c -f - 2>&1 | head -3; echo "rc=${PIPESTATUS[1]}"; }
try "jhash ip saddr & mask, range set { 0-85 }" "ip daddr 198.18.0.10 jhash ip saddr & 255.255.255.0 mod 256 seed $S { 0-85 } accept"
try "jhash ip saddr & mask, single elements { 1, 5 }" "ip daddr 198.18.0.10 jhash ip saddr & 255.255.255.0 mod 256 seed $S { 1, 5 } accept"
try "jhash ip saddr & mask, bare range 0-85" "ip daddr 198.18.0.10 jhash ip saddr & 255.255.255.0 mod 256 seed $S 0-85 accept"
try "jhash ip saddr & mask, mixed { 1, 3-5 }" "ip daddr 198.18.0.10 jhash ip saddr & 255.255.255.0 mod 256 seed $S { 1, 3-5 } accept"
try "control: jhash ip saddr { 0-85 }" "ip daddr 198.18.0.10 jhash ip saddr mod 256 seed $S { 0-85 } accept"
try "control: jhash ip saddr . th sport { 0-85 }" "ip daddr 198.18.0.10 meta l4proto tcp jhash ip saddr . th sport mod 256 seed $S { 0-85 } accept"
try "workaround: meta mark set jhash (mask); meta mark { 0-85 }" "ip daddr 198.18.0.10 meta mark set jhash ip saddr & 255.255.255.0 mod 256 seed $S
ip daddr 198.18.0.10 meta mark { 0-85 } accept"

. /tmp/r16/setup.sh
S=0x1db57edb
H="ip netns exec r16-h"
cat <<NFT | $H nft -f -
table netdev r16 {
	set seen {
		type ipv4_addr . mark
		size 1000
		flags dynamic
	}
	chain in {
		type filter hook ingress device "r16-vh" priority -500; policy accept;
		ip daddr 198.18.0.10 ip frag-off & 0x1fff != 0 counter comment "non-first fragment"
		ip daddr 198.18.0.10 meta mark set jhash ip saddr . th sport mod 256 seed $S offset 1
		ip daddr 198.18.0.10 meta mark 0 counter comment "no hash computed (mark still 0)"
		ip daddr 198.18.0.10 meta mark != 0 counter comment "hashed"
		ip daddr 198.18.0.10 add @seen { ip saddr . meta mark }
		meta mark set 0
	}
}
table inet r16c {
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		ip daddr 198.18.0.10 counter comment "inet -300 (after defrag)"
		ip daddr 198.18.0.10 jhash ip saddr . th sport mod 256 seed $S offset 1 != 0 counter comment "inet hashed"
	}
}
NFT
ip netns exec r16-c python3 /tmp/r16/frag.py
$H nft list ruleset | grep -o 'counter packets [0-9]* .*comment "[^"]*"' | sed 's/bytes [0-9]* //'

$H nft list set netdev r16 seen | tr -s "\t\n " " "; echo

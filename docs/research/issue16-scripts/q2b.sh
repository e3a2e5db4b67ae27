. /tmp/r16/setup.sh
S=0x1db57edb
H="ip netns exec r16-h"
cat <<NFT | $H nft -f -
table netdev r16 {
	set flows {
		type ipv4_addr . inet_service
		size 65536
		flags dynamic,timeout
		timeout 60s
	}
	chain in {
		type filter hook ingress device "r16-vh" priority -500; policy accept;
		ip daddr 198.18.0.10 meta l4proto udp update @flows { ip saddr . th sport }
	}
}
table inet r16 {
	chain pre {
		type filter hook prerouting priority -150; policy accept;
		ip daddr 198.18.0.10 ct state new ct mark set jhash ip saddr . th sport mod 256 seed $S offset 1 counter
	}
}
NFT
ip netns exec r16-c python3 /tmp/r16/send.py 20000 1 udp 9
echo "conntrack entries: $($H conntrack -C)"
echo "flows elements: $($H nft -j list set netdev r16 flows | grep -o '"elem"' | wc -l) (json elem objects)"
t() { local s=$(date +%s%N); eval "$2" >/dev/null 2>&1; local e=$(date +%s%N); echo "$1: $(( (e-s)/1000000 )) ms"; }
for i in 1 2 3; do
t "conntrack -L (all 20k) " "$H conntrack -L"
t "conntrack -L -m 6 (one bucket)" "$H conntrack -L -m 6"
t "nft -j list set flows (20k)" "$H nft -j list set netdev r16 flows"
done
echo "bucket 5 (mark 6) count: $($H conntrack -L -m 6 2>/dev/null | wc -l)"
echo "top marks:"; $H conntrack -L 2>/dev/null | grep -o 'mark=[0-9]*' | sort | uniq -c | sort -rn | head -3
echo "distinct marks: $($H conntrack -L 2>/dev/null | grep -o 'mark=[0-9]*' | sort -u | wc -l)"

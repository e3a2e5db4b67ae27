. /tmp/r16/setup.sh
H="ip netns exec r16-h"
cat <<NFT | $H nft -f - || exit 1
table netdev r16 {
	set owned { type mark; }
}
table netdev r16f {
	set flows {
		type ipv4_addr . inet_service
		size 65536
		flags dynamic,timeout
		timeout 300s
	}
	chain in {
		type filter hook ingress device "r16-vh" priority -490; policy accept;
		ip daddr 198.18.0.10 meta l4proto udp update @flows { ip saddr . th sport }
	}
}
NFT
t() { for i in 1 2 3 4 5; do s=$(date +%s%N); $H nft $1 -f /tmp/r16/q3e-op.nft; e=$(date +%s%N); echo $(( (e-s)/1000 )); done | sort -n | sed -n 3p; }
printf 'add element netdev r16 owned { 5 }\ndelete element netdev r16 owned { 5 }\n' > /tmp/r16/q3e-op.nft
echo "flows empty:   nft -f (add+delete one element): median $(t '') us; with -t: $(t -t) us"
ip netns exec r16-c python3 /tmp/r16/send.py 20000 1 udp 9
echo "flows 20k:     nft -f (add+delete one element): median $(t '') us; with -t: $(t -t) us"

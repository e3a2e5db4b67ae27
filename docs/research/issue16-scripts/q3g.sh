. /tmp/r16/setup.sh
H="ip netns exec r16-h"
cat <<NFT | $H nft -f - || exit 1
table netdev r16 {
	set owned { type mark; }
	set handoff { type mark; }
	set sentinel { type mark; }
	map buckets { type mark : verdict; }
	chain owned {
	}
	chain handoff {
	}
}
table netdev r16 {
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
$H nft add element netdev r16 owned "{ $(seq -s, 0 127) }"; $H nft add element netdev r16 buckets "{ $(seq -s " : jump owned, " 0 255) : jump owned }"
$H python3 /tmp/r16/q3drv3.py ""
ip netns exec r16-c python3 /tmp/r16/send.py 20000 1 udp 9
echo "with 20k flows in another table:"
$H python3 /tmp/r16/q3drv3.py ""

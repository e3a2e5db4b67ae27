. /tmp/r16/setup.sh
S=0x1db57edb
H="ip netns exec r16-h"
cat <<NFT | $H nft -f - || exit 1
table netdev r16 {
	set lease {
		type ipv4_addr
		flags timeout
	}
	set owned { type mark; }
	set handoff { type mark; }
	map buckets { type mark : verdict; }
	chain owned {
		meta mark set 0 accept
	}
	chain handoff {
		meta mark set 0 accept
	}
	chain in {
		type filter hook ingress device "r16-vh" priority -500; policy accept;
		ip daddr 198.18.0.10 meta mark set jhash ip saddr mod 256 seed $S
		ip daddr 198.18.0.10 meta mark vmap @buckets
	}
}
NFT
echo "add element netdev r16 buckets { $(seq -s ' : jump owned, ' 0 255) : jump owned }; add element netdev r16 owned { $(seq -s ', ' 0 255) }" | $H nft -f -
$H python3 /tmp/r16/q3drv.py 200
echo "--- map after the failed transaction still has all 256 elements:"; $H nft -j list map netdev r16 buckets | grep -o '"jump"' | wc -l

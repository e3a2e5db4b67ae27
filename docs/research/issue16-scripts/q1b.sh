. /tmp/r16/setup.sh
S=0x1db57edb
H="ip netns exec r16-h"
cat > /tmp/r16/q1b.nft <<NFT
table netdev t {
	map owned1 { typeof jhash ip saddr mod 256 seed $S : verdict; }
	map owned2 { typeof jhash ip saddr . th sport mod 256 seed $S : verdict; }
	map owned3 { typeof jhash ip saddr & 255.255.255.0 mod 256 seed $S : verdict; }
	set ownset { typeof jhash ip saddr mod 256 seed $S; }
	chain in {
		type filter hook ingress device "r16-vh" priority -500; policy accept;
		ip daddr 198.18.0.10 meta l4proto tcp th dport 81 jhash ip saddr . th sport mod 256 seed $S vmap @owned2
		ip daddr 198.18.0.10 meta l4proto tcp th dport 82 jhash ip saddr & 255.255.255.0 mod 256 seed $S vmap @owned3
		ip daddr 198.18.0.10 meta l4proto tcp th dport 83 jhash ip saddr mod 256 seed $S != @ownset counter drop
		ip daddr 198.18.0.10 jhash ip saddr mod 256 seed $S vmap @owned1
	}
}
NFT
$H nft -f /tmp/r16/q1b.nft; echo load rc=$?
$H nft add element netdev t owned1 '{ 0-85 : accept, 86-255 : drop }'; echo "add range rc=$?"
$H nft add element netdev t owned1 '{ 3 : accept }'; echo "add one rc=$?"
$H nft add element netdev t ownset '{ 1, 2, 3 }'; echo "add set rc=$?"
echo "--- list table"; $H nft list table netdev t; echo "list rc=$?"
echo "--- list -j map owned1 (head)"; $H nft -j list map netdev t owned1 | head -c 600; echo; echo "rc=$?"

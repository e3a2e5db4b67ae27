. /tmp/r16/setup.sh
S=0x1db57edb
H="ip netns exec r16-h"
cat > /tmp/r16/q2.nft <<NFT
table netdev r16 {
	set flows {
		type ipv4_addr . inet_service
		size 65536
		flags dynamic,timeout
		timeout 60s
	}
	map buckets { type mark : verdict; }
	chain owned {
		meta mark set 0 counter accept
	}
	chain handoff {
		ip saddr . th sport @flows meta mark set 0 counter accept
		counter drop
	}
	chain in {
		type filter hook ingress device "r16-vh" priority -500; policy accept;
		ip daddr 198.18.0.10 meta l4proto tcp meta mark set jhash ip saddr . th sport mod 256 seed $S
		ip daddr 198.18.0.10 meta l4proto tcp meta mark vmap @buckets
		ip daddr 198.18.0.10 meta l4proto tcp meta mark set 0 counter drop comment "not owned"
	}
	chain out {
		type filter hook egress device "r16-vh" priority 0; policy accept;
		ip saddr 198.18.0.10 meta l4proto tcp update @flows { ip daddr . th dport } counter
	}
}
table inet r16 {
	chain pre {
		type filter hook prerouting priority -150; policy accept;
		ip daddr 198.18.0.10 ct state established,related counter accept
		ip daddr 198.18.0.10 ct state new tcp flags & (fin | syn | rst | ack) == syn ct mark set jhash ip saddr . th sport mod 256 seed $S offset 1 counter accept
		ip daddr 198.18.0.10 counter drop
	}
}
NFT
$H nft -f /tmp/r16/q2.nft; echo "load rc=$?"
all() { echo "flush map netdev r16 buckets; add element netdev r16 buckets { $(seq -s ' : jump '$1', ' 0 255) : jump $1 }" | $H nft -f -; echo "[all buckets -> $1] rc=$?"; }
all owned
$H python3 /tmp/r16/server.py & SRV=$!
sleep 0.5
coproc CL { ip netns exec r16-c python3 -u /tmp/r16/client.py; }
say() { echo "$1" >&${CL[1]}; read -t 4 -r line <&${CL[0]}; echo "  client: $line"; }
say "open A"; say "echo A"
all handoff
say "echo A"; say "open B"; say "echo A"
echo "--- flows set:"; $H nft list set netdev r16 flows | grep -A2 elements
echo "--- conntrack -L (ct mark = bucket+1):"; $H conntrack -L 2>&1 | head -5
sleep 0.2
echo "flush map netdev r16 buckets" | $H nft -f -; echo "[all buckets -> not owned]"
say "echo A"
echo "--- counters:"; $H nft list table netdev r16 | grep -E "counter|chain" | sed 's/bytes [0-9]* //'
$H nft list chain inet r16 pre | grep counter | sed 's/bytes [0-9]* //'
kill $SRV; kill $CL_PID 2>/dev/null

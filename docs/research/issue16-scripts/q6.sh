. /tmp/r16/setup.sh
S=0x1db57edb
H="ip netns exec r16-h"
cat > /tmp/r16/recommended.nft <<NFT
table netdev r16 {
	map rule1 { type mark : verdict; }
	map default { type mark : verdict; }
	chain owned {
		meta mark set 0 meta pkttype set host counter accept
	}
	chain handoff {
		tcp flags & (fin | syn | rst | ack) == syn meta mark set 0 counter drop comment "new connection in a released bucket"
		meta mark set 0x100 meta pkttype set host counter accept comment "to conntrack; inet accepts only established"
	}
	chain in {
		type filter hook ingress device "r16-vh" priority -500; policy accept;
		ip daddr { 198.18.0.10 } ip frag-off & 0x3fff != 0 counter accept comment "fragments: decided after reassembly"
		ip daddr { 198.18.0.10 } meta l4proto tcp th dport 80 meta mark set jhash ip saddr . th sport mod 256 seed $S meta mark vmap @rule1
		ip daddr { 198.18.0.10 } meta l4proto tcp th dport 80 counter drop comment "rule1 not owned"
		ip daddr { 198.18.0.10 } meta mark set jhash ip saddr mod 256 seed $S meta mark vmap @default
		ip daddr { 198.18.0.10 } counter drop comment "default not owned"
	}
}
table inet r16 {
	set lease {
		type ipv4_addr
		flags timeout
	}
	chain pre {
		type filter hook prerouting priority -150; policy accept;
		ip daddr { 198.18.0.10 } ct state established,related meta mark set 0 counter accept comment "established"
		ip daddr { 198.18.0.10 } ct state invalid counter drop comment "invalid"
		ip daddr { 198.18.0.10 } ct state new tcp flags & (fin | syn | rst | ack) != syn counter drop comment "not syn"
		ip daddr { 198.18.0.10 } meta mark 0x100 counter drop comment "new flow in a released bucket (udp)"
		ip daddr { 198.18.0.10 } ip daddr @lease ct mark set jhash ip saddr . th sport mod 256 seed $S offset 1 counter accept comment "new, owned, lease live"
		ip daddr { 198.18.0.10 } counter drop comment "lease expired"
	}
}
NFT
$H nft -f /tmp/r16/recommended.nft; echo "load rc=$?"
$H nft add element inet r16 lease '{ 198.18.0.10 timeout 600s }'
setall() { echo "flush map netdev r16 rule1; add element netdev r16 rule1 { $(seq -s " : jump $1, " 0 255) : jump $1 }" | $H nft -f -; echo "[rule1: all buckets -> $1]"; }
setall owned
$H python3 /tmp/r16/server.py & SRV=$!
sleep 0.5
coproc CL { ip netns exec r16-c python3 -u /tmp/r16/client.py; }
say() { echo "$1" >&${CL[1]}; read -t 4 -r line <&${CL[0]}; echo "  client: $line"; }
say "open A"; say "echo A"
setall handoff
say "echo A"; say "open B"; say "echo A"
echo "flush map netdev r16 rule1" | $H nft -f -; echo "[rule1: no bucket owned]"
say "echo A"
$H nft list ruleset | grep -o 'counter packets [0-9]* .*' | sed 's/bytes [0-9]* //'
kill $SRV; kill $CL_PID 2>/dev/null

. /tmp/r16/setup.sh
H="ip netns exec r16-h"
# conntrack must be active in the namespace: load a minimal inet chain that uses ct
cat <<NFT | $H nft -f -
table inet r16 {
	chain pre {
		type filter hook prerouting priority -150; policy accept;
		ip daddr 198.18.0.10 ct state established,related counter accept
		ip daddr 198.18.0.10 ct state new tcp flags & (fin | syn | rst | ack) == syn counter accept
		ip daddr 198.18.0.10 counter drop
	}
}
NFT
$H ip link set dev r16-vh xdpgeneric obj /tmp/r16/xdp_ct.o sec xdp 2>&1 | tail -5; echo "attach rc=${PIPESTATUS[0]}"
MID=$(bpftool map show | awk -F'[: ]' '/ name owned /{print $1}' | tail -1); SID=$(bpftool map show | awk -F'[: ]' '/ name stats /{print $1}' | tail -1)
setall() { for b in $(seq 0 255); do echo "map update id $MID key $b 0 0 0 value $1 0 0 0"; done > /tmp/r16/st.batch; bpftool batch file /tmp/r16/st.batch >/dev/null; echo "[all buckets -> state $1]"; }
setall 1
$H python3 /tmp/r16/server.py & SRV=$!
sleep 0.5
coproc CL { ip netns exec r16-c python3 -u /tmp/r16/client.py; }
say() { echo "$1" >&${CL[1]}; read -t 4 -r line <&${CL[0]}; echo "  client: $line"; }
say "open A"; say "echo A"
setall 2
say "echo A"; say "open B"; say "echo A"
setall 0
say "echo A"
echo "xdp stats [owned pass, handoff ct-hit pass, handoff miss drop, not-owned drop]:"; bpftool map dump id $SID | grep -o '"value": [0-9]*' | awk '{s[(NR-1)%2]+=0} {v[int((NR-1)/2)]+=$2} END {for(i=0;i<4;i++) printf "%d ", v[i]; print ""}'
kill $SRV; kill $CL_PID 2>/dev/null

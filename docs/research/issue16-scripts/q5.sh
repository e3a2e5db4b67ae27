. /tmp/r16/setup.sh
S=0x1db57edb
H="ip netns exec r16-h"
$H ip link set dev r16-vh xdpgeneric obj /tmp/r16/xdp_nlb.o sec xdp; echo "attach xdpgeneric rc=$?"
$H ip -d link show dev r16-vh | grep -o 'xdpgeneric.*' | head -2
MID=$(bpftool map show | awk -F'[: ]' '/ name owned /{print $1}' | tail -1); SID=$(bpftool map show | awk -F'[: ]' '/ name stats /{print $1}' | tail -1); echo "map ids owned=$MID stats=$SID"
for b in $(seq 0 2 254); do echo "map update id $MID key $b 0 0 0 value 1 0 0 0"; done > /tmp/r16/own.batch; bpftool batch file /tmp/r16/own.batch | tail -1
cat <<NFT | $H nft -f -
table inet r16c {
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		ip daddr 198.18.0.10 jhash ip saddr mod 256 seed $S { $(seq -s, 1 2 255) } counter comment "mismatch (odd bucket passed XDP)"
		ip daddr 198.18.0.10 counter comment "passed"
	}
}
NFT
ip netns exec r16-c python3 /tmp/r16/send.py 2000 1 udp 1
$H nft list chain inet r16c pre | grep -o 'counter packets [0-9]* .*comment "[^"]*"' | sed 's/bytes [0-9]* //'
echo "xdp stats (pass, drop) per cpu:"; bpftool map dump id $SID | grep -E 'key|value' | tr -s ' \n' ' ' ; echo
$H ip link set dev r16-vh xdpgeneric off; echo "detach rc=$?"
$H ip link set dev r16-vh xdpdrv obj /tmp/r16/xdp_nlb.o sec xdp; echo "attach native (xdpdrv) on veth rc=$?"
$H ip -d link show dev r16-vh | grep -o 'xdp[a-z]* .*' | head -1
$H ip link set dev r16-vh xdpdrv off

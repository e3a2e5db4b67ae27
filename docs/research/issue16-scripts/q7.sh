# multicast cluster MAC: does netdev-ingress "meta pkttype set host" let TCP accept the frame?
. /tmp/r16/setup.sh
H="ip netns exec r16-h"
ip -n r16-c route replace 198.18.0.10/32 dev r16-vc
ip -n r16-c neigh replace 198.18.0.10 lladdr 03:bf:c6:12:00:0a dev r16-vc nud permanent
$H python3 /tmp/r16/server.py & SRV=$!
sleep 0.5
try() { ip netns exec r16-c python3 -c "
import socket
try:
    c=socket.create_connection(('198.18.0.10',80),timeout=1.5); c.sendall(b'x'); c.settimeout(1.5); print('  connect+echo', 'ok' if c.recv(1)==b'x' else 'bad')
except Exception as e: print('  FAILED', type(e).__name__)"; }
echo "no rules (frame is PACKET_MULTICAST):"; try
printf 'table netdev m {\nchain in {\ntype filter hook ingress device "r16-vh" priority -500; policy accept;\nether daddr 03:bf:c6:12:00:0a meta pkttype set host counter\n}\n}\n' | $H nft -f -
echo "with netdev ingress 'ether daddr 03:bf:c6:12:00:0a meta pkttype set host':"; try
$H nft list chain netdev m in | grep counter | sed 's/bytes [0-9]* //'
kill $SRV

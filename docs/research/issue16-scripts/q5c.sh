. /tmp/r16/setup.sh
H="ip netns exec r16-h"
for mode in none xdpgeneric netdev; do
  $H ip link set dev r16-vh xdpgeneric off 2>/dev/null; $H nft flush ruleset
  [ $mode = xdpgeneric ] && $H ip link set dev r16-vh xdpgeneric obj /tmp/r16/xdp_nlb.o sec xdp
  [ $mode = netdev ] && printf 'table netdev t {\nchain in {\ntype filter hook ingress device "r16-vh" priority -500;\nip daddr 198.18.0.10 drop\n}\n}\n' | $H nft -f -
  $H timeout 4 tcpdump -U -ni r16-vh -w /tmp/r16/cap-$mode.pcap udp 2>/dev/null & sleep 1.5
  ip netns exec r16-c python3 /tmp/r16/send.py 100 1 udp 1 2>/dev/null; sleep 2.8
  echo "drop at $mode: tcpdump on r16-vh saw $(tcpdump -r /tmp/r16/cap-$mode.pcap 2>/dev/null | wc -l) of 100"
done

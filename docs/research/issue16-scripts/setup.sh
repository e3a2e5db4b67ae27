# source me. Creates r16-c (client) and r16-h (host) joined by veth; cleans up on exit.
cleanup() { ip netns del r16-c 2>/dev/null; ip netns del r16-h 2>/dev/null; ip netns del r16-h2 2>/dev/null; }
trap cleanup EXIT INT TERM
cleanup
ip netns add r16-c; ip netns add r16-h
ip link add r16-vc netns r16-c type veth peer name r16-vh netns r16-h
ip -n r16-c addr add 198.18.0.1/24 dev r16-vc
ip -n r16-h addr add 198.18.0.2/24 dev r16-vh
ip -n r16-h addr add 198.18.0.10/32 dev lo
ip -n r16-c link set r16-vc up; ip -n r16-c link set lo up
ip -n r16-h link set r16-vh up; ip -n r16-h link set lo up
ip -n r16-c route add 198.18.0.10/32 via 198.18.0.2
ip -n r16-h route add 198.19.0.0/16 via 198.18.0.1

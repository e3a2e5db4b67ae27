. /tmp/r16/setup.sh
S=0x1db57edb
H="ip netns exec r16-h"
ALL=$(seq -s ' : drop, ' 0 255)" : drop"
ALLH=$(seq -s ' : jump handoff, ' 0 255)" : jump handoff"
today() { sed -n '/^table inet/,$p' /work/main/crates/nlb-linux/src/snapshots/nlb_linux__ruleset__tests__multicast_ruleset_snapshot.snap | sed 's/nlb_veth_2dh1_1db57edb/r16w/g'; }
load() {
  $H nft flush ruleset
  today | $H nft -f - || echo "today load failed"
  case $1 in
  c) ;;
  a) cat <<NFT | $H nft -f - ;;
table netdev r16 {
	map buckets { type mark : verdict; }
	chain in {
		type filter hook ingress device "r16-vh" priority -500; policy accept;
		ip daddr 198.18.0.10 meta l4proto tcp meta mark set jhash ip saddr . th sport mod 256 seed $S
		ip daddr 198.18.0.10 meta l4proto tcp meta mark vmap @buckets
		counter comment "passed"
	}
}
add element netdev r16 buckets { $ALL }
NFT
  h) cat <<NFT | $H nft -f - ;;
table netdev r16 {
	set flows {
		type ipv4_addr . inet_service
		size 65536
		flags dynamic,timeout
		timeout 60s
	}
	map buckets { type mark : verdict; }
	chain handoff {
		ip saddr . th sport @flows meta mark set 0 accept
		drop
	}
	chain in {
		type filter hook ingress device "r16-vh" priority -500; policy accept;
		ip daddr 198.18.0.10 meta l4proto tcp meta mark set jhash ip saddr . th sport mod 256 seed $S
		ip daddr 198.18.0.10 meta l4proto tcp meta mark vmap @buckets
		counter comment "passed"
	}
}
add element netdev r16 buckets { $ALLH }
NFT
  b) cat <<NFT | $H nft -f - ;;
table inet r16raw {
	map buckets { type mark : verdict; }
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		ip daddr 198.18.0.10 meta l4proto tcp meta mark set jhash ip saddr . th sport mod 256 seed $S
		ip daddr 198.18.0.10 meta l4proto tcp meta mark vmap @buckets
		counter comment "passed"
	}
}
add element inet r16raw buckets { $ALL }
NFT
  z) cat <<NFT | $H nft -f - ;;
table netdev r16 {
	chain in {
		type filter hook ingress device "r16-vh" priority -500; policy accept;
		ip daddr 198.18.0.10 drop
	}
}
NFT
  esac
}
ksi() { local t=0; for p in $(pgrep -x 'ksoftirqd/[01]' 2>/dev/null || pgrep ksoftirqd); do set -- $(cut -d' ' -f14,15 /proc/$p/stat); t=$((t+$1+$2)); done; echo $t; }
declare -A R C K
for round in 1 2 3 4 5 6; do
  for v in z a h b c; do
    load $v
    k0=$(ksi)
    out=$(ip netns exec r16-c taskset -c 0 /tmp/r16/blast 1024 1.5 ${MODE:-ack})
    k1=$(ksi)
    set -- $out
    R[$v]="${R[$v]} $3"; C[$v]="${C[$v]} $5"; K[$v]="${K[$v]} $(( (k1-k0)*10000000/$1 ))"
    [ $round = 1 ] && { echo "variant $v round 1: sent elapsed pps cpu_s cpu_ns/pkt = $out"; $H nft list ruleset 2>/dev/null | grep -E 'counter packets [1-9]' | sed 's/bytes [0-9]* //; s/^\s*//' | head -3; }
  done
done
med() { echo $* | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "MODE=${MODE:-ack}; sender pinned to CPU 0; 6 alternating rounds of 1.5 s"
printf '%-4s %-55s %s\n' var "sender cpu ns/pkt per round (median)" "pps median | ksoftirqd ns/pkt median"
for v in z a h b c; do printf '%-4s %-55s %s\n' $v "${C[$v]} ($(med ${C[$v]}))" "$(med ${R[$v]}) | $(med ${K[$v]})"; done

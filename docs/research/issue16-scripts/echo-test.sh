trap 'ip netns del r16-x 2>/dev/null' EXIT; ip netns add r16-x; X="ip netns exec r16-x"
$X nft add table netdev r16; $X nft add map netdev r16 buckets '{ type mark : verdict; }'; $X nft add chain netdev r16 owned; $X nft add chain netdev r16 handoff
echo "### input lines"; nl /tmp/r16/echo-test.txt; echo "### nft --echo -i output"; $X nft --echo -i < /tmp/r16/echo-test.txt 2>&1 | nl

// Feasibility: drop packets to the VIP whose bucket (nft jhash ip saddr mod 256 seed S) is not owned.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#define VIP 0xC612000A /* 198.18.0.10 */
#define SEED 0x1db57edb
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 256); __type(key, __u32); __type(value, __u32); } owned SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 2); __type(key, __u32); __type(value, __u64); } stats SEC(".maps");
static __always_inline __u32 rol32(__u32 w, unsigned s) { return (w << s) | (w >> (32 - s)); }
// linux/jhash.h jhash() for a 4-byte key, as nft_jhash calls it (len 4 for ip saddr)
static __always_inline __u32 jhash4(const __u8 *k, __u32 initval) {
    __u32 a, b, c; a = b = c = 0xdeadbeef + 4 + initval;
    a += (__u32)k[3] << 24 | (__u32)k[2] << 16 | (__u32)k[1] << 8 | k[0];
    c ^= b; c -= rol32(b, 14); a ^= c; a -= rol32(c, 11); b ^= a; b -= rol32(a, 25);
    c ^= b; c -= rol32(b, 16); a ^= c; a -= rol32(c, 4);  b ^= a; b -= rol32(a, 14);
    c ^= b; c -= rol32(b, 24);
    return c;
}
SEC("xdp")
int nlb_filter(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data; if ((void *)(eth + 1) > end) return XDP_PASS;
    if (eth->h_proto != bpf_htons(ETH_P_IP)) return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1); if ((void *)(ip + 1) > end) return XDP_PASS;
    if (ip->daddr != bpf_htonl(VIP)) return XDP_PASS;
    __u32 bucket = (__u32)(((__u64)jhash4((const __u8 *)&ip->saddr, SEED) * 256) >> 32);
    __u32 *own = bpf_map_lookup_elem(&owned, &bucket);
    __u32 idx = (own && *own) ? 0 : 1; __u64 *cnt = bpf_map_lookup_elem(&stats, &idx); if (cnt) (*cnt)++;
    return idx ? XDP_DROP : XDP_PASS;
}
char LICENSE[] SEC("license") = "GPL";

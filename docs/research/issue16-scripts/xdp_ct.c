// Hand-off in XDP: bucket state 1 = owned (pass), 2 = hand-off (pass only if conntrack knows the flow), else drop.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#define VIP 0xC612000A
#define SEED 0x1db57edb
#define ETH_P_IP 0x0800
extern struct nf_conn *bpf_xdp_ct_lookup(struct xdp_md *, struct bpf_sock_tuple *, __u32, struct bpf_ct_opts *, __u32) __ksym;
extern void bpf_ct_release(struct nf_conn *) __ksym;
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 256); __type(key, __u32); __type(value, __u32); } owned SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64); } stats SEC(".maps");
static __always_inline __u32 rol32(__u32 w, unsigned s) { return (w << s) | (w >> (32 - s)); }
static __always_inline __u32 jhash4(const __u8 *k, __u32 initval) {
    __u32 a, b, c; a = b = c = 0xdeadbeef + 4 + initval;
    a += (__u32)k[3] << 24 | (__u32)k[2] << 16 | (__u32)k[1] << 8 | k[0];
    c ^= b; c -= rol32(b, 14); a ^= c; a -= rol32(c, 11); b ^= a; b -= rol32(a, 25);
    c ^= b; c -= rol32(b, 16); a ^= c; a -= rol32(c, 4);  b ^= a; b -= rol32(a, 14);
    c ^= b; c -= rol32(b, 24);
    return c;
}
static __always_inline void count(__u32 i) { __u64 *c = bpf_map_lookup_elem(&stats, &i); if (c) (*c)++; }
SEC("xdp")
int nlb_ct(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data; if ((void *)(eth + 1) > end) return XDP_PASS;
    if (eth->h_proto != bpf_htons(ETH_P_IP)) return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1); if ((void *)(ip + 1) > end) return XDP_PASS;
    if (ip->daddr != bpf_htonl(VIP) || ip->protocol != IPPROTO_TCP || ip->ihl != 5) return XDP_PASS;
    struct tcphdr *th = (void *)(ip + 1); if ((void *)(th + 1) > end) return XDP_PASS;
    __u32 bucket = (__u32)(((__u64)jhash4((const __u8 *)&ip->saddr, SEED) * 256) >> 32);
    __u32 *st = bpf_map_lookup_elem(&owned, &bucket);
    __u32 s = st ? *st : 0;
    if (s == 1) { count(0); return XDP_PASS; }
    if (s == 2) {
        struct bpf_sock_tuple t = {}; t.ipv4.saddr = ip->saddr; t.ipv4.daddr = ip->daddr; t.ipv4.sport = th->source; t.ipv4.dport = th->dest;
        struct bpf_ct_opts o = { .netns_id = -1, .l4proto = IPPROTO_TCP };
        struct nf_conn *ct = bpf_xdp_ct_lookup(ctx, &t, sizeof(t.ipv4), &o, sizeof(o));
        if (ct) { bpf_ct_release(ct); count(1); return XDP_PASS; }
        count(2); return XDP_DROP;
    }
    count(3); return XDP_DROP;
}
char LICENSE[] SEC("license") = "GPL";

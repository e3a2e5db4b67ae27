// blast: send TCP ACKs (or SYNs) with IP_HDRINCL from N source addresses to 198.18.0.10 for S seconds
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/resource.h>
#define B 64
static unsigned short csum(unsigned short *p, int n) { unsigned long s = 0; while (n > 1) { s += *p++; n -= 2; } if (n) s += *(unsigned char *)p; s = (s >> 16) + (s & 0xffff); s += s >> 16; return ~s; }
int main(int argc, char **argv) {
    int nsrc = atoi(argv[1]); double secs = atof(argv[2]); int syn = argc > 3 && !strcmp(argv[3], "syn");
    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW); if (fd < 0) { perror("socket"); return 1; }
    int sz = 40; char *pk = calloc(nsrc, sz);
    struct sockaddr_in dst = { .sin_family = AF_INET }; inet_pton(AF_INET, "198.18.0.10", &dst.sin_addr);
    for (int i = 0; i < nsrc; i++) {
        struct iphdr *ip = (void *)(pk + i * sz); struct tcphdr *t = (void *)(ip + 1);
        ip->version = 4; ip->ihl = 5; ip->tot_len = htons(40); ip->id = htons(i); ip->ttl = 64; ip->protocol = 6;
        ip->saddr = htonl((198u << 24) | (19u << 16) | ((i % 256) << 8) | (1 + (i / 256) % 250)); ip->daddr = dst.sin_addr.s_addr;
        t->source = htons(1024 + (i * 7919) % 60000); t->dest = htons(80); t->seq = htonl(i); t->ack_seq = htonl(7);
        t->doff = 5; if (syn) t->syn = 1; else t->ack = 1; t->window = htons(65535);
        struct { unsigned s, d; unsigned char z, p; unsigned short l; struct tcphdr t; } ph = { ip->saddr, ip->daddr, 0, 6, htons(20), *t };
        t->check = csum((void *)&ph, sizeof ph);
    }
    struct mmsghdr m[B]; struct iovec v[B]; memset(m, 0, sizeof m);
    struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a); long sent = 0; int k = 0;
    for (;;) {
        for (int j = 0; j < B; j++) { v[j].iov_base = pk + ((k + j) % nsrc) * sz; v[j].iov_len = sz; m[j].msg_hdr.msg_iov = &v[j]; m[j].msg_hdr.msg_iovlen = 1; m[j].msg_hdr.msg_name = &dst; m[j].msg_hdr.msg_namelen = sizeof dst; }
        int r = sendmmsg(fd, m, B, 0); if (r > 0) { sent += r; k += r; }
        if ((sent & 4095) < B) { clock_gettime(CLOCK_MONOTONIC, &b); if ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9 >= secs) break; }
    }
    double el = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    struct rusage ru; getrusage(RUSAGE_SELF, &ru); double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("%ld %.3f %.0f %.3f %.0f\n", sent, el, sent / el, cpu, cpu * 1e9 / sent);
    return 0;
}

import json, ipaddress, struct
M=0xffffffff
def rol(x,k): return ((x<<k)|(x>>(32-k)))&M
def mix(a,b,c):
    a=(a-c)&M; a^=rol(c,4); c=(c+b)&M
    b=(b-a)&M; b^=rol(a,6); a=(a+c)&M
    c=(c-b)&M; c^=rol(b,8); b=(b+a)&M
    a=(a-c)&M; a^=rol(c,16); c=(c+b)&M
    b=(b-a)&M; b^=rol(a,19); a=(a+c)&M
    c=(c-b)&M; c^=rol(b,4); b=(b+a)&M
    return a,b,c
def final(a,b,c):
    c^=b; c=(c-rol(b,14))&M
    a^=c; a=(a-rol(c,11))&M
    b^=a; b=(b-rol(a,25))&M
    c^=b; c=(c-rol(b,16))&M
    a^=c; a=(a-rol(c,4))&M
    b^=a; b=(b-rol(a,14))&M
    c^=b; c=(c-rol(b,24))&M
    return a,b,c
def jhash(k, initval):   # include/linux/jhash.h, little-endian CPU (x86)
    n=len(k); a=b=c=(0xdeadbeef+n+initval)&M
    while n>12:
        x,y,z=struct.unpack_from('<III',k,len(k)-n)
        a=(a+x)&M; b=(b+y)&M; c=(c+z)&M; a,b,c=mix(a,b,c); n-=12
    t=k[len(k)-n:]+b'\0'*12
    if n==0: return c
    x,y,z=struct.unpack_from('<III',t)
    a=(a+x)&M; b=(b+y)&M; c=(c+z)&M
    a,b,c=final(a,b,c); return c
def rscale(h,n): return (h*n)>>32
d=json.load(open('/tmp/r15/jh.json'))
sets={x['set']['name']:x['set'] for x in d['nftables'] if 'set' in x}
def rows(name):
    for e in sets[name]['elem']:
        yield e['concat']
ok=True
print("| source | sport | jhash ip6 saddr (raw h, seed 0x1) | mod 256 | . th sport mod 256 | /64 mod 256 |")
print("|---|---|---|---|---|---|")
A={r[0]:r[1] for r in rows('a')}; R={r[0]:r[1] for r in rows('raw')}; N={r[0]:r[1] for r in rows('n64')}; P={r[0]:(r[1],r[2]) for r in rows('ap')}
for s in A:
    b=ipaddress.IPv6Address(s).packed
    h=jhash(b,1); sp=P[s][0]
    hp=jhash(b+struct.pack('!H',sp)+b'\0\0',1)
    hn=jhash(b[:8]+b'\0'*8,1)
    exp=(rscale(h,256),rscale(h,4294967291),rscale(hp,256),rscale(hn,256))
    got=(A[s],R[s],P[s][1],N[s])
    ok &= exp==got
    print(f"| {s} | {sp} | {h:#010x} (nft mod 4294967291: {R[s]:#010x}) | {A[s]} | {P[s][1]} | {N[s]} |", "" if exp==got else f"MISMATCH python={exp}")
print("python port matches kernel for all rows:", ok)

#!/usr/bin/env python3
# send UDP (or TCP SYN) packets with IP_HDRINCL from sources 198.19.x.y to 198.18.0.10
import socket, struct, sys, time
def csum(b):
    if len(b)%2: b+=b'\0'
    s=sum(struct.unpack('!%dH'%(len(b)//2),b)); s=(s>>16)+(s&0xffff); s+=s>>16; return ~s&0xffff
n_src=int(sys.argv[1]); reps=int(sys.argv[2]); proto=sys.argv[3] if len(sys.argv)>3 else "udp"; dport=int(sys.argv[4]) if len(sys.argv)>4 else 9
dst=socket.inet_aton('198.18.0.10')
s=socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
pkts=[]
for i in range(n_src):
    src=socket.inet_aton('198.19.%d.%d'%(i%256, 1+(i//256)%250)); sport=1024+(i*7919)%60000
    if proto=='udp':
        l4=struct.pack('!HHHH',sport,dport,8,0); p=17
    else:
        l4=struct.pack('!HHIIBBHHH',sport,dport,i,0,5<<4,0x02,65535,0,0); p=6
        ph=src+dst+struct.pack('!BBH',0,p,len(l4)); c=csum(ph+l4); l4=l4[:16]+struct.pack('!H',c)+l4[18:]
    ip=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(l4),i&0xffff,0,64,p,0,src,dst)
    pkts.append(ip+l4)
t=time.time()
for r in range(reps):
    for pk in pkts: s.sendto(pk,('198.18.0.10',0))
print('sent',n_src*reps,'in %.3fs'%(time.time()-t), file=sys.stderr)

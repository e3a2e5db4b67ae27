import socket,struct,sys,ipaddress
def mac(s): return bytes(int(x,16) for x in s.split(':'))
def csum(b):
    if len(b)%2: b+=b'\0'
    s=sum(struct.unpack('!%dH'%(len(b)//2),b))
    while s>>16: s=(s&0xffff)+(s>>16)
    return (~s)&0xffff or 0xffff
iface,smac,dmac,src,dst,sport=sys.argv[1:7]
s6,d6=(ipaddress.IPv6Address(x).packed for x in (src,dst))
pl=b'r15-probe'; u=struct.pack('!HHHH',int(sport),9999,8+len(pl),0)+pl
c=csum(s6+d6+struct.pack('!IxxxB',len(u),17)+u); u=u[:6]+struct.pack('!H',c)+u[8:]
ip6=struct.pack('!IHBB',6<<28,len(u),17,64)+s6+d6
s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW); s.bind((iface,0)); s.send(mac(dmac)+mac(smac)+b'\x86\xdd'+ip6+u)

import socket,struct,sys
def mac(s): return bytes(int(x,16) for x in s.split(':'))
def csum(b):
    if len(b)%2: b+=b'\0'
    s=sum(struct.unpack('!%dH'%(len(b)//2),b))
    while s>>16: s=(s&0xffff)+(s>>16)
    return (~s)&0xffff
iface,smac,dmac,src,dst,sport=sys.argv[1:7]
s4,d4=socket.inet_aton(src),socket.inet_aton(dst)
pl=b'r15-probe'; u=struct.pack('!HHHH',int(sport),9999,8+len(pl),0)+pl
ip=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(u),0,0x4000,64,17,0,s4,d4); ip=ip[:10]+struct.pack('!H',csum(ip))+ip[12:]
s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW); s.bind((iface,0)); s.send(mac(dmac)+mac(smac)+b'\x08\x00'+ip+u)

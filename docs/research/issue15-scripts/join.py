import socket,struct,sys,time
ifn=sys.argv[1]; secs=float(sys.argv[2]); groups=sys.argv[3:]
idx=socket.if_nametoindex(ifn); s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)
for g in groups:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, socket.inet_pton(socket.AF_INET6,g)+struct.pack('@I',idx))
print("joined",groups,flush=True); time.sleep(secs)

import socket,sys
s=socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind((sys.argv[1],int(sys.argv[2]))); s.listen(5)
while True:
    c,a=s.accept(); c.sendall(b"hello from %s to %s\n"%(socket.gethostname().encode(),str(a[0]).encode())); c.close()

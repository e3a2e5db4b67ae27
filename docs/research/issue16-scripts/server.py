import socket, threading
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR,1); s.bind(('198.18.0.10',80)); s.listen(64)
def h(c):
    while True:
        d=c.recv(100)
        if not d: break
        c.sendall(d)
while True:
    c,_=s.accept(); threading.Thread(target=h,args=(c,),daemon=True).start()

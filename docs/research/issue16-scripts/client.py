import socket, sys
conns={}
for line in sys.stdin:
    cmd,name=line.split()
    try:
        if cmd=='open':
            c=socket.create_connection(('198.18.0.10',80),timeout=1.5); conns[name]=c
            print(name,'open ok, sport',c.getsockname()[1],flush=True)
        elif cmd=='echo':
            c=conns[name]; c.settimeout(1.5); c.sendall(b'x'); print(name,'echo', 'ok' if c.recv(10)==b'x' else 'bad',flush=True)
    except Exception as e:
        print(name,cmd,'FAILED:',type(e).__name__,e,flush=True)

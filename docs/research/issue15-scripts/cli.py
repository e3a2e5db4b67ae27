import socket,sys
s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=3); print(s.recv(100).decode().strip(), "local", s.getsockname()[0])

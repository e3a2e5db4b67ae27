import socket,sys
s=socket.socket(socket.AF_INET6); s.settimeout(2)
if len(sys.argv)>3: s.bind((sys.argv[3],0))
try:
    s.connect((sys.argv[1],int(sys.argv[2]))); print("connected", s.getsockname()[0], s.recv(100).decode().strip())
except Exception as e: print("connect failed:", e)

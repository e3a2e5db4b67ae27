import socket, struct
def pk(src, off, mf, payload, sport=None):
    if sport is not None: payload = struct.pack('!HHHH', sport, 9, 8+len(payload)+24, 0) + payload
    flags = (0x2000 if mf else 0) | (off // 8)
    return struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20+len(payload), 4242, flags, 64, 17, 0, socket.inet_aton(src), socket.inet_aton('198.18.0.10')) + payload
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i in range(10):
    src = '198.19.7.%d' % (i+1)
    s.sendto(pk(src, 0, True, b'A'*24, sport=5000+i), ('198.18.0.10', 0))   # first fragment: UDP header + 24 bytes
    s.sendto(pk(src, 32, False, b'B'*24), ('198.18.0.10', 0))              # second fragment: no UDP header

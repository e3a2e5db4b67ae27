#!/usr/bin/env python3
"""Send one Neighbor Solicitation through AF_PACKET. ndp.py IFACE SRCMAC DSTMAC SRC DST TARGET [SLLA]"""
import socket, struct, sys, ipaddress
def mac(s): return bytes(int(x, 16) for x in s.split(':'))
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b)//2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
iface, smac, dmac, src, dst, target = sys.argv[1:7]
slla = sys.argv[7] if len(sys.argv) > 7 else None
s6, d6, t6 = (ipaddress.IPv6Address(x).packed for x in (src, dst, target))
body = struct.pack('!BBHI', 135, 0, 0, 0) + t6
if slla: body += bytes([1, 1]) + mac(slla)
pseudo = s6 + d6 + struct.pack('!IxxxB', len(body), 58)
c = csum(pseudo + body)
body = body[:2] + struct.pack('!H', c) + body[4:]
ip6 = struct.pack('!IHBB', 6 << 28, len(body), 58, 255) + s6 + d6
frame = mac(dmac) + mac(smac) + b'\x86\xdd' + ip6 + body
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0)); s.send(frame)

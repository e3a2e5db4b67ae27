import re
for n in ['r15-h1','r15-h2']:
    t=open('/tmp/r15/%s.c'%n).read(); got={}
    for line in t.splitlines():
        m=re.search(r'2001:db8::100\.(\d+) >',line)
        if m: p=int(m.group(1)); got.setdefault(p//1000,[]).append(p%1000)
    print(n, ' '.join('%d:%s'%(k,''.join('x' if i in got.get(k,[]) else '.' for i in range(25))) for k in (3,4,5,6)))

import subprocess, sys, time, statistics, threading, queue
# `nft -i` WITHOUT --echo; completion = the output of a sentinel listing of an empty set
args=sys.argv[1].split()
p=subprocess.Popen(['nft']+args+['-i'],stdin=subprocess.PIPE,stdout=subprocess.PIPE,stderr=subprocess.PIPE,text=True,bufsize=1)
q=queue.Queue()
def rd(f,tag):
    for l in f: q.put((tag,l.strip()))
threading.Thread(target=rd,args=(p.stdout,'out'),daemon=True).start()
threading.Thread(target=rd,args=(p.stderr,'err'),daemon=True).start()
SENT='list set netdev r16 sentinel'
def run(cmd):
    t=time.perf_counter_ns(); p.stdin.write(cmd+'\n'+SENT+'\n'); p.stdin.flush(); err=None
    while True:
        tag,l=q.get(timeout=10)
        if tag=='err' and l.startswith('Error') and err is None: err=l
        if tag=='out' and l.startswith('set sentinel'):
            # drain the rest of the listing (3 more lines: type, }, })
            for _ in range(3): q.get(timeout=10)
            return (time.perf_counter_ns()-t)/1e3, err
def bench(name,cmds,n):
    ts=[];errs=0
    for i in range(n):
        us,e=run(cmds[i%len(cmds)]); ts.append(us); errs+= e is not None
    ts.sort(); print('%-60s n=%d median %.0f us p90 %.0f us errors %d'%(name,n,statistics.median(ts),ts[int(.9*n)],errs),flush=True)
T='netdev r16'
bench('nft %s -i: "add element handoff {b}; delete element owned {b}" + sentinel'%' '.join(args), ['add element %s handoff { %d }; delete element %s owned { %d }'%(T,b,T,b) for b in range(128)], 100)
bench('nft %s -i: "add element owned {b}; delete element handoff {b}" + sentinel'%' '.join(args), ['add element %s owned { %d }; delete element %s handoff { %d }'%(T,b,T,b) for b in range(128)], 100)
bench('nft %s -i: sentinel alone'%' '.join(args), [''], 100)
print('error detection:', run('add element %s owned { 300000000000 }'%T)[1])

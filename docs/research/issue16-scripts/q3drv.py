import subprocess, sys, time, statistics, threading, queue
# long-lived `nft --echo -i` session, as nlb's NftSession does
p=subprocess.Popen(['nft','--echo','-i'],stdin=subprocess.PIPE,stdout=subprocess.PIPE,stderr=subprocess.PIPE,text=True,bufsize=1)
q=queue.Queue()
def rd(f,tag):
    for l in f: q.put((tag,l.strip()))
threading.Thread(target=rd,args=(p.stdout,'out'),daemon=True).start()
threading.Thread(target=rd,args=(p.stderr,'err'),daemon=True).start()
def run(cmd, done):
    while not q.empty(): q.get()
    t=time.perf_counter_ns(); p.stdin.write(cmd+'\n'); p.stdin.flush()
    while True:
        tag,l=q.get(timeout=5)
        if tag=='err' and l.startswith('Error'): return (time.perf_counter_ns()-t)/1e3, ('err',l)
        if tag=='out' and l.startswith(done): return (time.perf_counter_ns()-t)/1e3, ('out',l)
def bench(name, cmds, n, done='# new generation'):
    ts=[]; errs=0; last=None
    for i in range(n):
        us,r=run(cmds[i%len(cmds)], done)
        if r[0]=='err': errs+=1; last=r[1]
        ts.append(us)
    ts.sort(); print('%-75s n=%d median %.0f us  p90 %.0f us  max %.0f us  errors %d'%(name,n,statistics.median(ts),ts[int(.9*n)],ts[-1],errs), flush=True)
    if errs: print('   last error:', last)
N=int(sys.argv[1]) if len(sys.argv)>1 else 200
T='netdev r16'
# design A: one verdict map bucket -> jump owned|handoff; a change is delete+add (no replace in 1.0.6)
bench('A map: "delete element {b}; add element {b : jump handoff}" (wait for add echo)', ['delete element %s buckets { %d }; add element %s buckets { %d : jump handoff }'%(T,b,T,b) for b in range(256)], N, done='add element')
bench('A map: ... back to "jump owned"', ['delete element %s buckets { %d }; add element %s buckets { %d : jump owned }'%(T,b,T,b) for b in range(256)], N, done='add element')
# design B: two sets; release = add to handoff first, then delete from owned, one transaction
bench('B sets: "add element handoff {b}; delete element owned {b}"', ['add element %s handoff { %d }; delete element %s owned { %d }'%(T,b,T,b) for b in range(256)], N)
bench('B sets: "add element owned {b}; delete element handoff {b}"', ['add element %s owned { %d }; delete element %s handoff { %d }'%(T,b,T,b) for b in range(256)], N)
bench('lease refresh "add element lease { vip timeout 100ms expires 100ms }"', ['add element %s lease { 198.18.0.10 timeout 100ms expires 100ms }'%T], N)
allowned=', '.join('%d : jump owned'%b for b in range(256))
bench('A map: "flush map; add element { 256 elements }" one line', ['flush map %s buckets; add element %s buckets { %s }'%(T,T,allowned)], N//4, done='add element')
print('--- add of an existing key with a different verdict:', run('add element %s buckets { 7 : jump handoff }'%T, '# new generation')[1])
print('--- transaction check: "flush map; add element { 7 : jump nosuchchain }":', run('flush map %s buckets; add element %s buckets { 7 : jump nosuchchain }'%(T,T), '# new generation')[1])
p.stdin.close(); p.wait()

import json,sys
# usage: analyze.py dir... ; prints held-out exact match per eval step, train accuracy / partial / format / length per 50-step window
for d in sys.argv[1:]:
    rows=[json.loads(l) for l in open(f'{d}/metrics.jsonl')]
    st=[r for r in rows if 'reward' in r]
    ev=[(int(r['step']),r['eval/accuracy']) for r in rows if 'eval/accuracy' in r]
    print(f'## {d}: {len(st)} steps')
    print('held-out exact match: '+' '.join(f'{s}:{100*a:.1f}' for s,a in ev))
    w=50
    for k in ['rewards/accuracy/mean','rewards/partial/mean','rewards/format/mean','completions/mean_length','entropy']:
        if k in st[0]:
            print(f'{k} per {w}-step window: '+' '.join(f'{sum(r[k] for r in st[i:i+w])/len(st[i:i+w]):.3f}' for i in range(0,len(st),w)))

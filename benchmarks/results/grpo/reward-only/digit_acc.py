import sys,re
# reads `whale grpo eval --show N` lines "q  →  <answer>X</answer>   (answer Y)"; prints per-position digit match (answer as written)
pos=[0,0,0]; n=0
for line in sys.stdin:
    m=re.search(r'→\s+(.*?)\s+\(answer (\d+)\)',line)
    if not m: continue
    got=re.search(r'<answer>(.*?)</answer>',m.group(1)); ref=m.group(2); n+=1
    g=got.group(1) if got else ''
    for i in range(len(ref)):
        if i<len(g) and g[i]==ref[i]: pos[i]+=1
print(n, ' '.join(f'{100*p/n:.1f}' for p in pos))

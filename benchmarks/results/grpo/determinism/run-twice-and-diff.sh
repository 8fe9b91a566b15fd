W=${WHALE:-src/WhaleTech.Cli/bin/Debug/net10.0/whale}
for r in a b; do $W grpo train --task addition --digits 2 --hidden 64 --layers 2 --heads 4 --sft-steps 30 --sft-batch 32 --steps 50 --prompts-per-step 4 --num-generations 8 --held-out 50 --eval-every 10 --seed 7 --threads 1 --plain --out /tmp/det-$r > /tmp/det-$r.log 2>&1; done
for r in a b; do python3 -c "
import json,sys
for l in open('/tmp/det-$r/metrics.jsonl'):
    d=json.loads(l); [d.pop(k) for k in list(d) if k.startswith('step_time')]; print(json.dumps(d,sort_keys=True))" > /tmp/det-$r.clean; done
wc -l /tmp/det-a.clean /tmp/det-b.clean; cmp /tmp/det-a.clean /tmp/det-b.clean && echo IDENTICAL

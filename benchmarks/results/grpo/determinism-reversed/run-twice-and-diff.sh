#!/usr/bin/env bash
# Issue 6: the same seed on CPU gives identical metrics for 50 steps — with the third-round options
# (reversed answers, padded operands, SFT stopped at a validation target, cosine lr). Timing fields are removed
# before comparing (they are wall-clock). Run from the repository root after `dotnet build -c Release src/WhaleTech.Cli`.
set -euo pipefail
W=${WHALE:-src/WhaleTech.Cli/bin/Release/net10.0/whale}
for r in a b; do $W grpo train --task addition --digits 2 --reverse-answer true --pad-operands true --sft-target-accuracy 0.3 --sft-eval-every 5 --hidden 64 --layers 2 --heads 4 --sft-steps 30 --sft-batch 32 --steps 50 --prompts-per-step 4 --num-generations 8 --held-out 50 --eval-every 10 --lr 1e-4 --lr-scheduler cosine --seed 7 --threads 1 --plain --out /tmp/det2/$r > /tmp/det2/$r.log 2>&1; done
for r in a b; do python3 -c "
import json
for l in open('/tmp/det2/$r/metrics.jsonl'):
    d=json.loads(l); [d.pop(k) for k in list(d) if k.startswith('step_time')]; print(json.dumps(d,sort_keys=True))" > /tmp/det2/$r.clean; done
wc -l /tmp/det2/a.clean /tmp/det2/b.clean; cmp /tmp/det2/a.clean /tmp/det2/b.clean && echo IDENTICAL

#!/bin/bash
# Round 5: base policy pretrained on SOLVED 2-digit SUBTRACTION only (same notation: padded operands, reversed
# answers; no addition problem), then GRPO on 2-digit addition with the verifier only.
W=${WHALE:-src/WhaleTech.Cli/bin/Release/net10.0/whale}; OUT=${OUT:-/tmp/reward-only}; mkdir -p $OUT   # from the repo root, after dotnet build -c Release src/WhaleTech.Cli
for seed in 1 2 3; do
  nohup nice -n 10 $W grpo train --task addition --digits 2 --reverse-answer true --pad-operands true \
    --sft-corpus subtraction --sft-steps 600 --sft-batch 64 --sft-lr 1e-3 \
    --rewards accuracy:1,partial:0.5,format:0.1 --mask-truncated true \
    --steps 300 --lr 1e-4 --lr-scheduler cosine --eval-every 25 --held-out 200 --checkpoint-every 50 \
    --seed $seed --threads 1 --plain --out $OUT/r5-s$seed > $OUT/r5-s$seed.log 2>&1 &
done
wait
# Held-out digit accuracy of the start (sft.bin) and end (policy.bin) weights, greedy, per answer position as written:
# for s in 1 2 3; do for w in sft.bin policy.bin; do $W grpo eval --run $OUT/r5-s$s --weights $OUT/r5-s$s/$w --show 200 | python3 digit_acc.py; done; done

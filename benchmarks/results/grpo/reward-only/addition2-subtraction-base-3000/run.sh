#!/bin/bash
# Round 6: round 5 (../addition2-subtraction-base/run.sh) run ten times longer — the same base policy (600 SFT steps on
# SOLVED 2-digit SUBTRACTION only, same notation, no addition problem) and the same verifier-only GRPO on 2-digit
# addition, but 3,000 GRPO steps (lr 1e-4 cosine over all 3,000) instead of 300: round 5's partial credit was still
# rising at step 300. Held-out every 100 steps, checkpoints every 50 (an interrupted run continues with --resume,
# bit-exactly: add --resume to the same command).
W=${WHALE:-src/WhaleTech.Cli/bin/Release/net10.0/whale}; OUT=${OUT:-/tmp/reward-only-3000}; mkdir -p $OUT   # from the repo root, after dotnet build -c Release src/WhaleTech.Cli
for seed in ${SEEDS:-1 2 3}; do
  nohup nice -n 10 $W grpo train --task addition --digits 2 --reverse-answer true --pad-operands true \
    --sft-corpus subtraction --sft-steps 600 --sft-batch 64 --sft-lr 1e-3 \
    --rewards accuracy:1,partial:0.5,format:0.1 --mask-truncated true \
    --steps 3000 --lr 1e-4 --lr-scheduler cosine --eval-every 100 --held-out 200 --checkpoint-every 50 \
    --seed $seed --threads 1 --plain --out $OUT/r6-s$seed ${RESUME:+--resume} >> $OUT/r6-s$seed.log 2>&1 &
done
wait

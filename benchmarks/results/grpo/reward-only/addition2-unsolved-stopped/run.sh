#!/bin/bash
# Round 4: 2-digit reversed padded addition (round 1 fixed): exact-format reward, truncated completions masked,
# per-digit partial credit kept (each answer digit depends only on its column, which every training problem covers).
W=${WHALE:-src/WhaleTech.Cli/bin/Release/net10.0/whale}; OUT=${OUT:-/tmp/reward-only}; mkdir -p $OUT   # from the repo root, after dotnet build -c Release src/WhaleTech.Cli
for seed in 1 2 3; do
  nohup nice -n 10 $W grpo train --task addition --digits 2 --reverse-answer true --pad-operands true \
    --hidden 64 --layers 2 --heads 4 --sft-corpus unsolved --sft-steps 150 --sft-batch 64 --sft-lr 2e-3 \
    --rewards accuracy:1,partial:1,format:0.2 --mask-truncated true --temperature 1.0 --prompts-per-step 8 --num-generations 8 \
    --steps 500 --lr 3e-4 --warmup-steps 10 --eval-every 25 --held-out 200 --checkpoint-every 50 \
    --seed $seed --threads 1 --plain --out $OUT/r4-s$seed > $OUT/r4-s$seed.log 2>&1 &
done

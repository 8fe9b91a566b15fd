#!/bin/bash
# Round 2: 1-digit addition (a+b=, answers 0-18), 30 held-out questions never trained on (70 left for training).
W=${WHALE:-src/WhaleTech.Cli/bin/Release/net10.0/whale}; OUT=${OUT:-/tmp/reward-only}; mkdir -p $OUT   # from the repo root, after dotnet build -c Release src/WhaleTech.Cli
for seed in 1 2 3; do
  nohup nice -n 10 $W grpo train --task addition --digits 1 \
    --hidden 64 --layers 2 --heads 4 --sft-corpus unsolved --sft-steps 150 --sft-batch 64 --sft-lr 2e-3 \
    --rewards accuracy:1,partial:0.5,format:0.2 --mask-truncated true --temperature 1.0 --prompts-per-step 8 --num-generations 8 \
    --steps 400 --lr 1e-4 --warmup-steps 10 --eval-every 20 --held-out 30 --checkpoint-every 50 \
    --seed $seed --threads 1 --plain --out $OUT/r1z1d-s$seed > $OUT/r1z1d-s$seed.log 2>&1 &
done

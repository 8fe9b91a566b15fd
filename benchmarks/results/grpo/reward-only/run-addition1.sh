#!/bin/bash
# Round 3: 1-digit addition, accuracy + format reward only, GRPO lr 1e-3 (round 2: lr 1e-4 with partial credit did not move train accuracy).
W=${WHALE:-src/WhaleTech.Cli/bin/Release/net10.0/whale}; OUT=${OUT:-/tmp/reward-only}; mkdir -p $OUT   # from the repo root, after dotnet build -c Release src/WhaleTech.Cli
run() { # seed lr tag
  nohup nice -n 10 $W grpo train --task addition --digits 1 \
    --hidden 64 --layers 2 --heads 4 --sft-corpus unsolved --sft-steps 150 --sft-batch 64 --sft-lr 2e-3 \
    --rewards accuracy:1,format:0.1 --mask-truncated true --temperature 1.0 --prompts-per-step 8 --num-generations 8 \
    --steps 300 --lr $2 --warmup-steps 10 --eval-every 20 --held-out 30 --checkpoint-every 50 \
    --seed $1 --threads 1 --plain --out $OUT/$3-s$1 > $OUT/$3-s$1.log 2>&1 &
}
for seed in 1 2 3; do run $seed 1e-3 r3; done
run 1 3e-4 r3lr3e-4

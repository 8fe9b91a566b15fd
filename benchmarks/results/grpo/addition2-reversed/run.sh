#!/usr/bin/env bash
# Issue 6 headline: 2-digit addition, answer least-significant digit first, operands zero-padded; SFT stops as soon as
# greedy validation exact match reaches 20 % (checked every 2 steps), then 500 GRPO steps. Three seeds, one after the
# other, 1 torch thread each. Run from the repository root after `dotnet build -c Release src/WhaleTech.Cli`.
# Outputs went to /tmp/g3/final-s<seed> and were copied here without weights and checkpoints.
set -euo pipefail
W=src/WhaleTech.Cli/bin/Release/net10.0/whale
OUT=${OUT:-/tmp/g3}
for seed in 1 2 3; do
  /usr/bin/time -f "%e s wall" -o "$OUT/final-s$seed.time" \
  $W grpo train --task addition --digits 2 --reverse-answer true --pad-operands true \
    --sft-target-accuracy 0.2 --sft-eval-every 2 --sft-steps 1000 \
    --steps 500 --lr 1e-4 --lr-scheduler cosine --eval-every 25 --held-out 200 \
    --seed $seed --threads 1 --plain --out "$OUT/final-s$seed" > "$OUT/final-s$seed.log" 2>&1
done

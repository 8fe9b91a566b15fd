#!/usr/bin/env bash
# Issue 6 headline: 2-digit addition, answer least-significant digit first (--reverse-answer), operands zero-padded
# (--pad-operands); SFT stops as soon as greedy validation exact match reaches 20 % (checked every 2 steps; the
# validation problems are not the held-out ones), then 500 GRPO steps (lr 1e-4, cosine to 1e-5; every other option
# at the GrpoOptions defaults: accuracy reward only, τ 0.7, P 16 × G 8, β 0, dynamic sampling, ε 0.2).
# Run from the repository root after `dotnet build -c Release src/WhaleTech.Cli`; 1 torch thread per run.
# What was actually run (shared 2-core VM, other helpers' jobs running too): seed 1 first (its first ~15 minutes
# overlapped a Countdown run and two early seed-2/3 attempts that were killed), then seeds 2 and 3 in parallel after
# it, each exactly this command. Outputs went to /tmp/g3/final-s<seed> and were copied here without weights and
# checkpoints (seed<k>/; train.log is the console output, wall-time.txt the /usr/bin/time line).
set -euo pipefail
W=src/WhaleTech.Cli/bin/Release/net10.0/whale
OUT=${OUT:-/tmp/g3}
for seed in 1 2 3; do
  /usr/bin/time -f "%e s wall, %U s user, %S s sys" -o "$OUT/final-s$seed.time" \
  $W grpo train --task addition --digits 2 --reverse-answer true --pad-operands true \
    --sft-target-accuracy 0.2 --sft-eval-every 2 --sft-steps 1000 \
    --steps 500 --lr 1e-4 --lr-scheduler cosine --eval-every 25 --held-out 200 \
    --seed $seed --threads 1 --plain --out "$OUT/final-s$seed" > "$OUT/final-s$seed.log" 2>&1
done

#!/usr/bin/env bash
# Issue 6 headline, fourth round: the third round's command (earlier-runs.md, third round) with ONE change, the SFT
# learning rate 5e-4 instead of the default 2e-3 (--sft-lr 5e-4). 2-digit addition, answer least-significant digit
# first (--reverse-answer), zero-padded operands (--pad-operands); SFT stops as soon as greedy validation exact match
# reaches 20 % (checked every 2 steps; validation problems are not held-out ones), then 500 GRPO steps (lr 1e-4,
# cosine to 1e-5; every other option at the GrpoOptions defaults: accuracy reward only, τ 0.7, P 16 × G 8, β 0,
# dynamic sampling, ε 0.2). 0.81M-parameter MLA policy.
# Run from the repository root after `dotnet build -c Release src/WhaleTech.Cli`; 1 torch thread per run.
# What was actually run (shared 2-core VM): seed 2 first, as a screening run beside other seed-2 attempts
# (earlier-runs.md: seed2-screening), output in /tmp/g4/F; seeds 1 and 3 in parallel with each other and with seed 2's GRPO phase,
# output in /tmp/g5/final-s<seed>; each exactly this command. Copied here without weights and checkpoints
# (seed<k>/; train.log is the console output, wall-time.txt the /usr/bin/time line).
set -euo pipefail
W=src/WhaleTech.Cli/bin/Release/net10.0/whale
OUT=${OUT:-/tmp/g5}
mkdir -p "$OUT"
for seed in 1 2 3; do
  /usr/bin/time -f "%e s wall, %U s user, %S s sys" -o "$OUT/final-s$seed.time" \
  $W grpo train --task addition --digits 2 --reverse-answer true --pad-operands true \
    --sft-target-accuracy 0.2 --sft-eval-every 2 --sft-steps 1000 --sft-lr 5e-4 \
    --steps 500 --lr 1e-4 --lr-scheduler cosine --eval-every 25 --held-out 200 \
    --seed $seed --threads 1 --plain --out "$OUT/final-s$seed" > "$OUT/final-s$seed.log" 2>&1
done

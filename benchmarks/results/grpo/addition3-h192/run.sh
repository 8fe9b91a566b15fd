#!/usr/bin/env bash
# Issue 17 item 3: 3-digit addition, <= 30 % -> >= 95 % held-out, 3 seeds. The command prepared in
# ../addition3-prepared/run.sh, unchanged: a ~1.8M-parameter MLA policy (hidden 192, 4 layers, 6 heads), answers
# least-significant digit first, zero-padded operands; SFT until greedy validation exact match reaches 20 % (checked
# every 10 steps, at most 3,000 steps, lr 5e-4), then 1,000 GRPO steps (lr 1e-4 cosine; every other option at the
# GrpoOptions defaults: accuracy reward only, tau 0.7, P 16 x G 8, beta 0, dynamic sampling, eps 0.2).
# Run from the repository root after `dotnet build -c Release src/WhaleTech.Cli`; 1 torch thread per run.
# What was actually run (shared 2-core VM, 2026-12-01): this command from a copy of the Release build of commit
# eaf5cc7, seeds 1 and 2 in parallel from 18:20 UTC, seed 3 from 18:30 beside them, output in /tmp/add3/s<seed>.
# Copied here without weights, checkpoints and TensorBoard events (seed<k>/; train.log is the console output,
# wall-time.txt the /usr/bin/time line).
set -euo pipefail
W=src/WhaleTech.Cli/bin/Release/net10.0/whale
OUT=${OUT:-/tmp/add3}
mkdir -p "$OUT"
for seed in 1 2 3; do
  /usr/bin/time -f "%e s wall, %U s user, %S s sys" -o "$OUT/s$seed.time" \
  $W grpo train --task addition --digits 3 --reverse-answer true --pad-operands true \
    --hidden 192 --layers 4 --heads 6 \
    --sft-target-accuracy 0.2 --sft-eval-every 10 --sft-steps 3000 --sft-lr 5e-4 \
    --steps 1000 --lr 1e-4 --lr-scheduler cosine --eval-every 50 --held-out 200 \
    --seed $seed --threads 1 --plain --out "$OUT/s$seed" > "$OUT/s$seed.log" 2>&1
done

#!/usr/bin/env bash
# BF16 vs FP32 AdamW moments (DeepSeek-V3 §3.3 "Low-Precision Optimizer States") in the FP8 training comparison:
# the same DeepSeekLM (MLA, hidden 128, 2 layers, 300 steps, batch 8×64) as ../train-cpu-h128-l2-s300, with BF16
# linears (baseline) and the DeepSeek-V3 FP8 recipe, each with FP32 and with BF16 moments, seeds 1–3, 1 torch thread.
# The FP32-moment rows must reproduce ../train-cpu-h128-l2-s300's numbers exactly (AdamWOptimizer in FP32 mode is
# torch.optim.AdamW bit for bit).
# Run from the repository root after `dotnet build -c Release src/WhaleTech.Cli`.
set -euo pipefail
W=src/WhaleTech.Cli/bin/Release/net10.0/whale
OUT=benchmarks/results/fp8/bf16-moments-cpu
WHALETECH_THREADS=1 /usr/bin/time -f "%e s wall, %U s user, %S s sys" -o "$OUT/wall-time.txt" \
  $W fp8 train --device cpu --steps 300 --seeds 1,2,3 --hidden 128 --layers 2 --batch 8 --seq-len 64 \
    --recipes bf16,deepseek-v3 --optimizer-moments fp32,bf16 --out "$OUT/train-cpu-h128-l2-s300" | tee "$OUT/train.log"

# Supplement (all 6 pairs above lean the same way): three more seeds, BF16 linears only, both moment precisions.
WHALETECH_THREADS=1 /usr/bin/time -f "%e s wall, %U s user, %S s sys" -o "$OUT/wall-time-seeds456.txt" \
  $W fp8 train --device cpu --steps 300 --seeds 4,5,6 --hidden 128 --layers 2 --batch 8 --seq-len 64 \
    --recipes bf16 --optimizer-moments fp32,bf16 --out "$OUT/train-cpu-h128-l2-s300-bf16-seeds456" | tee "$OUT/train-seeds456.log"

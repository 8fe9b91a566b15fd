#!/usr/bin/env bash
# Batched and sampled MTP speculative decoding on CPU (1 torch thread), the same 4-layer model as
# mtp-speculate-4l.* (`whale mtp train` defaults: MLA, hidden 128, D = 1, λ = 0.3, 600 steps, seed 1).
# Run from the repository root. Training takes ≈ 3–6 minutes on a shared 2-core machine; the four
# measurements ≈ 2 minutes.
set -euo pipefail
export WHALETECH_THREADS=1
dotnet build -c Release src/WhaleTech.Cli > /dev/null
whale() { dotnet run -c Release --no-build --project src/WhaleTech.Cli -- "$@"; }
out=benchmarks/results/mtp-cpu
[ -f runs/mtp-l4/model.safetensors ] || whale mtp train --device cpu --out runs/mtp-l4 | tee "$out/train-l4-eval.txt"
# name:args (explicit names, so the batch-1 greedy run does not replace the older mtp-speculate-4l.* files)
for run in "spec-4l-b1-greedy:--batch-size 1" "spec-4l-b4-greedy:--batch-size 4" \
           "spec-4l-b1-t0p7:--batch-size 1 --temperature 0.7" "spec-4l-b4-t0p7:--batch-size 4 --temperature 0.7"; do
  whale mtp speculate --device cpu --model runs/mtp-l4 --repetitions 9 --warmup 2 --seed 1 ${run#*:} --out "$out" --name "${run%%:*}"
done

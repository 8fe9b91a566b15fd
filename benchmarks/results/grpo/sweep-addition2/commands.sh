#!/usr/bin/env bash
# Short seed-1 runs used to choose the defaults (2-digit addition, 0.81M MLA policy, --threads 1, shared 2-core VM).
# Run from the repository root after `dotnet build src/WhaleTech.Cli`; outputs went to /tmp/g2 (copied here without
# weights/checkpoints).
set -euo pipefail
W=src/WhaleTech.Cli/bin/Debug/net10.0/whale
M="--task addition --digits 2 --hidden 128 --layers 4 --heads 4 --held-out 200 --seed 1 --threads 1"
# SFT starts (all other SFT options at their defaults: batch 64, lr 2e-3, warmup + cosine to 10 %)
for n in 350 400 600 1000; do $W grpo sft $M --sft-steps $n --sft-batch 64 --out /tmp/g2/sft$n; done
C="$M --plain --eval-every 20 --sample-every 1000 --checkpoint-every 1000"
$W grpo train --init /tmp/g2/sft600/sft.bin $C --steps 80  --lr 1e-4 --temperature 1   --rewards accuracy:1,format:0.1 --beta 0 --dynamic-sampling --prompts-per-step 16 --num-generations 8 --out /tmp/g2/q600a
$W grpo train --init /tmp/g2/sft600/sft.bin $C --steps 60  --lr 2e-5 --temperature 1   --rewards accuracy:1 --beta 0 --dynamic-sampling --prompts-per-step 16 --num-generations 8 --out /tmp/g2/q600b
$W grpo train --init /tmp/g2/sft400/sft.bin $C --steps 100 --lr 3e-5 --temperature 0.7 --rewards accuracy:1 --beta 0 --dynamic-sampling --prompts-per-step 16 --num-generations 8 --out /tmp/g2/q400a
$W grpo train --init /tmp/g2/sft400/sft.bin $C --steps 100 --lr 1e-4 --temperature 0.7 --rewards accuracy:1 --beta 0 --dynamic-sampling --prompts-per-step 16 --num-generations 8 --out /tmp/g2/q400b
$W grpo train --init /tmp/g2/sft350/sft.bin $C --steps 100 --lr 3e-5 --temperature 0.7 --rewards accuracy:1 --beta 0 --dynamic-sampling --prompts-per-step 16 --num-generations 8 --out /tmp/g2/q350a

#!/usr/bin/env bash
# Short seed-1 runs (third round) that chose the headline configuration. 2-digit addition, 0.81M MLA policy,
# 1 torch thread, shared 2-core VM. Outputs went to /tmp/g3 (copied here without weights).
set -euo pipefail
W=src/WhaleTech.Cli/bin/Release/net10.0/whale
# SFT starts: reversed answer only (rsft1), reversed + padded operands (psft1, psft1b), stopped at a validation target
$W grpo sft --task addition --digits 2 --reverse-answer true --sft-target-accuracy 0.25 --sft-eval-every 10 --sft-steps 1000 --seed 1 --threads 1 --held-out 200 --out /tmp/g3/rsft1
$W grpo sft --task addition --digits 2 --reverse-answer true --pad-operands true --sft-target-accuracy 0.25 --sft-eval-every 10 --sft-steps 1000 --seed 1 --threads 1 --held-out 200 --out /tmp/g3/psft1
$W grpo sft --task addition --digits 2 --reverse-answer true --pad-operands true --sft-target-accuracy 0.2 --sft-eval-every 2 --sft-steps 1000 --seed 1 --threads 1 --held-out 200 --out /tmp/g3/psft1b
C="--seed 1 --threads 1 --held-out 200 --plain --sample-every 1000 --checkpoint-every 1000"
R="--task addition --digits 2 --reverse-answer true"
for a in "lr3e4:--lr 3e-4" "lr1e4:--lr 1e-4" "lr3e5:--lr 3e-5" "lr1e4t1:--lr 1e-4 --temperature 1"; do
  $W grpo train $R $C --init /tmp/g3/rsft1/sft.bin --eval-every 25 --steps 50 ${a#*:} --out /tmp/g3/r1-${a%%:*}
done
P="$R --pad-operands true"
$W grpo train $P $C --init /tmp/g3/psft1b/sft.bin --eval-every 20 --steps 100 --lr 1e-4 --out /tmp/g3/p1-lr1e4
$W grpo train $P $C --init /tmp/g3/psft1b/sft.bin --eval-every 20 --steps 100 --lr 3e-4 --out /tmp/g3/p1-lr3e4
$W grpo train $P $C --init /tmp/g3/psft1b/sft.bin --eval-every 25 --steps 300 --lr 1e-4 --lr-scheduler cosine --out /tmp/g3/p1-lr1e4-cos300

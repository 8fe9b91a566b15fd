#!/usr/bin/env bash
# Issue 17 item 2 — GRPO past the SFT plateau, one task per invocation: TASK=countdown|linear.
# Per seed 1..3:
#   1. SFT 4,000 steps, greedy validation exact match every 250 steps (the plateau curve; target 1.0 is never
#      reached, so the check only logs). Validation problems are never held-out ones.
#   2a. GRPO from the plateau weights (--init), 400 steps, held-out every 50;
#   2b. SFT continued from the same weights (whale grpo sft --init) for the SAME CPU time (user+sys of the
#       process, from /usr/bin/time): steps = GRPO's CPU seconds × 4,000 / phase 1's CPU seconds. CPU time rather
#       than wall time so that pausing the runs (SIGSTOP, for quiet benchmarks on the shared machine) does not skew
#       the budget; on an idle core the two agree within the runtime's own helper threads.
# Held-out exact match on the same 500 problems for both arms. 1 torch thread per run.
set -euo pipefail
W=${W:-src/WhaleTech.Cli/bin/Release/net10.0/whale}
OUT=${OUT:-/tmp/sft-plateau}
SFT_STEPS=${SFT_STEPS:-4000}
task=${TASK:?TASK=countdown or TASK=linear}
mkdir -p "$OUT"
knobs=(--task "$task"); [ "$task" = countdown ] && knobs+=(--numbers 3 --max-number 10)
cpu() { awk '{ printf "%.1f", $1 + $2 }' "$1"; }
for seed in ${SEEDS:-1 2 3}; do
  d="$OUT/$task-s$seed"; mkdir -p "$d"
  /usr/bin/time -f "%U %S %e" -o "$d/sft.time" \
    $W grpo sft "${knobs[@]}" --sft-steps "$SFT_STEPS" --sft-target-accuracy 1.0 --sft-eval-every 250 --held-out 500 \
    --seed $seed --threads 1 --out "$d/sft" > "$d/sft.log" 2>&1
  /usr/bin/time -f "%U %S %e" -o "$d/grpo.time" \
    $W grpo train "${knobs[@]}" --init "$d/sft/sft.bin" --steps 400 --eval-every 50 --held-out 500 \
    --seed $seed --threads 1 --plain --out "$d/grpo" > "$d/grpo.log" 2>&1
  n=$(awk -v g="$(cpu "$d/grpo.time")" -v s="$(cpu "$d/sft.time")" -v sft="$SFT_STEPS" 'BEGIN { n = g * sft / s; printf "%d", (n < 1 ? 1 : n + 0.5) }')
  /usr/bin/time -f "%U %S %e" -o "$d/sft-more.time" \
    $W grpo sft "${knobs[@]}" --init "$d/sft/sft.bin" --sft-steps "$n" --held-out 500 \
    --seed $seed --threads 1 --out "$d/sft-more" > "$d/sft-more.log" 2>&1
  echo "$task seed $seed: sft $(cpu "$d/sft.time") CPU-s, grpo $(cpu "$d/grpo.time") CPU-s, continued sft $n steps ($(cpu "$d/sft-more.time") CPU-s)" >> "$OUT/times.txt"
done

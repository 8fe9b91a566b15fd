#!/usr/bin/env bash
# Every owed GPU measurement and check, in one call of the device tool (one H200, ≤ 8 minutes, ≤ 8 files back).
#
#   bash tools/gpu/run-all.sh            on the GPU machine; needs the bundles .gpu (benchmarks) and .gpu-cli (CLI)
#                                        carried (tools/gpu/README.md), writes $OUT/{results.tgz,summary.md,run-all.log}
#   bash tools/gpu/run-all.sh --dry-run  the same steps on the CPU with tiny shapes (--quick, small sweeps), through
#                                        the built outputs (dotnet <dll>) instead of the bundles; CI runs this
#                                        (tests/WhaleTech.Tests/Bench/GpuRunbookTests.cs). OUT defaults to a temp dir.
#
# Each step has its own timeout and the whole run a deadline (RUNALL_BUDGET_S, default 450 s real / 900 s dry): a
# step that would start after the deadline is recorded as skipped, never half-run. A failed step is recorded and
# the run goes on; the exit status is 1 if any step failed (skips are not failures). summary.md lists every step
# with its status and seconds; every step's log is in results.tgz (logs/<step>.log).
set -uo pipefail
cd "$(dirname "$0")/../.."

dry=0
[ "${1:-}" = "--dry-run" ] && dry=1
OUT=${OUT:-$(mktemp -d)}
R="$OUT/r"
mkdir -p "$R/logs"
exec > >(tee "$OUT/run-all.log") 2>&1
start=$(date +%s)

if [ $dry = 1 ]; then
  cfg=${RUNALL_CONFIGURATION:-Debug}
  BENCH="dotnet benchmarks/WhaleTech.Benchmarks/bin/$cfg/net10.0/WhaleTech.Benchmarks.dll"
  CLI="dotnet src/WhaleTech.Cli/bin/$cfg/net10.0/whale.dll"
  for f in "${BENCH#dotnet }" "${CLI#dotnet }"; do [ -f "$f" ] || { echo "missing $f: build first (dotnet build WhaleTech.sln -c $cfg)" >&2; exit 2; }; done
  DEV=cpu; Q=--quick; budget=${RUNALL_BUDGET_S:-900}
  slack=4   # a liveness check on a shared CI machine: tiny shapes, but every timeout × 4 (≈ 1–2 min when idle)
  export WHALETECH_THREADS=${WHALETECH_THREADS:-1}
else
  for f in .gpu/run.sh .gpu-cli/run.sh; do [ -f "$f" ] || { echo "missing $f: bundle first (tools/gpu/README.md)" >&2; exit 2; }; done
  BENCH="bash .gpu/run.sh"; CLI="bash .gpu-cli/run.sh"
  DEV=cuda; Q=; budget=${RUNALL_BUDGET_S:-450}; slack=1
fi

failed=0
echo "| step | status | seconds |" > "$R/summary.md"
echo "|---|---|---|" >> "$R/summary.md"

# step NAME TIMEOUT_S COMMAND...: runs COMMAND with a timeout, logs to logs/NAME.log, records the outcome.
step() {
  local name=$1 limit=$(( $2 * slack )); shift 2
  local now=$(( $(date +%s) - start ))
  if [ $((now + limit)) -gt "$budget" ]; then   # might not finish before the deadline: skip, never half-run
    echo "| $name | skipped (deadline: ${now}s of ${budget}s used) | 0 |" >> "$R/summary.md"; echo "skip $name"; return
  fi
  local t0=$(date +%s) status
  if declare -F "$1" > /dev/null; then timeout "$limit" bash -c "$*" > "$R/logs/$name.log" 2>&1   # a function below
  else timeout "$limit" "$@" > "$R/logs/$name.log" 2>&1; fi
  local rc=$?
  case $rc in
    0) status=ok ;;
    124) status="timed out after ${limit}s"; failed=1 ;;
    *) status="failed (exit $rc)"; failed=1 ;;
  esac
  local dt=$(( $(date +%s) - t0 ))
  echo "| $name | $status | $dt |" >> "$R/summary.md"
  echo "$name: $status (${dt}s)"
}

# Python parity with transformers (tools/hf): only where python3 has torch + transformers (the GPU machine).
hf() {
  if ! python3 -c "import torch, transformers, safetensors" 2>/dev/null; then echo "no python torch/transformers here: skipped"; return 0; fi
  [ -d tools/hf/whaletech-export ] || $CLI checkpoint export-parity tools/hf/whaletech-export || return 1
  python3 tools/hf/make_fixtures.py "$R/hf" && python3 tools/hf/check_reverse.py tools/hf/whaletech-export "$R/reverse-parity"
}

if [ $dry = 1 ]; then sweep_count=65536; else sweep_count=1073741824; fi
sweep() { for q in 0 1 2 3; do $CLI fp8 sweep --device $DEV --start $((q * sweep_count)) --count $sweep_count --out "$R/sweep-$DEV-q$q.json" || return 1; done; }
export R DEV CLI sweep_count
export -f hf sweep
if [ $dry = 1 ]; then mla_args=(--shapes v2-lite --batch 1 --context 64 --iterations 1); else mla_args=(--shapes v3); fi

# Order = priority: what is owed longest and matters most first, so a deadline skips the least important.
step info            20 $CLI info --device $DEV
step hf-parity       90 hf
step mla-roofline    60 $BENCH mla-roofline --device $DEV $Q --out "$R"
step moe-roofline    60 $BENCH moe-roofline --device $DEV $Q --out "$R"
step mla-decode      60 $BENCH mla-decode --device $DEV $Q --out "$R"
step moe             60 $BENCH moe --device $DEV $Q --out "$R"
step generate        45 $BENCH generate --device $DEV $Q --out "$R"
step fp8             60 $BENCH fp8 --device $DEV $Q --out "$R"
step fp8-sweep       60 sweep
step decode          30 $BENCH decode --device $DEV $Q --out "$R"
step rollout         30 $BENCH rollout --device $DEV $Q --out "$R"
step speculative     40 $BENCH speculative --device $DEV $Q --out "$R"
step matmul          20 $BENCH matmul --device $DEV $Q --out "$R"
step mla-bench       40 $CLI mla bench --device $DEV "${mla_args[@]}" --out "$R/mla-bench-$DEV.json"
step memory          30 $BENCH memory --device $DEV --quick --out "$R"

total=$(( $(date +%s) - start ))
echo "" >> "$R/summary.md"
echo "$( [ $dry = 1 ] && echo 'dry run (CPU, tiny shapes)' || echo 'GPU run' ): ${total}s of a ${budget}s budget; $(date -u +%FT%TZ)" >> "$R/summary.md"
cp "$R/summary.md" "$OUT/summary.md"
tar -C "$R" -czf "$OUT/results.tgz" . && rm -rf "$R"
echo "wrote $OUT/results.tgz and $OUT/summary.md (${total}s)"
exit $failed

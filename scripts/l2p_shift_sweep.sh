#!/usr/bin/env bash
# L2P students at several training shifts, one budget, side by side on one GPU (a student's step is bound by kernel
# launches, so runs side by side cost little each): one shared synthetic set -> a fresh x-prediction transfer per
# shift -> the same --steps for every student, sized to SECONDS from the script's start. No eval: run
# `pixdiff eval l2p --student OUT/s*/weights ...` afterwards (on a CPU, with --cache for the source's samples).
#
#   scripts/l2p_shift_sweep.sh OUT SECONDS "SHIFTS" [PROMPTS=2000] [BATCH=64] [SOURCE=ldm-shapes]
#
# STEPS fixes the step count (a fresh student wants about 2,000 steps whatever the batch); otherwise it is sized
# from STEP_SECONDS (default 0.2: one student of four side by side on an H200) after about 180 s of start-up (four
# processes loading 4,000 images). --max-minutes is the safety net (the weights reached are exported at the limit).
# $PIXDIFF is the command (default pixdiff).
set -euo pipefail
out=${1:?usage: l2p_shift_sweep.sh OUT SECONDS "SHIFTS" [PROMPTS] [BATCH] [SOURCE]}
budget=${2:?seconds}; read -r -a shifts <<<"${3:?shifts, e.g. \"1.5 2 2.5 3\"}"
n=${4:-2000} batch=${5:-64} src=${6:-ldm-shapes}
px=${PIXDIFF:-pixdiff}
start=$(date +%s)
stamp() { echo "=== $(date +%T) $*"; }
mkdir -p "$out"
stamp "synth $n prompts"
$px synth --teacher "$src" --n "$n" --cfg 4 --batch 64 --out "$out/synth" --json "$out/synth.json"
for s in "${shifts[@]}"; do
  $px transfer --source "$src" --prediction x --shift "$s" --out "$out/s$s/student0" > "$out/s$s.transfer.log"
done
left=$(( budget - ($(date +%s) - start) ))
steps=${STEPS:-$(python3 -c "print(max(100, int(0.85 * ($left - 180) / ${STEP_SECONDS:-0.2}) // 100 * 100))")}
stamp "train ${#shifts[@]} students x $steps steps of batch $batch side by side ($left s left)"
pids=()
for s in "${shifts[@]}"; do
  $px train l2p --preset small --init "$out/s$s/student0" --data "$out/synth" --batch "$batch" --steps "$steps" \
    --out "$out/s$s/student" --no-progress --max-minutes "$(python3 -c "print(($left - 30) / 60)")" \
    > "$out/s$s.log" 2>&1 &
  pids+=($!)
done
ok=0
for p in "${pids[@]}"; do wait "$p" || ok=1; done
for s in "${shifts[@]}"; do echo "shift $s: $(tail -n 1 "$out/s$s.log")"; done
stamp done
exit $ok

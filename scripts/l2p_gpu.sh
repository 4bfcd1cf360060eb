#!/bin/bash
# L2P's student on one GPU within one time budget: synthetic set -> transfer -> calibrate the step time -> train the
# student for as many steps as fit (a full cosine schedule) -> GenEval-lite against its source, all within
# TOTAL_SECONDS: training gets what the first stages leave, less EVAL_SECONDS (default 150) kept for the eval.
# usage: scripts/l2p_gpu.sh RUN_DIR TOTAL_SECONDS [PROMPTS=2000] [BATCH=64] [SOURCE=ldm-shapes]
# Every step is a pixdiff command (--device auto picks the GPU); rerunning resumes the synthetic set.
# Settings (environment):
#   INIT          a student to continue (e.g. l2p-shapes) instead of a fresh x-prediction transfer
#   SHIFT         the fresh transfer's training shift (default 3)
#   SYNTH         the synthetic set's folder (default RUN_DIR/synth; share one between runs)
#   STEP_SECONDS  seconds per training step, known from an earlier run: skips the 60-step calibration
#   EVAL_PROMPTS  the eval's held-out prompts (default 200); 0 skips the eval (run it on a CPU afterwards)
#   COPY_TO       a folder to copy weights and results into (as COPY_TO/<RUN_DIR name>/) as soon as they exist
#                 (a lent machine keeps nothing; it returns at most 8 files, so for several runs pack them with
#                 scripts/device_pack.sh instead)
set -euo pipefail
R=${1:?run folder}; TOTAL=${2:?total seconds}; N=${3:-2000}; B=${4:-64}; SRC=${5:-ldm-shapes}
START=$(date +%s)
P=${PIXDIFF:-pixdiff}
keep() { [ -z "${COPY_TO:-}" ] || { mkdir -p "$COPY_TO/$(basename "$R")"; cp "$@" "$COPY_TO/$(basename "$R")/"; }; }
stamp() { echo "=== $(date +%T) $*"; }
mkdir -p "$R"
stamp synth
SYNTH=${SYNTH:-$R/synth}
$P synth --teacher "$SRC" --n "$N" --cfg 4 --batch 64 --out "$SYNTH" --json "$R/synth.json"
INIT=${INIT:-$R/student0}
if [ "$INIT" = "$R/student0" ] && [ ! -f "$INIT/config.json" ]; then
  stamp transfer
  $P transfer --source "$SRC" --prediction x --shift "${SHIFT:-3}" --out "$INIT" > /dev/null
fi
if [ -z "${STEP_SECONDS:-}" ]; then
  stamp calibrate
  rm -rf "$R/cal"
  $P train l2p --preset small --init "$INIT" --data "$SYNTH" --batch "$B" --steps 60 \
    --out "$R/cal" --no-progress > /dev/null
  STEP_SECONDS=$(python3 -c "import json, sys; log = {r['step']: r['elapsed_s'] for r in map(json.loads, open(sys.argv[1]))}
print((log[60] - log[20]) / 40)" "$R/cal/log.jsonl")  # the first steps include start-up
fi
BUDGET=$(( TOTAL - ($(date +%s) - START) - ${EVAL_SECONDS:-150} ))
[ "$BUDGET" -ge 60 ] || { echo "only ${BUDGET}s left for training: raise TOTAL_SECONDS or lower PROMPTS" >&2; exit 1; }
STEPS=$(python3 -c "print(max(100, int(0.9 * $BUDGET / $STEP_SECONDS) // 100 * 100))")  # 10% for loading, export
stamp "train $STEPS steps of batch $B ($BUDGET s left for training)"
$P train l2p --preset small --init "$INIT" --data "$SYNTH" --batch "$B" --steps "$STEPS" \
  --out "$R/student" --no-progress --max-minutes "$(python3 -c "print($BUDGET / 60)")"
keep "$R/student/weights/"* "$R/student/log.jsonl"
[ "${EVAL_PROMPTS:-200}" -gt 0 ] || { stamp "done (eval skipped)"; exit 0; }
stamp eval
$P eval l2p --source "$SRC" --student "$R/student/weights" --prompts "${EVAL_PROMPTS:-200}" --cfg 4 \
  --json "$R/eval.json" --sheet "$R/eval-sheet.jpg"
keep "$R/eval.json" "$R/eval-sheet.jpg"
stamp done

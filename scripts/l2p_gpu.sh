#!/bin/bash
# L2P's student on one GPU within one time budget: synthetic set -> transfer -> calibrate the step time -> train the
# student for as many steps as fit (a full cosine schedule) -> GenEval-lite against its source, all within
# TOTAL_SECONDS: training gets what the first stages leave, less EVAL_SECONDS (default 150) kept for the eval.
# usage: scripts/l2p_gpu.sh RUN_DIR TOTAL_SECONDS [PROMPTS=2000] [BATCH=64] [SOURCE=ldm-shapes]
# Every step is a pixdiff command (--device auto picks the GPU); rerunning resumes the synthetic set.
# INIT: a student to continue (e.g. l2p-shapes) instead of a fresh x-prediction transfer; EVAL_PROMPTS (default
# 200) sets the eval's held-out prompts, 0 skips the eval (run it on a CPU afterwards); COPY_TO, a folder to copy
# the weights and results into as soon as they exist (a lent machine keeps nothing).
set -euo pipefail
R=${1:?run folder}; TOTAL=${2:?total seconds}; N=${3:-2000}; B=${4:-64}; SRC=${5:-ldm-shapes}
START=$(date +%s)
P=${PIXDIFF:-pixdiff}
keep() { [ -z "${COPY_TO:-}" ] || cp "$@" "$COPY_TO/"; }
stamp() { echo "=== $(date +%T) $*"; }
mkdir -p "$R"
stamp synth
$P synth --teacher "$SRC" --n "$N" --cfg 4 --batch 64 --out "$R/synth" --json "$R/synth.json"
INIT=${INIT:-$R/student0}
if [ "$INIT" = "$R/student0" ] && [ ! -f "$INIT/config.json" ]; then
  stamp transfer
  $P transfer --source "$SRC" --prediction x --shift 3 --out "$INIT" > /dev/null
fi
stamp calibrate
rm -rf "$R/cal"
$P train l2p --preset small --init "$INIT" --data "$R/synth" --batch "$B" --steps 60 \
  --out "$R/cal" --no-progress > /dev/null
BUDGET=$(( TOTAL - ($(date +%s) - START) - ${EVAL_SECONDS:-150} ))
[ "$BUDGET" -ge 60 ] || { echo "only ${BUDGET}s left for training: raise TOTAL_SECONDS or lower PROMPTS" >&2; exit 1; }
STEPS=$(python3 - "$R/cal/log.jsonl" "$BUDGET" <<'PY'
import json, sys
log = {r["step"]: r["elapsed_s"] for r in map(json.loads, open(sys.argv[1]))}
per_step = (log[60] - log[20]) / 40  # the first steps include start-up
print(max(100, int(0.9 * float(sys.argv[2]) / per_step) // 100 * 100))  # 10% for loading and export
PY
)
stamp "train $STEPS steps of batch $B ($BUDGET s left for training)"
$P train l2p --preset small --init "$INIT" --data "$R/synth" --batch "$B" --steps "$STEPS" \
  --out "$R/student" --no-progress --max-minutes "$(python3 -c "print($BUDGET / 60)")"
keep "$R/student/weights/"* "$R/student/log.jsonl"
[ "${EVAL_PROMPTS:-200}" -gt 0 ] || { stamp "done (eval skipped)"; exit 0; }
stamp eval
$P eval l2p --source "$SRC" --student "$R/student/weights" --prompts "${EVAL_PROMPTS:-200}" --cfg 4 \
  --json "$R/eval.json" --sheet "$R/eval-sheet.jpg"
keep "$R/eval.json" "$R/eval-sheet.jpg"
stamp done

#!/usr/bin/env bash
# The L2P ablations of docs/benchmarks.md in one table: six students of the same source, each trained for the same
# number of steps, scored together by one `pixdiff eval l2p` run on the held-out prompts.
#
#   scripts/l2p_ablations.sh SOURCE SYNTH OUT [STEPS] [CFG]
#
#   main       Detailer Head, frozen middle, the first half of the synthetic set (N images)
#   real       the same on rendered scenes (--data shapes) instead of the source's images
#   full       the whole transformer trained (--full-finetune)
#   linear     a linear unpatchify in place of the Detailer Head (transfer --head linear)
#   half       N / 2 synthetic images
#   twice      2N synthetic images: the whole of SYNTH
#
# SYNTH must hold 2N images: `pixdiff synth --n 2P` extends a P-prompt set, the first N images are the P-prompt set.
# Resumable: a finished student (OUT/NAME/weights) is kept, a stopped one goes on from its checkpoint.
# $PIXDIFF is the command (default pixdiff); PRESET=tiny runs the tiny presets (a check of the script); $EVAL_ARGS
# go to `pixdiff eval l2p` (e.g. "--prompts 4 --per-prompt 1" for that check); $TRANSFER_ARGS to both transfers
# (default "--prediction x --shift 3", the recipe of the shipped l2p-shapes; TRANSFER_ARGS="" is the velocity
# recipe of the session-7 table in docs/benchmarks.md).
set -euo pipefail
src=$1 synth=$2 out=$3 steps=${4:-2000} cfg=${5:-}
px=${PIXDIFF:-pixdiff}
preset=${PRESET:-small}
targs=${TRANSFER_ARGS-"--prediction x --shift 3"}
total=$(wc -l <"$synth/captions.jsonl")
half=$((total / 2))
mkdir -p "$out"

# shellcheck disable=SC2086
[ -d "$out/student" ] || $px transfer --source "$src" $targs --out "$out/student" --json "$out/transfer.json"
# shellcheck disable=SC2086
[ -d "$out/student-linear" ] || $px transfer --source "$src" $targs --head linear \
  --out "$out/student-linear" --json "$out/transfer-linear.json"

train() {  # train NAME INIT DATA [options...]
  local name=$1 init=$2 data=$3 resume=()
  shift 3
  [ -d "$out/$name/weights" ] && return 0
  [ -f "$out/$name/state.pt" ] && resume=(--resume)
  echo "$(date -u +%FT%TZ) $name" >&2
  $px train l2p --preset "$preset" --steps "$steps" --init "$init" --data "$data" --out "$out/$name" \
    --no-progress "${resume[@]}" "$@" >"$out/$name.log" 2>&1
}
train main "$out/student" "$synth" --limit "$half"
train real "$out/student" shapes
train full "$out/student" "$synth" --limit "$half" --full-finetune
train linear "$out/student-linear" "$synth" --limit "$half"
train half "$out/student" "$synth" --limit $((half / 2))
train twice "$out/student" "$synth"

students=()
for name in main real full linear half twice; do students+=(--student "$out/$name/weights"); done
# shellcheck disable=SC2086
$px eval l2p --source "$src" "${students[@]}" ${cfg:+--cfg "$cfg"} ${EVAL_ARGS:-} --json "$out/ablations.json" \
  --sheet "$out/ablations-sheet.jpg"

#!/usr/bin/env bash
# The GPU recipe of the PiD teachers and of the baselines (b) and (c) they are measured against: the four
# `pixdiff train pid` runs at one budget, side by side on one GPU (about 9 GB of GPU memory each at batch 64).
#
#   scripts/pid_gpu.sh OUT SECONDS [BATCH]
#
# A 40-step calibration of the four runs together measures seconds per step; each run then gets the same --steps
# that fits in SECONDS (from the script's start), with --max-minutes as a safety net. Needs PIXDIFF_TAEF2 (the
# TAEF2 weights) and the photos (../shared/data/photos or $PIXDIFF_DATA). $PIXDIFF is the command (default pixdiff);
# SIZE=tiny runs the tiny presets (a check of the script on CPU). RUNS replaces the four runs: one per line,
# "NAME PRESET SOURCE [more train options]", e.g. RUNS=$'taef2c small taef2 --init pid-taef2-x4-teacher --augment'.
set -euo pipefail
out=$1 budget=$2 batch=${3:-64}
px=${PIXDIFF:-pixdiff}
start=$(date +%s)
size=${SIZE:-small}
runs=("f8c16 $size vae-f8c16" "cascade $size-cascade vae-f8c16" "regression $size-regression vae-f8c16"
      "taef2 $size taef2")
[ -z "${RUNS:-}" ] || mapfile -t runs <<<"$RUNS"
mkdir -p "$out"

launch() {  # launch PREFIX STEPS [options...]: the runs side by side; fails if one fails
  local prefix=$1 steps=$2 pids=() ok=0; shift 2
  for r in "${runs[@]}"; do
    read -r name preset source more <<<"$r"
    # shellcheck disable=SC2086  # `more`: the run's own options, split on spaces
    $px train pid --preset "$preset" --source "$source" --batch "$batch" --steps "$steps" \
      --out "$out/$prefix$name" --no-progress ${more:-} "$@" >"$out/$prefix$name.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || ok=1; done
  return $ok
}

launch cal- 40 || { echo "calibration failed:"; tail -n 20 "$out"/cal-*.log; exit 1; }
cal_wall=$(( $(date +%s) - start ))
read -r per_step loop_s < <(python3 - "$out" <<'PY'
import json, sys, pathlib
rates, loops = [], []
for log in pathlib.Path(sys.argv[1]).glob("cal-*/log.jsonl"):
    e = {r["step"]: r["elapsed_s"] for r in map(json.loads, log.read_text().splitlines())}
    rates.append((e[40] - e[20]) / 20)
    loops.append(e[40])
print(max(rates), max(loops))
PY
)
startup=$(python3 -c "print(max(0.0, $cal_wall - $loop_s))")
left=$(( budget - ($(date +%s) - start) ))
steps=$(python3 -c "print(int(($left - $startup - 30) / $per_step))")
echo "calibration: $per_step s/step with ${#runs[@]} runs side by side, ${startup}s start-up; $left s left -> $steps steps"
launch "" "$steps" --max-minutes "$(python3 -c "print(($left - $startup - 20) / 60)")" || echo "a run failed:"
for r in "${runs[@]}"; do
  read -r name _ <<<"$r"
  tail -n 1 "$out/$name.log"
done

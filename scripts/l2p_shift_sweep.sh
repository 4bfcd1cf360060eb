#!/usr/bin/env bash
# L2P students at several training shifts, one budget, side by side on one GPU (a student's step is bound by kernel
# launches, so runs side by side cost little each): one shared synthetic set -> a student per variant -> the same
# --steps for every student, sized to SECONDS from the script's start. No eval: run
# `pixdiff eval l2p --student OUT/s*/student/weights ...` afterwards (on a CPU, with --cache for the source's samples).
#
#   scripts/l2p_shift_sweep.sh OUT SECONDS "VARIANTS" [PROMPTS=2000] [BATCH=64] [SOURCE=ldm-shapes]
#
# A variant is a training shift, optionally with ":full" (the middle blocks train too, `--full-finetune`) and / or
# ":latent" (a latent-aligned patch embedding, `transfer --embed latent` fitted on the synthetic set):
# "1.5 2 2.5 3", "3 6 12 3:full", "3 3:latent 1:latent". Each student is a fresh x-prediction transfer of SOURCE at that shift, or, with
# INIT set (a released student such as l2p-shapes), INIT trained on at that shift (`train l2p --shift`).
# STEPS fixes the step count (a fresh student wants about 2,000 steps whatever the batch); otherwise it is sized
# from STEP_SECONDS (default 0.2: one student of four side by side on an H200) after SETUP_SECONDS of start-up
# (default 180: four processes side by side took ~150 s on an H200 in sessions 15, 19 and 20, two took 7 s).
# --max-minutes, the budget left less SETUP_SECONDS, is the safety net: the weights reached are exported at the
# limit. SIGTERM to this script (e.g. from `timeout`) is passed on to the students, which save a checkpoint
# (`train ... --resume` goes on) but export no weights: give the script its budget rather than cutting it short.
# LR sets the learning rate (default: the preset's), SYNTH_SEED the synthetic set's prompts (default 0; another seed
# gives other prompts, e.g. for a student trained on before). $PIXDIFF is the command (default pixdiff).
set -euo pipefail
out=${1:?usage: l2p_shift_sweep.sh OUT SECONDS "VARIANTS" [PROMPTS] [BATCH] [SOURCE]}
budget=${2:?seconds}; read -r -a variants <<<"${3:?variants, e.g. \"1.5 2 2.5 3\" or \"3 6 3:full\"}"
n=${4:-2000} batch=${5:-64} src=${6:-ldm-shapes}
px=${PIXDIFF:-pixdiff}
start=$(date +%s)
stamp() { echo "=== $(date +%T) $*"; }
mkdir -p "$out"
stamp "synth $n prompts"
$px synth --teacher "$src" --n "$n" --cfg 4 --batch 64 --seed "${SYNTH_SEED:-0}" --out "$out/synth" \
  --json "$out/synth.json"
args=() names=()
for v in "${variants[@]}"; do
  s=${v%%:*} name=s${v//:/-} extra=() embed=()
  IFS=: read -r -a flags <<<"${v#"$s"}"
  for f in "${flags[@]}"; do
    case $f in "") ;; full) extra=(--full-finetune) ;; latent) embed=(--embed latent --data "$out/synth") ;;
      *) echo "unknown variant $v (SHIFT[:full][:latent])" >&2; exit 2 ;; esac
  done
  if [ -n "${INIT:-}" ]; then
    [ ${#embed[@]} -eq 0 ] || { echo "variant $v: :latent makes a fresh transfer, not with INIT" >&2; exit 2; }
    init=$INIT
  else
    init=$out/$name/student0
    $px transfer --source "$src" --prediction x --shift "$s" "${embed[@]}" --out "$init" > "$out/$name.transfer.log"
  fi
  names+=("$name"); args+=("--init $init --shift $s ${extra[*]}")
done
left=$(( budget - ($(date +%s) - start) )) setup=${SETUP_SECONDS:-180}
steps=${STEPS:-$(python3 -c "print(max(100, int(0.85 * ($left - $setup) / ${STEP_SECONDS:-0.2}) // 100 * 100))")}
stamp "train ${#names[@]} students x $steps steps of batch $batch side by side ($left s left)"
# each process gets its share of the CPU cores: four processes of torch's default (one thread per core) oversubscribe
# the CPU side (text encoder, data) and may be what made session 15's and 19's start-up take ~140 s (4-5 s alone on a CPU)
threads=${OMP_NUM_THREADS:-$(( ($(nproc) + ${#names[@]} - 1) / ${#names[@]} ))}
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' TERM INT  # on SIGTERM the students save a checkpoint
for i in "${!names[@]}"; do
  # shellcheck disable=SC2086  # args[i] is a list of words
  OMP_NUM_THREADS=$threads $px train l2p --preset small ${args[i]} --data "$out/synth" --batch "$batch" --steps "$steps" ${LR:+--lr "$LR"} \
    --out "$out/${names[i]}/student" --no-progress --max-minutes "$(python3 -c "print(max(1, $left - 30 - $setup) / 60)")" \
    > "$out/${names[i]}.log" 2>&1 &
  pids+=($!)
done
ok=0
for p in "${pids[@]}"; do wait "$p" || ok=1; done
for name in "${names[@]}"; do echo "$name: $(tail -n 1 "$out/$name.log")"; done
stamp done
exit $ok

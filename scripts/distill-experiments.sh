#!/usr/bin/env bash
# distill-experiments.sh - the distillation measurements of docs/benchmarks.md, with the exact commands:
#
#   kd-vs-ce   the same random student (lmpress init) and steps, --alpha 0.5 --temp 2 against --alpha 0 (labels
#              only): held-out PPL on TinyStories valid.txt during and after training, both curves plotted;
#   heal-260k  stories260K pruned 30 % (activation score) and distilled on train.txt for a wall-clock budget
#              (HEAL_MINUTES, default 10): the fraction of the PPL gap (pruned - teacher) recovered on valid.txt;
#   heal-smol  the same for SmolLM2-135M (models/smollm2-135m-f32.lmp), budget HEAL_SMOL_MINUTES (default 30).
#
# The healing runs are cut into pieces of at most PIECE seconds (default 280), each under /work/tools/timed when
# it exists (the machine to itself), by SIGINT + --resume: the checkpoint makes the pieces one run (resume is
# bit-identical), and the budget counts training time only (evaluations and model loading excluded, reported).
# Every training run goes through run_pieces. Needs `lmpress prune` (issue 10) for the healing runs; PRUNE=path/to/lmpress overrides the binary used for it.
#
#   scripts/distill-experiments.sh [kd-vs-ce] [heal-260k] [heal-smol]
set -euo pipefail
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
L=${LMPRESS:-$BUILD/lmpress}
PRUNE=${PRUNE:-$L}
W=${OUT:-$BUILD/distill-exp}
PIECE=${PIECE:-280}
TIMED=/work/tools/timed
[ -x $TIMED ] || TIMED=
TRAIN=$SHARED/data/tinystories/train.txt
VALID=$SHARED/data/tinystories/valid.txt
mkdir -p "$W"
exps=("$@")
[ ${#exps[@]} -gt 0 ] || exps=(kd-vs-ce heal-260k)
teacher=$W/stories260K.lmp
[ -f "$teacher" ] || "$L" import "$SHARED/models/stories260K/stories260K.bin" -o "$teacher"
say() { echo "+ $*" >&2; "$@"; }

# run_pieces OUT ARGS...: lmpress distill ARGS -o OUT, cut into pieces of at most PIECE seconds (SIGINT writes a
# checkpoint, the next piece resumes from it) until OUT exists; prints the wall seconds of all pieces.
run_pieces() {
    local out=$1
    shift
    local ck=$out.ckpt spent=0 t0 rc resume=() a prev=
    rm -f "$out" "$ck"
    for a in "$@"; do  # a new run starts a new log
        [ "$prev" = --log ] && rm -f "$a"
        prev=$a
    done
    while :; do
        t0=$(date +%s.%N)
        set +e
        $TIMED timeout -s INT "$PIECE" "$L" distill "$@" "${resume[@]}" -o "$out" -q
        rc=$?
        set -e
        spent=$(awk -v a="$spent" -v b="$(date +%s.%N)" -v c="$t0" 'BEGIN { printf "%.1f\n", a + b - c }')
        [ -f "$out" ] && break
        [ -f "$ck" ] || { echo "run_pieces: no checkpoint after exit $rc" >&2; return 1; }
        resume=(--resume "$ck")
    done
    echo "$spent"
}

# step_seconds ARGS...: seconds per training step of a distill configuration (20 timed steps after 5)
step_seconds() {
    local tmp=$W/.steptime.lmp
    rm -f "$tmp" "$tmp.ckpt" "$W/.steptime.csv"
    $TIMED "$L" distill "$@" --steps 25 --warmup 5 --log "$W/.steptime.csv" -o "$tmp" -q
    awk -F, 'NR == 7 { t0 = $8 / $7 } NR == 26 { t1 = $8 / $7 } END { printf "%.4f\n", (t1 - t0) / 19 }' "$W/.steptime.csv"
}

heal() { # NAME TEACHER BUDGET_MINUTES BATCH SEQ LR EVAL_CHUNKS
    local name=$1 t=$2 minutes=$3 B=$4 T=$5 lr=$6 chunks=$7
    local pruned=$W/$name-pruned.lmp healed=$W/$name-healed.lmp
    [ -f "$pruned" ] || say "$PRUNE" prune "$t" --structured --ratio 0.3 --score activation --calib "$TRAIN" \
        -o "$pruned"
    local common=("$t" "$pruned" "$TRAIN" --batch "$B" --seq "$T" --lr "$lr" --min-lr "$(awk -v x="$lr" 'BEGIN { print x / 10 }')"
                  --alpha 0.5 --temp 2 --weight-decay 0 --seed 1)
    local sps steps
    sps=$(step_seconds "${common[@]}")
    steps=$(awk -v m="$minutes" -v s="$sps" 'BEGIN { printf "%d\n", m * 60 / s }')
    echo "$name: $sps s per step of $B x $T tokens -> $steps steps in $minutes minutes" >&2
    local secs
    secs=$(run_pieces "$healed" "${common[@]}" --steps "$steps" --warmup "$((steps / 20))" --log "$W/$name-heal.csv")
    echo "$name: $steps steps; $secs s of wall time over the pieces (lock waits between pieces included)" >&2
    say "$L" eval-ppl "$t" "$pruned" "$healed" --data "$VALID" ${chunks:+--chunks $chunks} | tee "$W/$name-eval.txt"
    awk -v name="$name" '/^\| / && $2 ~ /\.lmp$/ { ppl[++n] = $10 }
        END { gap = ppl[2] - ppl[1]; rec = ppl[2] - ppl[3];
              printf "%s: teacher %.4f, pruned %.4f, healed %.4f: %.1f %% of the gap recovered\n", name, ppl[1], ppl[2],
                     ppl[3], 100 * rec / gap }' "$W/$name-eval.txt"
    rm -f "$W/$name-heal.svg"
    "$L" plot-log "$W/$name-heal.csv" -o "$W/$name-heal.svg" --title "$name: healing after 30 % pruning"
}

for e in "${exps[@]}"; do
    case $e in
    kd-vs-ce)
        s=$W/kd-student.lmp
        [ -f "$s" ] || say "$L" init --like "$teacher" --dim 48 --layers 4 --heads 6 --kv-heads 2 --ffn 128 --seed 1 -o "$s"
        for a in 0.5 0; do
            echo "+ lmpress distill $teacher $s $TRAIN --steps ${KD_STEPS:-1500} --batch 4 --seq 512 --lr 3e-3" \
                "--min-lr 3e-4 --warmup 100 --alpha $a --temp 2 --eval $VALID --eval-every 250 --log" \
                "$W/kd-alpha$a.csv -o $W/kd-alpha$a.lmp (in pieces)" >&2
            secs=$(run_pieces "$W/kd-alpha$a.lmp" "$teacher" "$s" "$TRAIN" --steps "${KD_STEPS:-1500}" --batch 4 \
                --seq 512 --lr 3e-3 --min-lr 3e-4 --warmup 100 --alpha $a --temp 2 --eval "$VALID" --eval-every 250 \
                --log "$W/kd-alpha$a.csv")
            echo "kd-vs-ce alpha $a: $secs s" >&2
        done
        rm -f "$W/kd-vs-ce.svg"
        say "$L" plot-log "$W/kd-alpha0.5.csv" "$W/kd-alpha0.csv" -o "$W/kd-vs-ce.svg" \
            --title "same student and steps: alpha 0.5, T 2 against labels only"
        say "$L" eval-ppl "$teacher" "$W/kd-alpha0.5.lmp" "$W/kd-alpha0.lmp" --data "$VALID" | tee "$W/kd-eval.txt"
        ;;
    heal-260k) heal heal-260k "$teacher" "${HEAL_MINUTES:-10}" 4 512 2e-3 "" ;;
    heal-smol) heal heal-smol models/smollm2-135m-f32.lmp "${HEAL_SMOL_MINUTES:-30}" 2 512 2e-4 40 ;;
    *) echo "unknown experiment $e" >&2; exit 2 ;;
    esac
done

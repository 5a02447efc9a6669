#!/usr/bin/env bash
# make-default-model.sh - reproduces the model lmpress ships, models/default.lmp, and its evaluation text
# models/default-eval.txt and its calibration text models/default-calib.txt, from ../shared (stories260K and the
# TinyStories text):
#
#   1. the teacher: ../shared/models/stories260K (imported);
#   2. the evaluation text: stories sampled from the teacher (temperature 1, top-p 0.9, seeds 1..EVAL_STORIES), so
#      the project has held-out text of its own that needs nothing from ../shared; the calibration text the same
#      way with seeds 1001..1000+CALIB_STORIES (other stories: what `make demo` and the tests calibrate, prune and
#      distill on, never what they evaluate on);
#   3. the student: `lmpress init --like` the teacher with an FFN of 192 (a multiple of 32, so 4- and 8-bit
#      quantization need no fallback type), random weights (seed 1);
#   4. `lmpress distill` on ../shared/data/tinystories/train.txt (alpha 0.5, temperature 2), then eval-ppl of the
#      teacher and the student on valid.txt and on the evaluation text.
#
# The output is deterministic for a given build and thread count (2 here): the same commands give the same bytes.
#   scripts/make-default-model.sh            (writes models/default.lmp, default-eval.txt, default-calib.txt)
#   scripts/make-default-model.sh texts      (only the two texts: a minute, no distillation)
set -euo pipefail
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
L=${LMPRESS:-$BUILD/lmpress}
OUT=${OUT:-models}
STEPS=${STEPS:-3000}
EVAL_STORIES=${EVAL_STORIES:-60}
CALIB_STORIES=${CALIB_STORIES:-100}
ONLY_TEXTS=0
[ "${1:-}" = texts ] && ONLY_TEXTS=1
W=$BUILD/default-model
mkdir -p "$W" "$OUT"
[ -x "$L" ] || make -s "$L"

teacher=$W/stories260K.lmp
rm -f "$teacher" "$W/default.csv" "$W/default.svg"
"$L" import "$SHARED/models/stories260K/stories260K.bin" -o "$teacher"

sample_stories() { # FIRST_SEED LAST_SEED OUT: one story per seed, each followed by a newline
    : >"$3"
    for s in $(seq "$1" "$2"); do
        "$L" run "$teacher" -n 512 --temp 1 --top-p 0.9 --seed "$s" --threads 1 -q >>"$3"
        printf '\n' >>"$3"
    done
}
echo "== evaluation text: $EVAL_STORIES stories sampled from the teacher; calibration text: $CALIB_STORIES more"
sample_stories 1 "$EVAL_STORIES" "$W/eval.txt"
sample_stories 1001 $((1000 + CALIB_STORIES)) "$W/calib.txt"
wc -c "$W/eval.txt" "$W/calib.txt"
if [ $ONLY_TEXTS = 1 ]; then
    cp "$W/eval.txt" "$OUT/default-eval.txt"
    cp "$W/calib.txt" "$OUT/default-calib.txt"
    ls -l "$OUT/default-eval.txt" "$OUT/default-calib.txt"
    exit 0
fi

echo "== student"
rm -f "$W/student.lmp"
"$L" init --like "$teacher" --ffn 192 --seed 1 -o "$W/student.lmp"

echo "== distill ($STEPS steps)"
rm -f "$W/default.lmp" "$W/default.lmp.ckpt"
"$L" distill "$teacher" "$W/student.lmp" "$SHARED/data/tinystories/train.txt" --steps "$STEPS" --batch 4 --seq 512 \
    --lr 3e-3 --min-lr 1e-4 --warmup 200 --weight-decay 0.1 --alpha 0.5 --temp 2 --seed 1 --threads 2 \
    --eval "$SHARED/data/tinystories/valid.txt" --eval-every 500 --eval-chunks 40 --log "$W/default.csv" \
    --save-every 500 -o "$W/default.lmp"
"$L" plot-log "$W/default.csv" -o "$W/default.svg" --title "models/default.lmp: distilled from stories260K"

echo "== evaluation"
"$L" eval-ppl "$teacher" "$W/default.lmp" --data "$SHARED/data/tinystories/valid.txt"
"$L" eval-ppl "$teacher" "$W/default.lmp" --data "$W/eval.txt"
cp "$W/default.lmp" "$OUT/default.lmp"
cp "$W/eval.txt" "$OUT/default-eval.txt"
cp "$W/calib.txt" "$OUT/default-calib.txt"
ls -l "$OUT/default.lmp" "$OUT/default-eval.txt" "$OUT/default-calib.txt"

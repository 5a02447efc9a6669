#!/usr/bin/env bash
# demo.sh - `make demo`: the whole chain on the model lmpress ships, models/default.lmp (a 279K-parameter student
# distilled from stories260K by scripts/make-default-model.sh), with nothing from ../shared:
#
#   1. run       a greedy story from the default model;
#   2. prune     30 % of the non-embedding parameters (heads and FFN channels, activation score calibrated on
#                models/default-calib.txt);
#   3. distill   the pruned student a few steps with the default model as teacher, on the same calibration text;
#   4. quantize  the default model and the healed student to 8 and 4 bits (RTN, and GPTQ calibrated on the
#                calibration text);
#   5. eval-ppl  every model against the default model on models/default-eval.txt (other stories than the
#                calibration text), with the chart.
#
# Each run rebuilds the files in $BUILD/demo: its outputs are written with -f (replace an existing file).
# DEMO_STEPS (default 120) sets the distillation steps.
set -euo pipefail
BUILD=${BUILD:-build}
LMPRESS=${LMPRESS:-$BUILD/lmpress}
MODEL=models/default.lmp
EVAL=models/default-eval.txt
CALIB=models/default-calib.txt
OUT=$BUILD/demo
STEPS=${DEMO_STEPS:-120}
for f in "$MODEL" "$EVAL" "$CALIB"; do
    if [ ! -f "$f" ]; then
        echo "demo: $f is missing: it is part of the checkout (run make demo from the repository root)" >&2
        exit 1
    fi
done
mkdir -p "$OUT"
t0=$SECONDS
step() { printf '\n== %s\n' "$*"; }

step "run: greedy continuation of \"Once upon a time\" ($MODEL)"
"$LMPRESS" run "$MODEL" -p "Once upon a time" -n 100 --temp 0

step "prune: 30 % of the non-embedding parameters (heads, FFN channels; activation score on $CALIB)"
"$LMPRESS" prune "$MODEL" --structured --ratio 0.3 --score activation --calib "$CALIB" --calib-tokens 8192 \
    -f -o "$OUT/pruned.lmp"

step "distill: the pruned student, $STEPS steps of 4 x 512 tokens of $CALIB, $MODEL as teacher"
"$LMPRESS" distill "$MODEL" "$OUT/pruned.lmp" "$CALIB" --steps "$STEPS" --batch 4 --seq 512 --lr 2e-3 \
    --min-lr 2e-4 --warmup 10 --weight-decay 0 --alpha 0.5 --temp 2 --seed 1 --log "$OUT/distill.csv" \
    -f -o "$OUT/healed.lmp"
"$LMPRESS" plot-log "$OUT/distill.csv" -o "$OUT/distill.svg" -f --title "demo: healing the pruned default model"

step "quantize to 8 and 4 bits (RTN; GPTQ calibrated on $CALIB)"
for m in default healed; do
    src=$MODEL
    [ $m = healed ] && src=$OUT/healed.lmp
    "$LMPRESS" quantize "$src" --bits 8 --method rtn -q -f -o "$OUT/$m-q8_0.lmp"
    "$LMPRESS" quantize "$src" --bits 4 --method rtn -q -f -o "$OUT/$m-q4_0.lmp"
    "$LMPRESS" quantize "$src" --bits 4 --method gptq --calib "$CALIB" --calib-tokens 8192 -f \
        -o "$OUT/$m-q4_0-gptq.lmp"
done

step "eval-ppl on $EVAL (against $MODEL)"
"$LMPRESS" eval-ppl "$MODEL" "$OUT"/default-q8_0.lmp "$OUT"/default-q4_0.lmp "$OUT"/default-q4_0-gptq.lmp \
    "$OUT"/pruned.lmp "$OUT"/healed.lmp "$OUT"/healed-q8_0.lmp "$OUT"/healed-q4_0.lmp "$OUT"/healed-q4_0-gptq.lmp \
    --data "$EVAL" --plot "$OUT/compare.svg" -f
echo
echo "demo: done in $((SECONDS - t0)) s; files in $OUT/ (charts: $OUT/compare.svg, $OUT/distill.svg)"

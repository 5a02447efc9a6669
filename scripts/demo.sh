#!/usr/bin/env bash
# demo.sh - `make demo`: import the default model, generate a short story, quantize it to 8 and 4 bits
# and print the comparison table (perplexity, KL divergence, top-1 agreement, size, speed).
# The default model is ../shared/models/stories260K until the project ships its own distilled model.
# Each run rebuilds the files in $BUILD/demo: its outputs are written with -f (replace an existing file).
set -euo pipefail
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
LMPRESS=$BUILD/lmpress
MODEL_DIR=$SHARED/models/stories260K
DATA=$SHARED/data/tinystories/valid.txt
CALIB=$SHARED/data/tinystories/train.txt
OUT=$BUILD/demo
if [ ! -f "$MODEL_DIR/stories260K.bin" ] || [ ! -f "$MODEL_DIR/tok512.bin" ]; then
    echo "demo: the default model $MODEL_DIR/stories260K.bin (with tok512.bin) is not here." >&2
    echo "demo: it comes from the project's shared folder (../shared beside the checkout); set SHARED=DIR" >&2
    echo "demo: to point elsewhere, or run any command on your own model: $LMPRESS --help" >&2
    exit 1
fi
mkdir -p "$OUT"
echo "== import (llama2.c checkpoint + tokenizer -> lmpress format)"
"$LMPRESS" import "$MODEL_DIR/stories260K.bin" --tokenizer "$MODEL_DIR/tok512.bin" -f -o "$OUT/stories260K.lmp"
echo
echo "== run: greedy continuation of \"Once upon a time\""
"$LMPRESS" run "$OUT/stories260K.lmp" -p "Once upon a time" -n 100 --temp 0
echo
echo "== quantize to 8 and 4 bits"
"$LMPRESS" quantize "$OUT/stories260K.lmp" --bits 8 -f -o "$OUT/stories260K-q8_0.lmp"
"$LMPRESS" quantize "$OUT/stories260K.lmp" --bits 4 -f -o "$OUT/stories260K-q4_0.lmp"
"$LMPRESS" quantize "$OUT/stories260K.lmp" --bits 4 --method gptq --calib "$CALIB" -f -o "$OUT/stories260K-q4_0-gptq.lmp"
echo
echo "== eval-ppl on $DATA"
"$LMPRESS" eval-ppl "$OUT/stories260K.lmp" "$OUT/stories260K-q8_0.lmp" "$OUT/stories260K-q4_0.lmp" \
    "$OUT/stories260K-q4_0-gptq.lmp" --data "$DATA" --plot "$OUT/compare.svg" -f
echo
echo "demo: files in $OUT/ (chart: $OUT/compare.svg)"

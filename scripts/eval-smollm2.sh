#!/usr/bin/env bash
# eval-smollm2.sh - the SmolLM2-135M quantization table of docs/benchmarks.md: quantizes the imported
# FP32 model with every method at 8 and 4 bits and compares them with eval-ppl on WikiText-2.
#
#   scripts/eval-smollm2.sh [--chunks N] [--calib-tokens N]
#
# Needs models/smollm2-135m-f32.lmp (scripts/get-models.sh makes it). Calibration text is TinyStories
# (../shared/data/tinystories/train.txt), evaluation text WikiText-2 test: GPTQ, AWQ and imatrix are
# never scored on the text they were calibrated on. Quantized files go to models/ and are reused.
# Environment: LMPRESS (default build/lmpress), SHARED (default ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
LMPRESS=${LMPRESS:-build/lmpress}
SHARED=${SHARED:-../shared}
CHUNKS=40
CALIB_TOKENS=32768
while [ $# -gt 0 ]; do
    case $1 in
        --chunks) CHUNKS=$2; shift 2;;
        --calib-tokens) CALIB_TOKENS=$2; shift 2;;
        *) echo "eval-smollm2.sh: unknown option '$1'" >&2; exit 2;;
    esac
done
BASE=models/smollm2-135m-f32.lmp
DATA=$SHARED/data/wikitext-2-raw/wiki.test.raw
CALIB=$SHARED/data/tinystories/train.txt
for f in "$BASE" "$DATA" "$CALIB"; do
    [ -e "$f" ] || { echo "eval-smollm2.sh: $f not found (models: scripts/get-models.sh; data: ../shared)" >&2; exit 1; }
done
q() { # name, quantize options...
    local out=models/smollm2-135m-$1.lmp; shift
    if [ ! -f "$out" ]; then
        echo "== lmpress quantize $BASE $* -o $out" >&2
        "$LMPRESS" quantize "$BASE" "$@" -o "$out" 2>&1 | grep -E '^  |quantized' >&2
    fi
    models+=("$out")
}
models=("$BASE")
q q8_0 --bits 8
q q8_0-imatrix --bits 8 --method imatrix --calib "$CALIB" --calib-tokens "$CALIB_TOKENS"
q q8_0-gptq --bits 8 --method gptq --calib "$CALIB" --calib-tokens "$CALIB_TOKENS"
q q4_0-rtn --bits 4
q q4_0-imatrix --bits 4 --method imatrix --calib "$CALIB" --calib-tokens "$CALIB_TOKENS"
q q4_0-awq --bits 4 --method awq --calib "$CALIB" --calib-tokens "$CALIB_TOKENS"
q q4_0-gptq --bits 4 --method gptq --act-order --calib "$CALIB" --calib-tokens "$CALIB_TOKENS"
q q4_1-rtn --bits 4 --scheme asym
[ -f models/smollm2-135m-q4_1.lmp ] && models+=(models/smollm2-135m-q4_1.lmp)  # the GGUF's own Q4_1
echo "== lmpress eval-ppl ${models[*]} --data $DATA --ctx 512 --chunks $CHUNKS" >&2
"$LMPRESS" eval-ppl "${models[@]}" --data "$DATA" --ctx 512 --chunks "$CHUNKS" "$@"

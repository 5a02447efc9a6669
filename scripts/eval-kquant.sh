#!/usr/bin/env bash
# eval-kquant.sh - the 4-bit quality table of docs/benchmarks.md (issue 13) on SmolLM2-135M: the q8_0 scale
# search, --target-bpw at llama.cpp Q4_K_M's and at today's q4_0's file size, and the presets, each against the
# FP32 base with eval-ppl on WikiText-2 test (ctx 512) and, with --tinystories, on TinyStories valid.txt.
#
#   scripts/eval-kquant.sh [--chunks N] [--tinystories]
#
# Calibration (for --target-bpw) is TinyStories train.txt, never the evaluation text. Files go to
# build/kquant/ and are reused. Environment: LMPRESS (default build/lmpress), SHARED (default ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
LMPRESS=${LMPRESS:-build/lmpress}
SHARED=${SHARED:-../shared}
CHUNKS=40
DATA=$SHARED/data/wikitext-2-raw/wiki.test.raw
while [ $# -gt 0 ]; do
    case $1 in
        --chunks) CHUNKS=$2; shift 2;;
        --tinystories) DATA=$SHARED/data/tinystories/valid.txt; shift;;
        *) echo "eval-kquant.sh: unknown option '$1'" >&2; exit 2;;
    esac
done
BASE=models/smollm2-135m-f32.lmp
CALIB=$SHARED/data/tinystories/train.txt
OUT=build/kquant
mkdir -p "$OUT"
for f in "$BASE" "$DATA" "$CALIB"; do
    [ -e "$f" ] || { echo "eval-kquant.sh: $f not found (models: scripts/get-models.sh; data: ../shared)" >&2; exit 1; }
done
q() { # name, quantize options...
    local out=$OUT/$1.lmp; shift
    if [ ! -f "$out" ]; then
        echo "== lmpress quantize $BASE $* -o $out" >&2
        "$LMPRESS" quantize "$BASE" "$@" -o "$out" 2>&1 | grep -vE '[0-9]% \(' >&2
    fi
    models+=("$out")
}
models=("$BASE")
# File sizes of the issue: 105.45 MB (llama.cpp Q4_K_M) and 91.73 MB (q4_0) hold 6.165 and 5.349 bits per
# weight of tensor data (the tokenizer and metadata take 1.79 MB of the file).
q q8_0-search --bits 8
q q8_0-rtn --bits 8 --method rtn
q bpw6.16 --target-bpw 6.16 --calib "$CALIB" --calib-tokens 32768
q bpw5.34 --target-bpw 5.34 --calib "$CALIB" --calib-tokens 32768
q k4s --preset k4s
q k4m --preset k4m
echo "== lmpress eval-ppl ${models[*]} --data $DATA --ctx 512 --chunks $CHUNKS" >&2
"$LMPRESS" eval-ppl "${models[@]}" --data "$DATA" --ctx 512 --chunks "$CHUNKS"

#!/usr/bin/env bash
# bench.sh - `make bench`: kernel and model benchmarks, each printed beside the memory-bandwidth roofline
# measured in the same run. Not part of the tests. Results go to stdout; copy them into
# docs/benchmarks.md with this command line.
#
#   kernels: matrix-vector GB/s per type and shape (build/bench/bench_kernels)
#   models:  prefill/decode tok/s of FP32, Q8_0, Q4_0 on stories260K (when ../shared has it) and on a
#            synthetic model of stories110M's shape (random weights, fixed seed, generated here, not committed)
set -euo pipefail
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
LMPRESS=$BUILD/lmpress
OUT=${BENCH_OUT:-$BUILD/bench-models}
mkdir -p "$OUT"
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "== lmpress $("$LMPRESS" --version), $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ -x "$BUILD/bench/bench_kernels" ]; then
    echo "== kernels"
    "$BUILD/bench/bench_kernels"
fi
echo "== synthetic stories110M-shaped model (dim 768, 12 layers, 12 heads, FFN 2048, vocab 32000, seq 1024)"
SYN=$OUT/synth110m.lmp
[ -f "$SYN" ] || "$LMPRESS" synth --seed 1 -o "$SYN"
models=("$SYN")
for t in q8_0 q4_0 q4_K q5_K q6_K iq4_nl; do
    t0=$(date +%s.%N)
    [ -f "$OUT/synth110m-$t.lmp" ] || "$LMPRESS" quantize "$SYN" --type $t -q -o "$OUT/synth110m-$t.lmp"
    echo "quantize --type $t (scale search): $(echo "$(date +%s.%N) - $t0" | bc) s (0 if it existed)"
    models+=("$OUT/synth110m-$t.lmp")
done
if [ -f "$SHARED/models/stories260K/stories260K.bin" ]; then
    S=$OUT/stories260K.lmp
    [ -f "$S" ] || "$LMPRESS" import "$SHARED/models/stories260K/stories260K.bin" \
        --tokenizer "$SHARED/models/stories260K/tok512.bin" -q -o "$S"
    [ -f "$OUT/stories260K-q8_0.lmp" ] || "$LMPRESS" quantize "$S" --bits 8 -q -o "$OUT/stories260K-q8_0.lmp"
    [ -f "$OUT/stories260K-q4_0.lmp" ] || "$LMPRESS" quantize "$S" --bits 4 -q -o "$OUT/stories260K-q4_0.lmp"
    models=("$S" "$OUT/stories260K-q8_0.lmp" "$OUT/stories260K-q4_0.lmp" "${models[@]}")
else
    echo "bench: $SHARED/models/stories260K not found: skipping the stories260K rows"
fi
echo "== models: $LMPRESS bench ${models[*]}"
"$LMPRESS" bench "${models[@]}" --prefill 128 --decode 64 --reps 5

#!/usr/bin/env bash
# bench-train.sh - training throughput of lmpress's engine against PyTorch eager on the CPU, same shapes,
# threads, batch and sequence length, in one go: one step = forward + cross-entropy + backward + gradient-norm
# clipping + AdamW, median over timed steps after a warmup step. Prints both lines and the ratio per shape.
# Needs torch (pip install torch); run it alone on the machine (/work/tools/timed scripts/bench-train.sh).
#
#   THREADS=2 STEPS=5 scripts/bench-train.sh [stories260K|smollm2 ...]
set -euo pipefail
BUILD=${BUILD:-build}
THREADS=${THREADS:-2}
make -s "$BUILD/bench/bench_train" >/dev/null
shapes=("$@")
[ ${#shapes[@]} -gt 0 ] || shapes=(stories260K smollm2)
echo "== $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $THREADS threads"
for shape in "${shapes[@]}"; do
    case $shape in
    stories260K) B=${B260:-8} T=${T260:-256} S=${STEPS:-5} ;;
    smollm2) B=${BSMOL:-4} T=${TSMOL:-256} S=${STEPS_SMOL:-3} ;;
    *) echo "unknown shape $shape" >&2; exit 2 ;;
    esac
    c=$("$BUILD/bench/bench_train" --shape "$shape" --batch "$B" --seq "$T" --threads "$THREADS" --steps "$S" --warmup 1)
    p=$(python3 "$(dirname "$0")/bench_train_torch.py" --shape "$shape" --batch "$B" --seq "$T" --threads "$THREADS" \
        --steps "$S" --warmup 1)
    echo "$c"
    echo "$p"
    ct=$(sed -E 's/.* ([0-9.]+) tok\/s.*/\1/' <<<"$c")
    pt=$(sed -E 's/.* ([0-9.]+) tok\/s.*/\1/' <<<"$p")
    echo "ratio $shape: lmpress / pytorch = $(echo "scale=2; $ct / $pt" | bc)"
done

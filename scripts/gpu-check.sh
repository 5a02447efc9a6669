#!/usr/bin/env bash
# gpu-check.sh - what runs on the lent GPU machine (an x86-64 server with AVX-512 and an NVIDIA GPU),
# batched into one call because its time is scarce. Two halves:
#
#   scripts/gpu-check.sh --prepare   here (the dev machine): builds static x86-64 binaries of the
#                                    kernel tests and kernel benchmark into build-dev/ (git-ignored),
#                                    since the GPU machine has no OpenBLAS/HDF5 development packages
#                                    and no network.
#   scripts/gpu-check.sh             there, with build-dev carried: prints the CPU and GPU, runs the
#                                    kernel tests (every SIMD table, AVX-512 + VNNI included, against
#                                    the scalar reference), the kernel benchmark, and compiles the CUDA
#                                    sources with nvcc; logs go to $OUT (or build-dev/out).
set -uo pipefail
cd "$(dirname "$0")/.."
DEV=build-dev
if [ "${1:-}" = --prepare ]; then
    set -e
    make -j"$(nproc)" build/liblmpress.a >/dev/null
    mkdir -p "$DEV"
    BLAS=$(pkg-config --variable=libdir openblas 2>/dev/null || echo /usr/lib/x86_64-linux-gnu/openblas-pthread)
    HDF5=/usr/lib/x86_64-linux-gnu/hdf5/serial  # test_kquant links GPTQ, whose pass reaches the importers
    for t in tests/test_kernels.c tests/test_quant.c tests/test_kquant.c bench/bench_kernels.c; do
        gcc -std=c11 -D_GNU_SOURCE -O2 -pthread -I. "$t" build/liblmpress.a \
            -static -L"$BLAS" -lopenblas -L"$HDF5" -lhdf5 -lsz -laec -ldl -lz -lm -o "$DEV/$(basename "$t" .c)"
    done
    echo "gpu-check: static binaries in $DEV/: $(ls "$DEV" | tr '\n' ' ')"
    exit 0
fi
OUTDIR=${OUT:-$DEV/out}
mkdir -p "$OUTDIR"
fail=0
{
    echo "== host"; lscpu | grep -E 'Model name|^CPU\(s\)|Flags' | sed -E 's/(Flags:).*/\1 '"$(grep -o -w -E 'avx2|avx512f|avx512bw|avx512vl|avx512_vnni|avx_vnni|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"'/'
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} 2>&1 | tee "$OUTDIR/host.txt"
for t in test_kernels test_quant test_kquant; do
    echo "== $t"
    if [ -x "$DEV/$t" ]; then
        "$DEV/$t" >"$OUTDIR/$t.txt" 2>&1 || fail=1
        tail -5 "$OUTDIR/$t.txt"
    else
        echo "gpu-check: $DEV/$t missing: run scripts/gpu-check.sh --prepare here and carry $DEV"; fail=1
    fi
done
if [ -x "$DEV/bench_kernels" ]; then
    echo "== bench_kernels (all threads: $(nproc))"
    "$DEV/bench_kernels" --threads 1,4,16 --seconds 0.2 2>&1 | tee "$OUTDIR/bench_kernels.txt"
    echo "== bench_kernels --isa avx2 (the same shape on the AVX2 table, for the ratio)"
    "$DEV/bench_kernels" --isa avx2 --threads 1,4,16 --seconds 0.2 --no-matmul --shape 4096x14336 2>&1 \
        | tee "$OUTDIR/bench_kernels_avx2.txt"
fi
echo "== nvcc"
if command -v nvcc >/dev/null; then
    nvcc -std=c++17 -arch=sm_90 -I. -c cuda/types_check.cu -o "$OUTDIR/types_check.o" && echo "cuda/types_check.cu: ok" || fail=1
else
    echo "nvcc not found"
fi
echo "gpu-check: $([ $fail = 0 ] && echo passed || echo FAILED)"
exit $fail

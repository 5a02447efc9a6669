#!/usr/bin/env bash
# gpu-check.sh - what runs on the lent GPU machine (an x86-64 server with AVX-512 and an NVIDIA GPU),
# batched into one call because its time is scarce.
#
#   scripts/gpu-check.sh --prepare   here (the dev machine): builds static x86-64 binaries of the
#                                    kernel tests and kernel benchmark into build-dev/ (git-ignored),
#                                    since the GPU machine has no OpenBLAS/HDF5 development packages
#                                    and no network; with nvcc present also the CUDA kernel lab
#                                    (build-dev/lab) and the CUDA build of lmpress and its tests;
#                                    cut_layers (cuda/lab/cut_layers.c) cuts a model to its first blocks.
#   scripts/gpu-check.sh [PART...]   there, with build-dev carried. Parts (default: cpu lab):
#                                    cpu   the CPU kernel tests (every SIMD table, AVX-512 + VNNI included,
#                                          against the scalar reference) and kernel benchmark
#                                    lab   the CUDA kernel lab: every kernel against the CPU reference,
#                                          then its versions timed (cuda/lab/lab.cu)
#                                    labq  the lab's checks and a short benchmark (--quick)
#                                    cuda  the CUDA backend tests (build-dev/test_cuda)
#                                    bench7b  decode/prefill of the synthetic 7B shape (F16, q8_0, q4_0)
#                                    eval  eval-ppl --device cuda vs cpu on SmolLM2 (models in
#                                          $EVAL_MODELS, default /tmp/lmp-models; data under $SHARED)
#                                    cpu-speed  scripts/cpu-speed-check.sh with build-dev/lmpress: prefill/decode
#                                          of the 110M shape (f32, q8_0, q4_0) and eval-ppl wall time of
#                                          SmolLM2 (f32 made from $EVAL_MODELS' q4_1), 2 threads, 2 rounds;
#                                          llama.cpp's side too when $LLAMA_BIN holds llama-bench and
#                                          llama-perplexity (built for that machine)
#                                    Logs go to $OUT (or build-dev/out); a summary is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
DEV=build-dev
NVCC=${NVCC:-nvcc}
if [ "${1:-}" = --prepare ]; then
    set -e
    # the fully static CPU binaries link a library without the CUDA backend (build-cpu/, CUDA=0)
    make -j"$(nproc)" BUILD=build-cpu CUDA=0 build-cpu/liblmpress.a >/dev/null
    mkdir -p "$DEV"
    BLAS=$(pkg-config --variable=libdir openblas 2>/dev/null || echo /usr/lib/x86_64-linux-gnu/openblas-pthread)
    HDF5=/usr/lib/x86_64-linux-gnu/hdf5/serial  # test_kquant links GPTQ, whose pass reaches the importers
    for t in tests/test_kernels.c tests/test_quant.c tests/test_kquant.c bench/bench_kernels.c cuda/lab/cut_layers.c; do
        gcc -std=c11 -D_GNU_SOURCE -O2 -pthread -I. "$t" build-cpu/liblmpress.a \
            -static -L"$BLAS" -lopenblas -L"$HDF5" -lhdf5 -lsz -laec -ldl -lz -lm -o "$DEV/$(basename "$t" .c)"
    done
    if command -v "$NVCC" >/dev/null 2>&1; then
        # CUDA builds: glibc, libstdc++ and cuBLAS dynamic (the GPU machine has them), the rest static
        make -j"$(nproc)" CUDA=1 build/lmpress build/tests/test_cuda build/cuda/lab >/dev/null
        cp build/cuda/lab "$DEV/lab"
        H=/usr/lib/x86_64-linux-gnu
        STATIC="-Wl,-Bstatic -L$H/hdf5/serial -lhdf5 -lsz -laec -L$BLAS -lopenblas -lgfortran -lquadmath -lz -Wl,-Bdynamic"
        CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v "$NVCC")")")")
        DYN="-lm -ldl -lrt -pthread -L$CUDA_HOME/lib64 -lcublas -lcudart_static -lstdc++"
        gcc -o "$DEV/lmpress" build/obj/cli/*.o build/liblmpress.a $STATIC $DYN
        gcc -std=c11 -D_GNU_SOURCE -O2 -pthread -I. -DLMP_WITH_CUDA tests/test_cuda.c build/liblmpress.a $STATIC $DYN \
            -o "$DEV/test_cuda"
    fi
    if ! command -v "$NVCC" >/dev/null 2>&1; then
        # without CUDA: a static CPU lmpress for the cpu-speed part
        make -j"$(nproc)" build/lmpress >/dev/null
        gcc -o "$DEV/lmpress" build/obj/cli/*.o build/liblmpress.a -static -L"$BLAS" -lopenblas -L"$HDF5" -lhdf5 -lsz \
            -laec -ldl -lz -lm -pthread
    fi
    echo "gpu-check: binaries in $DEV/: $(ls "$DEV" | tr '\n' ' ')"
    exit 0
fi
OUTDIR=${OUT:-$DEV/out}
mkdir -p "$OUTDIR"
PARTS=${*:-cpu lab}
fail=0
summary=()
# cuBLAS of the machine's toolkit or of its Python wheels (the CUDA binaries link it dynamically).
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         $(python3 -c 'import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__) + "/lib")' 2>/dev/null); do
    [ -e "$d/libcublas.so.13" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
{
    echo "== host"; lscpu | grep -E 'Model name|^CPU\(s\)' 
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
} 2>&1 | tee "$OUTDIR/host.txt"
for part in $PARTS; do
    t0=$(date +%s)
    case $part in
    cpu)
        for t in test_kernels test_quant test_kquant; do
            echo "== $t"
            if [ -x "$DEV/$t" ]; then
                "$DEV/$t" >"$OUTDIR/$t.txt" 2>&1 || fail=1
                tail -3 "$OUTDIR/$t.txt"
            else
                echo "gpu-check: $DEV/$t missing: run scripts/gpu-check.sh --prepare here and carry $DEV"; fail=1
            fi
        done
        if [ -x "$DEV/bench_kernels" ]; then
            echo "== bench_kernels (all threads: $(nproc))"
            "$DEV/bench_kernels" --threads 1,4,16 --seconds 0.2 2>&1 | tee "$OUTDIR/bench_kernels.txt"
        fi
        ;;
    lab|labq)
        echo "== cuda kernel lab"
        args=""; [ $part = labq ] && args=--quick
        if [ -x "$DEV/lab" ]; then
            "$DEV/lab" $args >"$OUTDIR/lab.txt" 2>&1 || fail=1
            grep -E "^FAIL" "$OUTDIR/lab.txt" | head -20
            grep -vE "^FAIL" "$OUTDIR/lab.txt" | tail -80
            summary+=("lab: $(tail -1 "$OUTDIR/lab.txt")")
        else
            echo "gpu-check: $DEV/lab missing"; fail=1
        fi
        ;;
    cuda)
        echo "== CUDA backend against the CPU backend (test_cuda)"
        SHARED=${SHARED:-shared} timeout 240 "$DEV/test_cuda" >"$OUTDIR/test_cuda.txt" 2>&1 || fail=1
        grep -E "FAIL|SKIP|rms\(diff\)|eval-ppl model|passed" "$OUTDIR/test_cuda.txt" | tail -40
        summary+=("test_cuda: $(tail -1 "$OUTDIR/test_cuda.txt")")
        echo "== --device on the command line with a GPU (tests/cli_device.sh)"
        LMPRESS="$DEV/lmpress" SHARED=${SHARED:-shared} bash tests/cli_device.sh >"$OUTDIR/cli_device.txt" 2>&1 || fail=1
        grep -E "FAIL|SKIP|passed" "$OUTDIR/cli_device.txt"
        summary+=("cli_device: $(tail -1 "$OUTDIR/cli_device.txt")")
        ;;
    bench7b)
        echo "== synthetic Llama-2-7B shape: decode and prefill, F16 / q8_0 / q4_0 (built in memory on all cores)"
        timeout 300 "$DEV/lmpress" bench --device cuda --synth dim=4096,layers=32,heads=32,ffn=11008,vocab=32000,ctx=4096 \
            --synth-types ${BENCH_TYPES:-f16,q8_0,q4_0} --prefill 512 --decode 128 --reps 3 \
            >"$OUTDIR/bench7b.txt" 2>"$OUTDIR/bench7b.err" || fail=1
        cat "$OUTDIR/bench7b.txt" "$OUTDIR/bench7b.err"
        echo "-- the same q4_0 decode without the recorded steps (LMP_CUDA_NO_GRAPH=1), for the graph's share"
        LMP_CUDA_NO_GRAPH=1 timeout 120 "$DEV/lmpress" bench --device cuda --synth dim=4096,layers=32,heads=32,ffn=11008,vocab=32000,ctx=4096 \
            --synth-types q4_0 --prefill 512 --decode 128 --reps 2 >"$OUTDIR/bench7b_nograph.txt" 2>&1 || fail=1
        cat "$OUTDIR/bench7b_nograph.txt"
        summary+=("bench7b: $(grep -c '^| synth' "$OUTDIR/bench7b.txt") rows")
        ;;
    eval)
        # SmolLM2-135M: the q4_1 file (all that fits the transfer limit) dequantized to f32 as the base, and
        # q8_0 / q4_0 re-quantized from that; CUDA against the CPU on the first chunks of WikiText-2 test,
        # then the whole of it on CUDA (timed).
        # EVAL_BASE: the file in $M to start from (default the q4_1 file; a cut of it by build-dev/cut_layers
        # when the whole one does not fit the transfer)
        M=${EVAL_MODELS:-/tmp/lmp-models}
        B=${EVAL_BASE:-smollm2-135m-q4_1.lmp}
        W=${SHARED:-shared}/data/wikitext-2-raw/wiki.test.raw
        echo "== eval-ppl SmolLM2-135M (from $M/$B)"
        L="$DEV/lmpress"
        rm -f "$M"/sm-f32.lmp "$M"/sm-q8_0.lmp "$M"/sm-q4_0.lmp
        $L quantize "$M/$B" --allow-requantize --tensor-type '.*=f32' --embed-type f32 \
            --output-type f32 -o "$M/sm-f32.lmp" -q || fail=1
        $L quantize "$M/sm-f32.lmp" --bits 8 -o "$M/sm-q8_0.lmp" -q || fail=1
        $L quantize "$M/sm-f32.lmp" --bits 4 -o "$M/sm-q4_0.lmp" -q || fail=1
        for d in ${EVAL_DEVICES:-cpu cuda}; do
            te=$(date +%s.%N)
            $L eval-ppl "$M/sm-f32.lmp" "$M/sm-q8_0.lmp" "$M/sm-q4_0.lmp" --data "$W" \
                --chunks ${EVAL_CHUNKS:-40} --device $d -q >"$OUTDIR/eval_$d.txt" 2>&1 || fail=1
            echo "wall $(python3 -c "import time; print(round(time.time() - $te, 2))") s" >>"$OUTDIR/eval_$d.txt"
            echo "-- $d, first ${EVAL_CHUNKS:-40} chunks"; cat "$OUTDIR/eval_$d.txt"
        done
        for v in "LMP_CUDA_NO_FUSE=1" "LMP_CUDA_EXACT=0" "LMP_CUDA_NO_FUSE=1 LMP_CUDA_EXACT=0"; do
            echo "-- cuda with $v, 10 chunks (diagnosis)"
            env $v $L eval-ppl "$M/sm-f32.lmp" "$M/sm-q8_0.lmp" "$M/sm-q4_0.lmp" --data "$W" --chunks 10 --device cuda -q 2>&1 \
                | grep -E "^\| sm" | tee -a "$OUTDIR/eval_diag.txt"
        done
        echo "-- test_cuda with the SmolLM2 files (f32 = the dequantized q4_1, and the q4_1 file)"
        mkdir -p models && ln -sf "$M/sm-f32.lmp" models/smollm2-135m-f32.lmp && ln -sf "$M/$B" models/smollm2-135m-q4_1.lmp
        SHARED=${SHARED:-shared} timeout 200 "$DEV/test_cuda" 2>&1 | grep -E "smollm2|FAIL|passed" | tee "$OUTDIR/test_cuda_smollm2.txt"
        if [ "${EVAL_FULL:-1}" = 1 ]; then
            te=$(date +%s.%N)
            $L eval-ppl "$M/sm-f32.lmp" "$M/sm-q8_0.lmp" "$M/sm-q4_0.lmp" --data "$W" \
                --device cuda -q >"$OUTDIR/eval_cuda_full.txt" 2>&1 || fail=1
            echo "wall $(python3 -c "import time; print(round(time.time() - $te, 2))") s" >>"$OUTDIR/eval_cuda_full.txt"
            echo "-- cuda, whole WikiText-2 test"; cat "$OUTDIR/eval_cuda_full.txt"
        fi
        ;;
    cpu-speed)
        M=${EVAL_MODELS:-/tmp/lmp-models}
        echo "== cpu-speed (issue 14): lmpress${LLAMA_BIN:+ and llama.cpp ($LLAMA_BIN)}, 2 threads"
        if [ ! -f "$M/sm-f32.lmp" ] && [ -f "$M/smollm2-135m-q4_1.lmp" ]; then
            "$DEV/lmpress" quantize "$M/smollm2-135m-q4_1.lmp" --allow-requantize --tensor-type '.*=f32' --embed-type f32 \
                --output-type f32 -o "$M/sm-f32.lmp" -q || fail=1
        fi
        timeout 580 scripts/cpu-speed-check.sh --lmpress "$DEV/lmpress" ${LLAMA_BIN:+--llama "$LLAMA_BIN"} \
            --smollm "$M/sm-f32.lmp" --data "${SHARED:-shared}/data/wikitext-2-raw/wiki.test.raw" --rounds 2 -t 2 \
            2>&1 | tee "$OUTDIR/cpu-speed.txt" || fail=1
        summary+=("cpu-speed: $(grep -c '^| [0-9]' "$OUTDIR/cpu-speed.txt") rows")
        ;;
    *) echo "gpu-check: unknown part '$part'"; fail=1 ;;
    esac
    summary+=("$part: $(( $(date +%s) - t0 )) s")
done
echo "== summary"
printf '%s\n' "${summary[@]}"
echo "gpu-check: $([ $fail = 0 ] && echo passed || echo FAILED)"
exit $fail

#!/usr/bin/env bash
# cli_device.sh - --device on run, eval-ppl and bench (issue 12's "Bad input"): an unknown device, --device
# cuda where CUDA cannot run (a build without CUDA, or no GPU: one line saying which), --device auto falling
# back to the CPU and saying so, a context larger than the model's. On a machine with a GPU (the CUDA
# build run by scripts/gpu-check.sh cuda) instead: a weight type without a CUDA kernel (refused naming the
# type; auto runs it on the CPU and says so) and a KV cache larger than the device (bytes needed against
# free). Each refusal: exit non-zero, one line on stderr, nothing on stdout, files untouched (lib-cli.sh).
#
#   bash tests/cli_device.sh                    LMPRESS=build-dev/lmpress bash tests/cli_device.sh
. "$(dirname "$0")/lib-cli.sh"

xok setup-synth synth --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 --vocab 64 --ctx 128 \
    --tokenizer-from "$FIX/tiny.h5" -o m.lmp
xok setup-iq4 quantize m.lmp --tensor-type '.*=iq4_nl' -q -o mi.lmp  # iq4_nl: no CUDA kernel
awk 'BEGIN { srand(7); split("the cat a dog sat on mat and ran big red it is at in", w, " ");
             for (i = 0; i < 60; i++) { s = ""; for (j = 0; j < 12; j++) s = s w[int(rand() * 15) + 1] " "; print s "." } }' >m.txt

for c in "run m.lmp -n 2" "eval-ppl m.lmp --data m.txt --ctx 64" "bench m.lmp --prefill 8 --decode 4 --reps 1"; do
    set -- $c
    xfail "$1-device-bad" "--device 'gpu': expected cpu, cuda or auto" "$@" --device gpu
    xfail "$1-device-empty" "--device '': expected cpu, cuda or auto" "$@" --device ''
done
xfail run-ctx-above-model-cuda "--ctx 129 is larger than the model's context length 128" run m.lmp --ctx 129 --device cuda
xfail run-ctx-above-model-auto "--ctx 129 is larger than the model's context length 128" run m.lmp --ctx 129 --device auto
xfail eval-ppl-ctx-above-model-cuda "--ctx 256 is larger than the model.? context length 128" \
    eval-ppl m.lmp --data m.txt --ctx 256 --device cuda

# Can CUDA run here? (a CUDA build and a GPU)
lmp run m.lmp -n 1 -q --temp 0 --device cuda
if [ $? = 0 ]; then
    HAVE_GPU=1
else
    HAVE_GPU=0
    why=$(head -1 "$W/.err")
    # exactly one of the two reasons, and it says which
    check no-cuda-reason bash -c '[[ $0 =~ "built without CUDA"|"no CUDA GPU found"|"no usable CUDA driver" ]]' "$why"
fi

if [ $HAVE_GPU = 0 ]; then
    NOCUDA="this lmpress was built without CUDA|no CUDA GPU found|no usable CUDA driver"
    xfail run-cuda-unavailable "$NOCUDA" run m.lmp -n 2 --device cuda
    xfail eval-ppl-cuda-unavailable "$NOCUDA" eval-ppl m.lmp --data m.txt --ctx 64 --device cuda
    xfail bench-cuda-unavailable "$NOCUDA" bench m.lmp --prefill 8 --decode 4 --reps 1 --device cuda
    # auto: runs on the CPU and says so in one line; the same output as --device cpu
    for c in "run m.lmp -n 4 --temp 0 -p the" "eval-ppl m.lmp --data m.txt --ctx 64"; do
        set -- $c
        if xok "$1-auto" "$@" --device auto; then
            check "$1-auto-says" grep -qE "^lmpress $1: --device auto: ($NOCUDA).*; running on the CPU$" "$W/.err"
            check "$1-auto-no-advice" bash -c '! grep -q "use --device cpu" "$0"' "$W/.err"
            cp "$W/.out" auto.out
            if [ "$1" = run ] && xok "$1-cpu" "$@" --device cpu; then check "$1-auto-same" cmp -s auto.out "$W/.out"; fi
        fi
    done
    xok bench-auto bench m.lmp --prefill 8 --decode 4 --reps 1 --device auto \
        && check bench-auto-says grep -qE "^lmpress bench: --device auto: .*running on the CPU$" "$W/.err"
    xok iq4-auto-cpu run mi.lmp -n 2 --temp 0 --device auto  # falls back before the type matters
else
    skip "cuda-unavailable: a GPU is here"
    xfail run-cuda-no-kernel "no matmul kernel for type iq4_nl|cannot read embeddings of type iq4_nl" \
        run mi.lmp -n 2 --device cuda
    xfail eval-ppl-cuda-no-kernel "type iq4_nl" eval-ppl mi.lmp --data m.txt --ctx 64 --device cuda
    xfail bench-cuda-no-kernel "type iq4_nl" bench mi.lmp --prefill 8 --decode 4 --reps 1 --device cuda
    for c in "run mi.lmp -n 4 --temp 0 -p the" "eval-ppl mi.lmp --data m.txt --ctx 64" \
             "bench mi.lmp --prefill 8 --decode 4 --reps 1"; do
        set -- $c
        xok "$1-no-kernel-auto" "$@" --device auto \
            && check "$1-no-kernel-auto-says" grep -qE "^lmpress $1: --device auto: .*type iq4_nl.*; running on the CPU$" "$W/.err"
    done
    xok run-auto-gpu run m.lmp -n 4 --temp 0 -p the --device auto \
        && check run-auto-gpu-silent bash -c '! grep -q "device auto" "$0"' "$W/.err"
    # a KV cache larger than the GPU: 2^20 positions x 2048 x 4 bytes x 2 = 17.2 GB a layer, 172 GB for 10
    xok setup-huge synth --dim 2048 --layers 10 --heads 128 --kv-heads 128 --ffn 64 --vocab 64 --ctx 1048576 \
        --type q8_0 -t 4 --tokenizer-from "$FIX/tiny.h5" -o huge.lmp
    xfail run-cuda-oom "CUDA device out of memory: KV cache.* needs [0-9]+ bytes.*[0-9]+ bytes .*free" \
        run huge.lmp -n 1 --device cuda
    rm -f huge.lmp
fi
finish

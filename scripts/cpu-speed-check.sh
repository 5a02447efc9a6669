#!/usr/bin/env bash
# cpu-speed-check.sh - the CPU speed comparison of issue 14, side by side in one run, as a table:
#   * prefill/decode tok/s of the synthetic 110M shape (lmpress synth) in f32, q8_0, q4_0:
#     `lmpress bench --prefill 128 --decode 64` on the .lmp files against `llama-bench -p 128 -n 64` on their
#     GGUF exports (lmpress export --gguf);
#   * eval-ppl wall time of SmolLM2-135M (f32) on 20 chunks of WikiText-2 test, ctx 512, against
#     llama-perplexity on the GGUF export of the same file;
# interleaved rounds (lmpress, llama.cpp, lmpress, ...), same thread count for both.
#
#   scripts/cpu-speed-check.sh [options]
#     --lmpress BIN    lmpress binary (default build/lmpress, else build-dev/lmpress)
#     --base BIN       also run the lmpress side with this binary (e.g. main's), as rows "base"
#     --llama DIR      directory with llama-bench and llama-perplexity (default: none, lmpress side only)
#     --smollm FILE    SmolLM2-135M f32 .lmp (default models/smollm2-135m-f32.lmp; skipped if missing)
#     --data FILE      WikiText-2 test text (default $SHARED/data/wikitext-2-raw/wiki.test.raw)
#     --rounds N       interleaved rounds (default 2)   -t N   threads (default 2)
#     --work DIR       where the models are written (default a temporary directory, removed at the end)
#     --no-ppl / --no-bench   leave out one part
#     --raw DIR        also keep every tool's full output there (bench-ROUND-WHO.txt, llama-bench-ROUND-TYPE.csv,
#                      eval-ppl-ROUND-WHO.txt, llama-perplexity-ROUND.txt)
# The lmpress bench header (CPU features, kernel table per type, f32 batched path, OpenBLAS core) is printed
# first. Called on the device host by scripts/gpu-check.sh (part cpu-speed) with build-dev/lmpress.
set -uo pipefail
cd "$(dirname "$0")/.."
L=""; BASE=""; LLAMA=""; SMOL=models/smollm2-135m-f32.lmp
DATA=${SHARED:-../shared}/data/wikitext-2-raw/wiki.test.raw
ROUNDS=2; T=2; WORK=""; DO_PPL=1; DO_BENCH=1; RAW=""
while [ $# -gt 0 ]; do
    case $1 in
    --lmpress) L=$2; shift ;;
    --base) BASE=$2; shift ;;
    --llama) LLAMA=$2; shift ;;
    --smollm) SMOL=$2; shift ;;
    --data) DATA=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    -t) T=$2; shift ;;
    --work) WORK=$2; shift ;;
    --no-ppl) DO_PPL=0 ;;
    --no-bench) DO_BENCH=0 ;;
    --raw) RAW=$2; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "cpu-speed-check: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$L" ]; then
    if [ -x build/lmpress ]; then L=build/lmpress; else L=build-dev/lmpress; fi
fi
[ -x "$L" ] || { echo "cpu-speed-check: no lmpress binary at '$L'" >&2; exit 1; }
if [ -n "$LLAMA" ] && [ ! -x "$LLAMA/llama-bench" ]; then
    echo "cpu-speed-check: no llama-bench in '$LLAMA'" >&2; exit 1
fi
if [ -z "$WORK" ]; then
    WORK=$(mktemp -d /tmp/cpu-speed.XXXXXX); trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
[ -n "$RAW" ] && mkdir -p "$RAW"
# keep NAME: stdin to $RAW/NAME when --raw was given
keep() { if [ -n "$RAW" ]; then cat > "$RAW/$1"; else cat > /dev/null; fi; }
# warm FILE...: read the inputs into the page cache right before a tool runs. Why: a VM may reclaim idle page
# cache (the Intel dev VM runs DAMON 'pageout' on memory idle for 60 s), and then the first run of a round
# measures the disk instead of the tool (f32 decode 15 tok/s instead of 50 there).
warm() { cat "$@" > /dev/null 2>&1 || true; }
now() { date +%s.%N; }
lscpu | grep -E 'Model name|^CPU\(s\)'
# llama.cpp needs a tokenizer in the GGUF: the Llama-2 one (32000 tokens) when present, carried by a tiny
# llama2.c checkpoint of vocab 32000 so that `synth --tokenizer-from` takes it.
TOKBIN=${SHARED:-../shared}/models/llama2-tokenizer/tokenizer.bin
tokargs=()
if [ -f "$TOKBIN" ]; then
    python3 - "$WORK/tok32k.bin" <<'EOF'
import struct, sys
dim, hid, L, H, KV, V, S = 32, 64, 1, 1, 1, 32000, 64
n = V * dim + L * dim + 4 * L * dim * dim + L * dim + 3 * L * hid * dim + dim + S * dim // 2 * 2
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("7i", dim, hid, L, H, KV, V, S))
    f.write(struct.pack("f", 0.01) * n)
EOF
    tokargs=(--tokenizer-from "$WORK/tok32k.bin" --tokenizer "$TOKBIN")
elif [ -n "$LLAMA" ]; then
    echo "cpu-speed-check: $TOKBIN missing: llama-bench cannot load GGUFs without a tokenizer" >&2; exit 1
fi
rows=()
if [ $DO_BENCH = 1 ]; then
    for ty in f32 q8_0 q4_0; do
        targ=(); [ $ty != f32 ] && targ=(--type $ty)
        [ -f "$WORK/s-$ty.lmp" ] || "$L" synth -t "$T" "${targ[@]}" "${tokargs[@]}" -o "$WORK/s-$ty.lmp" -f 2>&1 | tail -1
        if [ -n "$LLAMA" ] && [ ! -f "$WORK/s-$ty.gguf" ]; then
            "$L" export "$WORK/s-$ty.lmp" --gguf -o "$WORK/s-$ty.gguf" 2>&1 | tail -1
        fi
    done
fi
if [ $DO_PPL = 1 ] && [ -f "$SMOL" ] && [ -f "$DATA" ] && [ -n "$LLAMA" ] && [ ! -f "$WORK/smol.gguf" ]; then
    "$L" export "$SMOL" --gguf -o "$WORK/smol.gguf" 2>&1 | tail -1
fi
header_done=0
for r in $(seq 1 "$ROUNDS"); do
    if [ $DO_BENCH = 1 ]; then
        for who in lmpress ${BASE:+base}; do
            bin=$L; [ $who = base ] && bin=$BASE
            warm "$WORK"/s-f32.lmp "$WORK"/s-q8_0.lmp "$WORK"/s-q4_0.lmp
            out=$("$bin" bench "$WORK"/s-f32.lmp "$WORK"/s-q8_0.lmp "$WORK"/s-q4_0.lmp --prefill 128 --decode 64 --reps 3 -t "$T" 2>/dev/null)
            echo "$out" | keep "bench-$r-$who.txt"
            if [ $header_done = 0 ] && [ $who = lmpress ]; then
                echo "== lmpress bench paths"; echo "$out" | grep -vE '^\|' | grep -v '^read bandwidth' | sed '/^$/d'
                header_done=1
            fi
            for ty in f32 q8_0 q4_0; do
                line=$(echo "$out" | grep "| s-$ty.lmp")
                pp=$(echo "$line" | awk -F'|' '{gsub(/ /,"",$4); print $4}'); tg=$(echo "$line" | awk -F'|' '{gsub(/ /,"",$5); print $5}')
                rows+=("$r|$who|$ty|$pp|$tg")
            done
        done
        if [ -n "$LLAMA" ]; then
            for ty in f32 q8_0 q4_0; do
                warm "$WORK/s-$ty.gguf"
                out=$("$LLAMA/llama-bench" -m "$WORK/s-$ty.gguf" -p 128 -n 64 -t "$T" -r 3 -o csv 2>/dev/null)
                echo "$out" | keep "llama-bench-$r-$ty.csv"
                # csv: the n_prompt / n_gen / avg_ts columns by name
                vals=$(echo "$out" | python3 -c '
import csv, sys
rows = list(csv.DictReader(sys.stdin))
pp = [r["avg_ts"] for r in rows if r.get("n_prompt") not in ("0", None) and r.get("n_gen") == "0"]
tg = [r["avg_ts"] for r in rows if r.get("n_gen") not in ("0", None) and r.get("n_prompt") == "0"]
print("%.1f %.1f" % (float(pp[0]) if pp else 0, float(tg[0]) if tg else 0))')
                rows+=("$r|llama.cpp|$ty|${vals% *}|${vals#* }")
            done
        fi
    fi
    if [ $DO_PPL = 1 ] && [ -f "$SMOL" ] && [ -f "$DATA" ]; then
        for who in lmpress ${BASE:+base}; do
            bin=$L; [ $who = base ] && bin=$BASE
            warm "$SMOL" "$DATA"
            t0=$(now)
            out=$("$bin" eval-ppl "$SMOL" --data "$DATA" --chunks 20 --ctx 512 --decode-tokens 0 -t "$T" -q 2>/dev/null)
            t1=$(now)
            echo "$out" | keep "eval-ppl-$r-$who.txt"
            ppl=$(echo "$out" | grep -E '^\| ' | tail -1 | awk -F'|' '{split($6, a, " "); print a[1]}')
            rows+=("$r|$who|eval-ppl|$(python3 -c "print(round($t1 - $t0, 1))")|ppl $ppl")
        done
        if [ -n "$LLAMA" ] && [ -f "$WORK/smol.gguf" ]; then
            warm "$WORK/smol.gguf" "$DATA"
            t0=$(now)
            out=$("$LLAMA/llama-perplexity" -m "$WORK/smol.gguf" -f "$DATA" -c 512 --chunks 20 -t "$T" 2>&1)
            t1=$(now)
            echo "$out" | keep "llama-perplexity-$r.txt"
            ppl=$(echo "$out" | grep -oE 'Final estimate: PPL = [0-9.]+' | awk '{print $NF}')
            rows+=("$r|llama.cpp|eval-ppl|$(python3 -c "print(round($t1 - $t0, 1))")|ppl $ppl")
        fi
    fi
done
echo
echo "== cpu-speed ($T threads, $ROUNDS interleaved rounds; bench: prefill 128 / decode 64 tok/s, best of 3 each)"
echo "| round | program | test | prefill tok/s or wall s | decode tok/s or ppl |"
echo "|---:|---|---|---:|---:|"
for row in "${rows[@]}"; do echo "| ${row//|/ | } |"; done

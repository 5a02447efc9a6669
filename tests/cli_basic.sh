#!/usr/bin/env bash
# cli_basic.sh - command-line cases of every subcommand except quantize's own options (tests/cli_quantize.sh):
# bad options and values, missing / nonexistent / malformed inputs, outputs that would overwrite an input
# or cannot be created, and the good paths of run, eval-ppl (--json, --plot, two models), import, export
# and info. Each refusal must exit non-zero with one clear line on stderr, nothing on stdout and the files
# untouched (see tests/lib-cli.sh).
#
# Models: a small random model (lmpress synth, tokenizer of tests/fixtures/tiny.h5) and the llama2.c
# fixture for the cases that need nothing else; the shipped default model (models/default.lmp, its evaluation
# text) for the real-model cases; stories260K from $SHARED only for what needs that llama2.c checkpoint itself
# (llama2.c's own greedy text, importing the .bin), skipped (SKIP lines) without it.
#
#   bash tests/cli_basic.sh                     LMPRESS=build-san/lmpress bash tests/cli_basic.sh
. "$(dirname "$0")/lib-cli.sh"

# ---- fixtures, all in the work directory ----
xok setup-synth synth --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 --vocab 64 --ctx 128 \
    --tokenizer-from "$FIX/tiny.h5" -o m.lmp
xok setup-quantize quantize m.lmp --bits 8 -q -o m8.lmp
# Text in the fixture tokenizer's alphabet: ~9 KB, dozens of 128-token chunks.
awk 'BEGIN { srand(7); split("the cat a dog sat on mat and ran big red it is at in", w, " ");
             for (i = 0; i < 150; i++) { s = ""; for (j = 0; j < 12; j++) s = s w[int(rand() * 15) + 1] " "; print s "." } }' >m.txt
echo "a cat sat." >short.txt
cp "$FIX/llama2c/tiny_legacy.bin" tl.bin
cp "$FIX/llama2c/tokenizer.bin" tokenizer.bin  # found beside tl.bin
mkdir alone outdir
cp "$FIX/llama2c/tiny_legacy.bin" alone/tl.bin  # no tokenizer beside it
ln m.lmp m-hard.lmp
ln -s m.lmp m-sym.lmp
ln tl.bin tl-hard.bin
ln -s tl.bin tl-sym.bin
# Malformed models.
size=$(stat -c %s m.lmp)
head -c $((size / 2)) m.lmp >trunc.lmp
head -c 40 m.lmp >trunc-header.lmp
awk 'BEGIN { srand(11); for (i = 0; i < 3000; i++) printf "%c", int(rand() * 255) + 1 }' >junk.lmp
: >empty.lmp
head -c 20000 tl.bin >trunc.bin
head -c 3000 "$FIX/tiny.h5" >trunc.h5
head -c 60000 "$FIX/gguf/tiny.gguf" >trunc.gguf
cp m.lmp flip.lmp  # one byte of tensor data changed, three quarters into the file
printf '\x5a' | dd of=flip.lmp bs=1 seek=$((size * 3 / 4)) conv=notrunc status=none
cmp -s m.lmp flip.lmp && printf '\xa5' | dd of=flip.lmp bs=1 seek=$((size * 3 / 4)) conv=notrunc status=none
cp m.lmp fliphdr.lmp  # a byte of the header
printf '\x07' | dd of=fliphdr.lmp bs=1 seek=30 conv=notrunc status=none

# Arguments of one ordinary invocation of SUB on MODEL (and output OUT where it has one), in CMD.
cmd_for() {
    local s=$1 m=$2 o=${3:-}
    case $s in
    info) CMD=(info "$m") ;;
    run) CMD=(run "$m" -n 4 -q) ;;
    bench) CMD=(bench "$m" --reps 1 --prefill 4 --decode 4) ;;
    eval-ppl) CMD=(eval-ppl "$m" --data m.txt --chunks 1 -q) && [ -n "$o" ] && CMD+=(--plot "$o") ;;
    export) CMD=(export "$m" --hdf5 -o "${o:-x.h5}") ;;
    quantize) CMD=(quantize "$m" --bits 8 -q -o "${o:-x.lmp}") ;;
    dump-logits) CMD=(dump-logits "$m" --tokens 1,2,3 -o "${o:-x.f32}") ;;
    synth) CMD=(synth --dim 8 --heads 2 --layers 1 --ffn 8 --vocab 64 --tokenizer-from "$m" -o "${o:-x.lmp}") ;;
    import) CMD=(import "$m" -o "${o:-x.lmp}") ;;
    esac
    return 0
}
MODEL_CMDS="info run bench eval-ppl export quantize dump-logits synth import"
OUT_CMDS="export quantize dump-logits synth import eval-ppl"

# ---- every subcommand: options and inputs ----
for s in $MODEL_CMDS; do
    xok "$s-help" "$s" --help && check "$s-help-usage" grep -q "^usage: lmpress $s" .out
done
xok version --version && check version-line grep -qE "^lmpress [0-9]+\.[0-9]+" .out
lmp
rc=$?
check no-command-status [ $rc = 2 ]
check no-command-usage grep -q "^usage: lmpress COMMAND" .err
for s in $MODEL_CMDS; do
    cmd_for "$s" m.lmp
    xfail "$s-unknown-long-option" "unknown option '--bogus'" "${CMD[@]}" --bogus
    xfail "$s-unknown-short-option" "unknown option '-Z'" "${CMD[@]}" -Z
    cmd_for "$s" nonexistent.lmp
    xfail "$s-nonexistent" "cannot open 'nonexistent.lmp'.*no such file" "${CMD[@]}"
    cmd_for "$s" missing-dir/m.lmp
    xfail "$s-nonexistent-dir" "cannot open 'missing-dir/m.lmp'" "${CMD[@]}"
done
for s in info run bench eval-ppl export quantize dump-logits import; do
    cmd_for "$s" m.lmp
    args=("${CMD[@]:0:1}" "${CMD[@]:2}")  # the model left out
    xfail "$s-no-model" "expected (exactly|at least) one" "${args[@]}"
done
xfail synth-no-output "missing -o" synth --dim 8 --heads 2 --layers 1 --ffn 8 --vocab 64
xfail synth-extra-arg "unexpected argument 'm.lmp'" synth m.lmp -o x.lmp
xfail import-no-output "missing -o" import tl.bin
xfail export-no-format "exactly one of --hdf5 and --gguf" export m.lmp -o x.h5
xfail export-two-formats "exactly one of --hdf5 and --gguf" export m.lmp --hdf5 --gguf -o x.h5
xfail dump-logits-no-tokens "exactly one of --tokens and --text" dump-logits m.lmp -o x.f32
xfail info-two-models "expected exactly one" info m.lmp m8.lmp
xfail option-needs-value "option '--data' needs a value" eval-ppl m.lmp --data
xfail unknown-command "unknown command 'frobnicate'" frobnicate m.lmp

# ---- every subcommand that reads a model: malformed files ----
# Every reader goes through the same open: each subcommand gets three kinds, info and run all of them.
for s in $MODEL_CMDS; do
    files="trunc.lmp junk.lmp trunc.bin"
    case $s in info | run) files="$files trunc-header.lmp empty.lmp trunc.h5 trunc.gguf" ;; esac
    for f in $files; do
        case $s:$f in
        import:*.lmp) re="already an lmpress file|cannot tell the format" ;;
        *:trunc.lmp | *:trunc-header.lmp | *:trunc.gguf) re="truncated|extends past the end" ;;
        *:junk.lmp | *:empty.lmp) re="unknown format|cannot tell the format" ;;
        *:trunc.bin) re="file is 20000 bytes, but its llama2.c .*header.*implies" ;;
        *:trunc.h5) re="corrupt file|truncated" ;;
        esac
        cmd_for "$s" "$f"
        xfail "$s-malformed-$f" "$re" "${CMD[@]}"
    done
done
for s in info run bench eval-ppl export quantize dump-logits; do
    cmd_for "$s" flip.lmp
    xfail "$s-tensor-crc" "flip\.lmp: tensor '[a-z0-9_.]+': CRC32 mismatch" "${CMD[@]}"
done
for s in info run; do
    cmd_for "$s" fliphdr.lmp
    xfail "$s-header-crc" "header checksum mismatch" "${CMD[@]}"
done

# ---- outputs: never over an input, only where they can be created ----
for s in $OUT_CMDS; do
    if [ "$s" = import ]; then src=tl.bin; spellings="tl.bin ./tl.bin $W/tl.bin ../${W##*/}/tl.bin tl-hard.bin tl-sym.bin"
    else src=m.lmp; spellings="m.lmp ./m.lmp $W/m.lmp ../${W##*/}/m.lmp m-hard.lmp m-sym.lmp"; fi
    for o in $spellings; do
        cmd_for "$s" "$src" "$o"
        xfail "$s-output-is-input($o)" "output '.*' is the input" "${CMD[@]}"
    done
    cmd_for "$s" "$src" no-such-dir/x.out
    xfail "$s-output-dir-missing" "directory 'no-such-dir' does not exist" "${CMD[@]}"
    cmd_for "$s" "$src" outdir
    xfail "$s-output-is-directory" "output 'outdir' is a directory" "${CMD[@]}"
done
# The tokenizer a llama2.c checkpoint reads is an input too, named or found beside it.
for s in import export quantize dump-logits synth eval-ppl; do
    cmd_for "$s" tl.bin tokenizer.bin
    xfail "$s-output-is-found-tokenizer" "output 'tokenizer.bin' is the tokenizer" "${CMD[@]}"
    cmd_for "$s" alone/tl.bin tokenizer.bin
    xfail "$s-output-is-given-tokenizer" "output 'tokenizer.bin' is the tokenizer" "${CMD[@]}" --tokenizer tokenizer.bin
done
# ---- an existing output: refused without -f/--force (the file untouched), replaced with it ----
# xfail checks that the refused file keeps its MD5 and the work directory its state. With --force the file is
# replaced by renaming a finished temporary file over it: a hard link to the old file keeps the old bytes.
replaced() { ! grep -qax "$2" "$1" && [ "$(stat -c %s "$1")" -gt 100 ]; }  # file, old content
for s in $OUT_CMDS; do
    if [ "$s" = import ]; then src=tl.bin; else src=m.lmp; fi
    echo "precious $s" >exist.out
    cmd_for "$s" "$src" exist.out
    xfail "$s-output-exists" "^lmpress $s: output 'exist.out' exists \(use -f/--force to overwrite\)$" "${CMD[@]}"
    ln -s nowhere dangling.out
    cmd_for "$s" "$src" dangling.out
    xfail "$s-output-dangling-link-exists" "output 'dangling.out' exists \(use -f/--force" "${CMD[@]}"
    rm -f dangling.out
    ln exist.out exist-link.out
    cmd_for "$s" "$src" exist.out
    for f in -f --force; do
        if xok "$s-output-replaced($f)" "${CMD[@]}" "$f"; then
            check "$s-output-replaced-content($f)" replaced exist.out "precious $s"
        fi
        echo "precious $s" >exist.out
    done
    rm -f exist.out
    check "$s-force-renames(old link intact)" grep -qx "precious $s" exist-link.out
    rm -f exist-link.out
    # -f never writes over an input, nor over a directory or a file that is not a regular one
    if [ "$s" = import ]; then spellings="tl.bin ./tl.bin $W/tl.bin tl-hard.bin tl-sym.bin"
    else spellings="m.lmp ./m.lmp $W/m.lmp m-hard.lmp m-sym.lmp"; fi
    for o in $spellings; do
        cmd_for "$s" "$src" "$o"
        xfail "$s-force-output-is-input($o)" "output '.*' is the input" "${CMD[@]}" -f
    done
    cmd_for "$s" "$src" outdir
    xfail "$s-force-output-is-directory" "output 'outdir' is a directory" "${CMD[@]}" --force
    mkfifo fifo.out
    cmd_for "$s" "$src" fifo.out
    xfail "$s-force-output-not-regular" "output 'fifo.out' exists and is not a regular file" "${CMD[@]}" -f
    rm -f fifo.out
done
for s in import export quantize dump-logits synth eval-ppl; do
    cmd_for "$s" tl.bin tokenizer.bin
    xfail "$s-force-output-is-found-tokenizer" "output 'tokenizer.bin' is the tokenizer" "${CMD[@]}" -f
done
xfail eval-ppl-force-plot-is-data "--plot 'm.txt' is the data file" eval-ppl m.lmp --data m.txt --plot m.txt -f
for s in $OUT_CMDS; do
    xok "$s-help-force" "$s" --help && check "$s-help-lists-force" grep -qE '^  -f, --force ' .out
done
xfail eval-ppl-plot-is-data "--plot 'm.txt' is the data file" eval-ppl m.lmp --data m.txt --plot m.txt
xfail synth-tokenizer-without-from "--tokenizer is only used with --tokenizer-from" \
    synth --dim 8 --heads 2 --layers 1 --ffn 8 --vocab 64 --tokenizer tokenizer.bin -o x.lmp
xfail run-tokenizer-nonexistent "cannot open 'nope.bin'" run alone/tl.bin --tokenizer nope.bin

# ---- run ----
while IFS='|' read -r opt val re; do
    xfail "run-bad-value($opt $val)" "$re" run m.lmp "$opt" "$val"
done <<'EOF'
--ctx|-1|--ctx -1 is out of range
--ctx|0|--ctx 0 is out of range
--ctx|abc|--ctx expects an integer, got 'abc'
--ctx|1.5|--ctx expects an integer, got '1.5'
-n|-1|--tokens -1 is out of range
-n|abc|--tokens expects an integer, got 'abc'
-n|1e3|--tokens expects an integer, got '1e3'
--tokens|99999999|--tokens 99999999 is out of range
--temp|-1|--temp -1 is out of range
--temp|abc|--temp expects a number, got 'abc'
--temp|nan|--temp expects a number, got 'nan'
--temp|inf|--temp inf is out of range
--temp||--temp expects a number, got ''
--top-p|0|--top-p 0 is out of range
--top-p|1.5|--top-p 1.5 is out of range
--top-p|-0.1|--top-p -0.1 is out of range
--top-p|nan|--top-p expects a number, got 'nan'
--threads|0|--threads 0 is out of range
--threads|-2|--threads -2 is out of range
--threads|abc|--threads expects an integer, got 'abc'
--threads|100000|--threads 100000 is out of range
-t|0|--threads 0 is out of range
--seed|-1|--seed -1 is out of range
--seed|x|--seed expects an integer, got 'x'
EOF
xfail "run-ctx-above-model" "--ctx 129 is larger than the model's context length 128" run m.lmp --ctx 129
xfail "run-ctx-below-prompt" "the prompt has [0-9]+ tokens; the context holds 1" run m.lmp --ctx 1
xfail "run-prompt-too-long" "the prompt has [0-9]+ tokens; the context holds 128" run m.lmp -p "$(cat m.txt)"
xfail "run-no-tokenizer" "'alone/tl.bin' has no tokenizer.*--tokenizer" run alone/tl.bin
if xok run-greedy-synth run m.lmp --temp 0 -n 8 -q; then
    cp .out greedy1.txt
    xok run-greedy-synth-again run m.lmp --temp 0 -n 8 -q --seed 5 && check run-greedy-deterministic cmp -s .out greedy1.txt
    rm -f greedy1.txt
fi
xok run-zero-tokens run m.lmp -n 0 -q -p "the cat"
check run-zero-tokens-prints-prompt grep -q "the cat" .out
xok run-llama2c-with-tokenizer-beside run tl.bin -n 4 -q --temp 0
if [ $HAVE_SHARED = 1 ]; then
    LILY="Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
    xok run-stories260K-greedy run "$M260/stories260K.bin" --tokenizer "$M260/tok512.bin" --temp 0 -n 40
    check run-stories260K-greedy-text grep -qF "$LILY" .out
    check run-stories260K-greedy-starts [ "$(head -c ${#LILY} .out)" = "$LILY" ]
    check run-stories260K-speed-report grep -q "decode .* tok/s" .err
else
    skip "run-stories260K-greedy: $SHARED/models/stories260K not found"
fi
# The shipped model: greedy is the same text with 1 and 2 threads, starts with the prompt, reports its speed.
DSTORY="Once upon a time, there was a little girl named Lily. She loved to play with her toys"
if xok run-default-greedy run "$DEFAULT_MODEL" -p "Once upon a time" --temp 0 -n 40 --threads 2; then
    check run-default-greedy-text [ "$(head -c ${#DSTORY} .out)" = "$DSTORY" ]
    check run-default-speed-report grep -q "decode .* tok/s" .err
    cp .out dgreedy.txt
    xok run-default-greedy-1-thread run "$DEFAULT_MODEL" -p "Once upon a time" --temp 0 -n 40 --threads 1 -q &&
        check run-default-greedy-threads-agree cmp -s .out dgreedy.txt
    rm -f dgreedy.txt
fi

# ---- eval-ppl ----
xfail eval-ppl-no-data "missing --data FILE" eval-ppl m.lmp
xfail eval-ppl-data-nonexistent "cannot open 'nope.txt'" eval-ppl m.lmp --data nope.txt
xfail eval-ppl-data-directory "'outdir' is not a regular file" eval-ppl m.lmp --data outdir
xfail eval-ppl-chunks-0 "--chunks 0 is out of range" eval-ppl m.lmp --data m.txt --chunks 0
xfail eval-ppl-chunks-neg "--chunks -3 is out of range" eval-ppl m.lmp --data m.txt --chunks -3
xfail eval-ppl-ctx-abc "--ctx expects an integer" eval-ppl m.lmp --data m.txt --ctx abc
xfail eval-ppl-ctx-small "--ctx 3 is out of range" eval-ppl m.lmp --data m.txt --ctx 3
xfail eval-ppl-ctx-above-model "--ctx 256 is larger than the model.? context length 128" eval-ppl m.lmp --data m.txt --ctx 256
xfail eval-ppl-short-data "'short.txt' has [0-9]+ tokens, fewer than one chunk of 128" eval-ppl m.lmp --data short.txt
xfail eval-ppl-empty-data "'empty.lmp' has 0 tokens" eval-ppl m.lmp --data empty.lmp
xfail eval-ppl-threads-0 "--threads 0 is out of range" eval-ppl m.lmp --data m.txt --threads 0
xfail eval-ppl-decode-tokens-neg "--decode-tokens -1 is out of range" eval-ppl m.lmp --data m.txt --decode-tokens -1
xfail eval-ppl-second-model-bad "truncated" eval-ppl m.lmp trunc.lmp --data m.txt --chunks 1

JSON_KEYS="path ppl ppl_err tokens params bits_per_weight file_bytes kld top1 prefill_tok_s decode_tok_s"
check_json() { # name, file, n_models, compare (1: models after the first have 0 < kld < 1, 0 < top1 <= 1)
    if python3 - "$2" "$3" "$4" "$JSON_KEYS" <<'EOF'; then ok; else bad "$1" "invalid or incomplete JSON: $(head -c 300 "$2")"; fi
import json, math, sys
d = json.load(open(sys.argv[1]))
n, cmp, keys = int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4].split()
assert len(d["models"]) == n, "models"
for k, m in enumerate(d["models"]):
    for key in keys:
        assert key in m, key
        if key != "path": assert isinstance(m[key], (int, float)) and math.isfinite(m[key]), key
    assert m["ppl"] > 1 and m["tokens"] > 0 and m["params"] > 0 and m["file_bytes"] > 0, m
    if k == 0: assert m["kld"] == 0 and m["top1"] == 1, m
    elif cmp: assert 0 < m["kld"] < 1 and 0 < m["top1"] <= 1, m
EOF
}
check_svg() { # name, file
    if python3 - "$2" <<'EOF'; then ok; else bad "$1" "not a well-formed SVG: $(head -c 200 "$2")"; fi
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag in ("svg", "{http://www.w3.org/2000/svg}svg"), root.tag
EOF
}
if command -v python3 >/dev/null; then
    if xok eval-ppl-json-plot eval-ppl m.lmp m8.lmp --data m.txt --chunks 2 --json --plot chart.svg -q; then
        cp .out ppl.json
        check_json eval-ppl-json ppl.json 2 1
        check_svg eval-ppl-plot chart.svg
        check eval-ppl-json-chunks python3 -c 'import json,sys; d=json.load(open("ppl.json")); sys.exit(d["chunks"] != 2 or d["ctx"] != 128)'
    fi
    rm -f chart.svg ppl.json
    # The shipped model on its own evaluation text (PPL 4.07 over all 39 chunks: docs/benchmarks.md).
    xok quantize-default-q8 quantize "$DEFAULT_MODEL" --bits 8 -q -o d8.lmp
    if xok eval-ppl-default eval-ppl "$DEFAULT_MODEL" d8.lmp --data "$DEFAULT_EVAL" --chunks 2 --decode-tokens 8 \
        --json --plot d.svg -q; then
        cp .out d.json
        check_json eval-ppl-default-json d.json 2 1
        check_svg eval-ppl-default-plot d.svg
        check eval-ppl-default-ppl python3 -c 'import json,sys; d=json.load(open("d.json")); sys.exit(not 2 < d["models"][0]["ppl"] < 8)'
    fi
    xfail eval-ppl-default-ctx-above-model "--ctx 1024 is larger than the model.? context length 512" \
        eval-ppl "$DEFAULT_MODEL" --data "$DEFAULT_EVAL" --ctx 1024
    rm -f d.json d.svg d8.lmp
else
    skip "eval-ppl --json / --plot validation: python3 not found"
fi
if xok eval-ppl-table eval-ppl m.lmp m8.lmp --data m.txt --chunks 1 --decode-tokens 4 -q; then
    check eval-ppl-table-rows [ "$(grep -c '^| m8\?\.lmp ' .out)" = 2 ]
    check eval-ppl-quiet [ ! -s .err ]
fi

# ---- dump-logits, bench, synth values ----
xfail dump-logits-token-range "bad token id near '64'" dump-logits m.lmp --tokens 1,64 -o x.f32
xfail dump-logits-token-syntax "bad token id near ',2'" dump-logits m.lmp --tokens 1,,2 -o x.f32
xfail dump-logits-trailing-comma "ends with a comma" dump-logits m.lmp --tokens 1,2, -o x.f32
xfail dump-logits-too-many "200 tokens: need 1..128" dump-logits m.lmp --tokens "$(seq -s, 1 200 | sed 's/[0-9]*/1/g')" -o x.f32
xfail dump-logits-batch-0 "--batch 0 is out of range" dump-logits m.lmp --tokens 1 --batch 0 -o x.f32
xfail dump-logits-no-tokenizer "has no tokenizer" dump-logits alone/tl.bin --text hi -o x.f32
xfail bench-context "--prefill 100 \+ --decode 100 exceed the context 128" bench m.lmp --prefill 100 --decode 100
xfail bench-reps-0 "--reps 0 is out of range" bench m.lmp --reps 0
xfail bench-second-model-bad "truncated" bench m.lmp trunc.lmp --reps 1 --prefill 4 --decode 4
if xok bench-json bench m.lmp --reps 1 --prefill 4 --decode 4 --json && command -v python3 >/dev/null; then
    check bench-json-valid python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["models"][0]["decode_tok_s"] > 0' <.out
fi
xfail synth-dim-0 "--dim 0 is out of range" synth --dim 0 -o x.lmp
xfail synth-heads "must be an even multiple of heads 3" synth --dim 8 --heads 3 --layers 1 --ffn 8 --vocab 8 -o x.lmp
xfail synth-kv-heads "kv heads 3 must divide heads 2" synth --dim 8 --heads 2 --kv-heads 3 --layers 1 --ffn 8 --vocab 8 -o x.lmp
xfail synth-vocab-below-tokenizer "--vocab 16 is smaller than the tokenizer's 64 tokens" \
    synth --dim 8 --heads 2 --layers 1 --ffn 8 --vocab 16 --tokenizer-from m.lmp -o x.lmp
xfail synth-tokenizer-from-none "has no tokenizer" synth --dim 8 --heads 2 --layers 1 --ffn 8 --vocab 64 \
    --tokenizer-from alone/tl.bin -o x.lmp

# ---- import, export, info ----
xfail import-llama2c-no-tokenizer "no tokenizer for 'alone/tl.bin'.*--tokenizer FILE" import alone/tl.bin -o alone/x.lmp
xfail import-lmp "already an lmpress file" import m.lmp -o x.lmp
xfail import-tokenizer-nonexistent "cannot open 'nope.bin'" import alone/tl.bin --tokenizer nope.bin -o x.lmp
xfail import-tokenizer-and-none "contradict" import alone/tl.bin --tokenizer tokenizer.bin --no-tokenizer -o x.lmp
xfail import-bad-tokenizer "tokenizer 'm.txt'" import alone/tl.bin --tokenizer m.txt -o x.lmp
xok import-no-tokenizer-asked import alone/tl.bin --no-tokenizer -q -o alone/x.lmp
rm -f alone/x.lmp
if xok import-llama2c import tl.bin -o tl.lmp; then
    check import-summary grep -q "imported tl.bin (llama2.c): [0-9]* tensors" .err
    xok info-imported info tl.lmp
    check info-tensor-table grep -qE "^  blk\.1\.ffn_down\.weight +f32 +32 x 40 +5120  0x[0-9a-f]{8}$" .out
    check info-tokenizer grep -q "tokenizer.tokens" .out
    check info-provenance grep -q 'provenance.command.*import tl.bin' .out
    cp .out tl.info
    # HDF5 and GGUF round trips: identical tensor table (names, types, shapes, sizes, CRC32) and logits.
    for fmt in hdf5 gguf; do
        if xok "export-$fmt" export tl.lmp --$fmt -o "tl.$fmt" && xok "import-$fmt" import "tl.$fmt" -o "tl-$fmt.lmp" &&
            xok "info-$fmt" info "tl-$fmt.lmp"; then
            check "export-$fmt-roundtrip-tensors" diff <(sed -n '/^tensors/,$p' tl.info) <(sed -n '/^tensors/,$p' .out)
            xok "dump-logits-$fmt-a" dump-logits tl.lmp --tokens 1,19,21,26,27,19,28 -o a.f32
            xok "dump-logits-$fmt-b" dump-logits "tl-$fmt.lmp" --tokens 1,19,21,26,27,19,28 -o b.f32
            check "export-$fmt-roundtrip-logits" cmp -s a.f32 b.f32
            check "dump-logits-$fmt-size" [ "$(stat -c %s a.f32)" = $((7 * 64 * 4)) ]
            rm -f a.f32 b.f32
        fi
        rm -f "tl.$fmt" "tl-$fmt.lmp"
    done
    rm -f tl.info tl.lmp
fi
# The GGUF that gguf-py read for tests/fixtures/gguf/export_ref.txt (scripts/ref_gguf_export.py) is what the
# command writes, byte for byte (tests/test_gguf_export.c checks what gguf-py saw in it).
want=$(awk '$1 == "case" { c = $2 } $1 == "file" && c == "tiny" { print $4 }' "$FIX/gguf/export_ref.txt")
if xok export-gguf-as-gguf-py-read export "$FIX/gguf/tiny.gguf" --gguf -o tiny-export.gguf; then
    check export-gguf-md5-of-fixture [ "$(md5sum <tiny-export.gguf | cut -d' ' -f1)" = "${want:-no md5 in the fixture}" ]
fi
rm -f tiny-export.gguf
xok info-llama2c-direct info tl.bin --no-tensors && check info-direct-source grep -q "llama2.c (imported in memory)" .out
xfail info-tensor-crc-named "flip.lmp: tensor '[a-z0-9_.]+': CRC32 mismatch" info flip.lmp
# The shipped model: info, HDF5 round trip (same tensor table and CRCs), a flipped byte named by its tensor.
cp "$DEFAULT_MODEL" d.lmp
if xok info-default info d.lmp; then
    check info-default-count grep -q "^47 tensors, 279232 parameters" .out
    check info-default-table grep -qE "^  token_embd\.weight +f32 +512 x 64 +131072  0x[0-9a-f]{8}$" .out
    cp .out d.info
    if xok export-default-hdf5 export d.lmp --hdf5 -o d.h5 && xok import-default-hdf5 import d.h5 -o d2.lmp &&
        xok info-default-hdf5 info d2.lmp; then
        check export-default-roundtrip-tensors diff <(sed -n '/^tensors/,$p' d.info) <(sed -n '/^tensors/,$p' .out)
    fi
    cp d.lmp dflip.lmp
    printf '\x55' | dd of=dflip.lmp bs=1 seek=$(($(stat -c %s d.lmp) - 1000)) conv=notrunc status=none
    xfail info-default-flip "dflip.lmp: tensor '[a-z0-9_.]+': CRC32 mismatch" info dflip.lmp
    rm -f d.info d.h5 d2.lmp dflip.lmp
fi
rm -f d.lmp
# stories260K itself: the llama2.c checkpoint, its tokenizer found beside it or not.
if [ $HAVE_SHARED = 1 ]; then
    cp "$M260/stories260K.bin" alone/
    xfail import-stories260K-no-tokenizer "no tokenizer for 'alone/stories260K.bin': neither tok512.bin nor tokenizer.bin" \
        import alone/stories260K.bin -o alone/s.lmp
    if xok import-stories260K import "$M260/stories260K.bin" -q -o s.lmp && xok info-stories260K info s.lmp; then
        check info-stories260K-count grep -q "^47 tensors, 260032 parameters" .out
        check info-stories260K-table grep -qE "^  token_embd\.weight +f32 +512 x 64 +131072  0x[0-9a-f]{8}$" .out
        rm -f s.lmp
    fi
    rm -f alone/stories260K.bin
else
    skip "import-stories260K (the llama2.c checkpoint itself): $SHARED not found"
fi
check no-temporaries-left [ -z "$(find . -name '*.tmp.*' | head -1)" ]

finish

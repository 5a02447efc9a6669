#!/usr/bin/env bash
# cli_prune.sh - command-line cases of "lmpress prune": every bad input of the issue (ratio range, unknown
# target or score, calibration missing or too short, unreachable ratios, quantized input, output over an input),
# --dry-run, the summary and provenance, each target, and that info / run / eval-ppl / bench / quantize / export
# accept the pruned (uneven) models while export --gguf refuses uneven layers. Same conventions as
# tests/cli_basic.sh (see tests/lib-cli.sh).
#
#   bash tests/cli_prune.sh                  LMPRESS=build-san/lmpress bash tests/cli_prune.sh
. "$(dirname "$0")/lib-cli.sh"

# A random model with GQA (4 heads, 2 KV heads) and an FFN of 256 (8 blocks of 32).
xok setup-synth synth --dim 128 --layers 3 --heads 4 --kv-heads 2 --ffn 256 --vocab 64 --ctx 128 \
    --tokenizer-from "$FIX/tiny.h5" -o m.lmp
awk 'BEGIN { srand(5); split("the cat a dog sat on mat and ran big red it is at in", w, " ");
             for (i = 0; i < 150; i++) { s = ""; for (j = 0; j < 12; j++) s = s w[int(rand() * 15) + 1] " "; print s "." } }' >calib.txt
echo "a cat sat." >short.txt
ln m.lmp m-hard.lmp
xok setup-q8 quantize m.lmp --bits 8 -q -o q8.lmp

P=(prune m.lmp --structured -o x.lmp)

# ---- option values and bad input: one line, non-zero exit, nothing written, inputs unchanged ----
while IFS='|' read -r name re args; do
    eval "extra=($args)"
    xfail "prune-$name" "$re" "${P[@]}" "${extra[@]}"
done <<'EOF'
no-ratio|missing --ratio R|
ratio-0|--ratio 0: must be in \(0, 0.9\]|--ratio 0
ratio-neg|--ratio -0.1: must be in \(0, 0.9\]|--ratio -0.1
ratio-high|--ratio 0.95: must be in \(0, 0.9\]|--ratio 0.95
ratio-1|--ratio 1: must be in \(0, 0.9\]|--ratio 1
ratio-abc|--ratio expects a number, got 'abc'|--ratio abc
ratio-nan|--ratio expects a number, got 'nan'|--ratio nan
target-unknown|--targets: unknown target 'neurons' \(heads, ffn, layers\)|--ratio 0.3 --targets heads,neurons
target-empty|--targets: unknown target ''|--ratio 0.3 --targets ''
score-unknown|--score 'fisher': must be magnitude, activation or taylor|--ratio 0.3 --score fisher
activation-no-calib|--score activation needs --calib FILE|--ratio 0.3 --score activation
taylor-no-calib|--score taylor needs --calib FILE|--ratio 0.3 --score taylor
taylor-no-calib-layers|--score taylor needs --calib FILE|--ratio 0.3 --score taylor --targets layers
taylor-calib-tokens-no-calib|--score taylor needs --calib FILE|--ratio 0.3 --score taylor --calib-tokens 64
layers-no-calib|the layers target needs --calib FILE|--ratio 0.3 --targets layers
calib-unused|--calib is only used by --score activation or taylor, or the layers target|--ratio 0.3 --calib calib.txt
calib-tokens-no-calib|--calib-tokens needs --calib FILE|--ratio 0.3 --calib-tokens 64
uniform-layers|--uniform .* does not combine with the layers target|--ratio 0.3 --uniform --targets layers --calib calib.txt
layers-mixed-magnitude|ranking layers together with heads or ffn needs --score activation or taylor|--ratio 0.3 --targets heads,layers --calib calib.txt
unreachable-heads|--ratio 0.8 cannot be reached with targets heads: at most 0\.[0-9]+ of the non-embedding|--ratio 0.8 --targets heads
unreachable-layers|--ratio 0.9 cannot be reached with targets layers: at most 0\.[0-9]+|--ratio 0.9 --targets layers --calib calib.txt --calib-tokens 128
calib-short|calibration file 'short.txt' has [0-9]+ tokens, fewer than the 128 requested|--ratio 0.3 --score activation --calib short.txt --calib-tokens 64
calib-short-default|calibration file 'short.txt' has [0-9]+ tokens, fewer than|--ratio 0.3 --targets layers --calib short.txt
taylor-calib-short|calibration file 'short.txt' has [0-9]+ tokens, fewer than the 128 requested|--ratio 0.3 --score taylor --calib short.txt --calib-tokens 64
taylor-calib-nonexistent|cannot open 'nope.txt'|--ratio 0.3 --score taylor --calib nope.txt
taylor-unreachable|--ratio 0.9 cannot be reached with targets heads,ffn: at most 0\.[0-9]+|--ratio 0.9 --score taylor --calib calib.txt --calib-tokens 128
taylor-output-is-calib|output 'calib.txt' is the calibration file|--ratio 0.3 --score taylor --calib calib.txt -o calib.txt
calib-nonexistent|cannot open 'nope.txt'|--ratio 0.3 --score activation --calib nope.txt
calib-directory|calibration file '\.' is not a regular file|--ratio 0.3 --score activation --calib . --calib-tokens 64
align-0|--align 0 is out of range|--ratio 0.3 --align 0
keep-layers-bad|--keep-layers 'x': expected numbers like 0,3-5|--ratio 0.3 --keep-layers x
keep-layers-range|--keep-layers '3-1': bad range|--ratio 0.3 --keep-layers 3-1
keep-layers-missing|--keep-layers: layer 7 does not exist \(the model has layers 0..2\)|--ratio 0.3 --keep-layers 0,7
threads-0|--threads 0 is out of range|--ratio 0.3 -t 0
output-is-input-hard|output 'm-hard.lmp' is the input|--ratio 0.3 -o m-hard.lmp
output-is-calib|output 'calib.txt' is the calibration file|--ratio 0.3 --score activation --calib calib.txt -o calib.txt
output-missing-dir|directory 'nowhere' does not exist|--ratio 0.3 -o nowhere/x.lmp
two-inputs|expected exactly one input model|--ratio 0.3 m.lmp
EOF
xfail prune-not-structured "only structured pruning is implemented: pass --structured" prune m.lmp --ratio 0.3 -o x.lmp
xfail prune-output-is-input "output 'm.lmp' is the input" prune m.lmp --structured --ratio 0.3 -o m.lmp
xfail prune-nonexistent "cannot open 'nope.lmp'" prune nope.lmp --structured --ratio 0.3 -o x.lmp
xfail prune-quantized "'q8.lmp' is quantized; prune the float model \(or use --allow-requantize" \
    prune q8.lmp --structured --ratio 0.3 -o x.lmp
xfail prune-unknown-option "unknown option '--unstructured'" prune m.lmp --unstructured --ratio 0.3 -o x.lmp
xfail prune-quantized-taylor "'q8.lmp' is quantized; prune the float model \(or use --allow-requantize" \
    prune q8.lmp --structured --ratio 0.3 --score taylor --calib calib.txt --calib-tokens 128 -o x.lmp
check prune-quantized-taylor-nothing [ ! -e x.lmp ]

# ---- --help is generated from the tables ----
if xok prune-help prune --help; then
    for w in --structured --ratio --targets --score --calib --calib-tokens --uniform --align --keep-layers \
        --dry-run --allow-requantize heads ffn layers magnitude activation taylor; do
        check "prune-help-$w" grep -q -- "$w" .out
    done
    check prune-help-taylor-memory grep -qE "^ +taylor .*memory" .out
fi

# ---- --dry-run: the plan on stdout, nothing written ----
before=$(snapshot m.lmp)
if xok prune-dry-run prune m.lmp --structured --ratio 0.3 --dry-run -o dry.lmp; then
    check prune-dry-run-header grep -q "^lmpress: plan for m.lmp (dry run, nothing written)" .out
    check prune-dry-run-params grep -qE "^  non-embedding parameters: [0-9]+ -> [0-9]+: removed (28|29|30|31)\.[0-9]+% \(heads" .out
    check prune-dry-run-layers grep -qE "^ +2 +2 +[0-9]+->[0-9]+ +[0-9]+->[0-9]+ +256->[0-9]+ " .out
    check prune-dry-run-no-file [ ! -e dry.lmp ]
fi
check prune-dry-run-writes-nothing [ "$before" = "$(snapshot m.lmp)" ]

# ---- heads and FFN (default targets), global ranking ----
if xok prune-default prune m.lmp --structured --ratio 0.3 -o p.lmp; then
    check prune-summary-line grep -q "^lmpress: pruned m.lmp -> p.lmp (score magnitude, targets heads,ffn, global ranking)" .err
    check prune-summary-removed grep -qE "^  non-embedding parameters: .*removed (28|29|30|31)\.[0-9]+% \(heads [0-9.]+%, ffn [0-9.]+%, layers 0\.00%\)" .err
    check prune-summary-time grep -qE "^  time: scoring [0-9.]+ s, total [0-9.]+ s$" .err
    check prune-summary-layer-table grep -qE "^ +layer +new +heads +kv heads +ffn +params +removed$" .err
    check prune-no-stdout [ ! -s .out ]
    if xok prune-info info p.lmp; then
        check prune-info-ratio grep -qE '^  prune\.ratio +0\.3$' .out
        check prune-info-targets grep -qE '^  prune\.targets +"heads,ffn"$' .out
        check prune-info-score grep -qE '^  prune\.score +"magnitude"$' .out
        check prune-info-parent-checksum grep -qE '^  prune\.parent_checksum +0x[0-9a-f]{8}$' .out
        check prune-info-history grep -qE '^  provenance\.history +string\[1\] = \["prune: ' .out
    fi
    xfail prune-output-exists "output 'p.lmp' exists \(use -f/--force to overwrite\)" \
        prune m.lmp --structured --ratio 0.2 -o p.lmp
    xok prune-force prune m.lmp --structured --ratio 0.3 -q -f -o p.lmp
    xok prune-run run p.lmp -n 8 -q
    xok prune-eval eval-ppl m.lmp p.lmp --data calib.txt --ctx 32 --chunks 4
    check prune-eval-table grep -q "| p.lmp " .out
    xok prune-bench bench p.lmp --prefill 8 --decode 4 --reps 1
    if xok prune-quantize quantize p.lmp --bits 4 -q -o pq.lmp; then
        xok prune-quantize-run run pq.lmp -n 8 -q
    fi
    xok prune-quantize-gptq quantize p.lmp --bits 4 --method gptq --calib calib.txt --calib-tokens 128 -q -o pg.lmp
    xok prune-export-hdf5 export p.lmp --hdf5 -o p.h5 && xok prune-export-hdf5-back run p.h5 -n 4 -q
fi

# ---- uniform: alike layers stay alike, and export to GGUF ----
if xok prune-uniform prune m.lmp --structured --ratio 0.3 --uniform -q -o u.lmp; then
    check prune-uniform-quiet [ ! -s .err ]
    if xok prune-uniform-gguf export u.lmp --gguf -o u.gguf && xok prune-uniform-gguf-info info u.gguf; then
        check prune-uniform-gguf-blocks grep -qE '^  llama\.block_count +3$' .out
        xok prune-uniform-gguf-run run u.gguf -n 4 -q
    fi
fi
# A non-uniform prune has uneven layers: export --gguf refuses them with one line and writes nothing.
xok prune-uneven prune m.lmp --structured --ratio 0.3 --targets ffn -q -o uneven.lmp
xfail prune-uneven-gguf "GGUF export: layers differ \(llama.feed_forward_length: [0-9]+ in blk.0, [0-9]+ in blk.[12]\).*--uniform" \
    export uneven.lmp --gguf -o uneven.gguf

# ---- each target, the activation score, keep-layers, --align ----
if xok prune-activation prune m.lmp --structured --ratio 0.3 --score activation --calib calib.txt --calib-tokens 256 -o a.lmp; then
    check prune-activation-calib grep -q "^  calibration: 256 tokens of calib.txt" .err
    xok prune-activation-info info a.lmp
    check prune-activation-meta grep -qE '^  prune\.calib_tokens +256$' .out
    xok prune-activation-run run a.lmp -n 8 -q
fi
if xok prune-layers prune m.lmp --structured --ratio 0.3 --targets layers --calib calib.txt --calib-tokens 256 -o l.lmp; then
    check prune-layers-influence grep -qE "influence$" .err
    check prune-layers-removed grep -qE "^ +[0-9] +- +4->0 +2->0 +256->0 " .err
    xok prune-layers-info info l.lmp
    check prune-layers-blocks grep -qE '^  llama\.block_count +2$' .out
    check prune-layers-source grep -qE '^  prune\.layer_source +u32\[2\] = \[[0-9], [0-9]\]$' .out
    check prune-layers-renumbered bash -c '! grep -q "blk\.2\." .out'
    xok prune-layers-run run l.lmp -n 8 -q
fi
if xok prune-mixed prune m.lmp --structured --ratio 0.3 --targets heads,ffn,layers --score activation --calib calib.txt \
    --calib-tokens 128 -q -o mix.lmp; then
    xok prune-mixed-run run mix.lmp -n 8 -q
fi
# The Taylor score: progress with ETA, the memory note, provenance; layers alone and mixed with width by it.
before=$(md5sum m.lmp calib.txt)
if xok prune-taylor prune m.lmp --structured --ratio 0.3 --score taylor --calib calib.txt --calib-tokens 256 -v -o t.lmp; then
    check prune-taylor-progress grep -qE "^scoring: +[0-9.]+% \([0-9]+/[0-9]+\) .*ETA" .err
    check prune-taylor-memory grep -qE "taylor score: gradients of all [0-9]+ parameters in f32, about [0-9]+ MB" .err
    check prune-taylor-summary grep -q "^lmpress: pruned m.lmp -> t.lmp (score taylor, targets heads,ffn, global ranking)" .err
    check prune-taylor-removed grep -qE "removed (28|29|30|31)\.[0-9]+%" .err
    check prune-taylor-calib grep -q "^  calibration: 256 tokens of calib.txt" .err
    xok prune-taylor-info info t.lmp
    check prune-taylor-meta-score grep -qE '^  prune\.score +"taylor"$' .out
    check prune-taylor-meta-tokens grep -qE '^  prune\.calib_tokens +256$' .out
    xok prune-taylor-run run t.lmp -n 8 -q
fi
check prune-taylor-inputs-unchanged [ "$before" = "$(md5sum m.lmp calib.txt)" ]
if xok prune-taylor-layers prune m.lmp --structured --ratio 0.3 --targets layers --score taylor --calib calib.txt \
    --calib-tokens 128 -o tl.lmp; then
    check prune-taylor-layers-removed grep -qE "^ +[0-9] +- +4->0 +2->0 +256->0 " .err
    xok prune-taylor-layers-run run tl.lmp -n 8 -q
fi
xok prune-taylor-mixed prune m.lmp --structured --ratio 0.3 --targets heads,ffn,layers --score taylor --calib calib.txt \
    --calib-tokens 128 -q -o tmix.lmp && xok prune-taylor-mixed-run run tmix.lmp -n 8 -q
if xok prune-taylor-requantize prune q8.lmp --structured --ratio 0.3 --score taylor --calib calib.txt --calib-tokens 128 \
    --allow-requantize -o trq.lmp; then
    check prune-taylor-requantize-note grep -q "input is quantized: dequantized to f32 before pruning" .err
fi

if xok prune-keep prune m.lmp --structured --ratio 0.2 --keep-layers 0,2 --dry-run; then
    check prune-keep-0 grep -qE "^ +0 +0 +4->4 +2->2 +256->256 " .out
    check prune-keep-2 grep -qE "^ +2 +2 +4->4 +2->2 +256->256 " .out
fi
if xok prune-align prune m.lmp --structured --ratio 0.3 --targets ffn --align 64 --dry-run; then
    check prune-align-widths bash -c '! grep -E "256->(32|96|160|224) " .out'
fi
xok prune-heads-only prune m.lmp --structured --ratio 0.1 --targets heads -q -o h.lmp && xok prune-heads-only-run run h.lmp -n 4 -q

# ---- a quantized input with --allow-requantize: dequantized, and said so ----
if xok prune-requantize prune q8.lmp --structured --ratio 0.3 --allow-requantize -o rq.lmp; then
    check prune-requantize-note grep -q "input is quantized: dequantized to f32 before pruning" .err
    check prune-requantize-summary grep -q "input was quantized: dequantized to f32" .err
    xok prune-requantize-info info rq.lmp
    check prune-requantize-f32 bash -c '! grep -qE "^  blk\.[0-9]+\.[a-z_]+\.weight +q8_0" .out'
fi

# ---- default output name ----
xok prune-default-output prune m.lmp --structured --ratio 0.1 -q && check prune-default-output-name [ -s m-pruned.lmp ]

# ---- stories260K's shapes (FFN 172, not a multiple of 32; GQA 8/4): the issue's 30 +- 2 % ----
# The ratio depends on the shapes alone: a random model of stories260K's shapes (260032 parameters) has it.
xok setup-synth-260k synth --dim 64 --layers 5 --heads 8 --kv-heads 4 --ffn 172 --vocab 512 --ctx 512 \
    --tokenizer-from "$DEFAULT_MODEL" -o s260.lmp
if xok prune-260k-shapes prune s260.lmp --structured --ratio 0.3 -o s.lmp; then
    check prune-260k-shapes-ratio grep -qE "removed (28|29|30|31)\.[0-9]+%" .err
    xok prune-260k-shapes-info info s.lmp
    check prune-260k-shapes-ffn-aligned bash -c '! grep -E "^  blk\.[0-9]+\.ffn_up\.weight " .out | grep -vqE " (32|64|96|128|160) x 64 "'
fi
rm -f s.lmp s260.lmp
# ---- the shipped model (FFN 192, GQA 8/4): activation score on its calibration text, then it still tells a story ----
if xok prune-default prune "$DEFAULT_MODEL" --structured --ratio 0.3 --score activation --calib "$DEFAULT_CALIB" \
    --calib-tokens 4096 -o d.lmp; then
    check prune-default-ratio grep -qE "removed (28|29|30|31)\.[0-9]+%" .err
    if xok prune-default-run run d.lmp -p "Once upon a time" --temp 0 -n 20 -q; then
        check prune-default-story grep -q "^Once upon a time" .out
    fi
    xok prune-default-eval eval-ppl "$DEFAULT_MODEL" d.lmp --data "$DEFAULT_EVAL" --chunks 2 --json -q &&
        check prune-default-eval-worse python3 -c 'import json,sys; m=json.load(sys.stdin)["models"]; sys.exit(not m[0]["ppl"] < m[1]["ppl"] < 100)' <.out
fi
rm -f d.lmp
check no-temporaries-left [ -z "$(find . -name '*.tmp.*' | head -1)" ]

finish

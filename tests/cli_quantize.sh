#!/usr/bin/env bash
# cli_quantize.sh - command-line cases of "lmpress quantize": every option's bad values, calibration files
# that are missing or too short, re-quantization, --tensor-type, --dry-run, outputs over an input, and the
# good paths (q8_0, q4 sym/asym and group sizes, imatrix / AWQ / GPTQ) with their summary and the
# provenance that "lmpress info" shows. Same conventions as tests/cli_basic.sh (see tests/lib-cli.sh).
#
#   bash tests/cli_quantize.sh                  LMPRESS=build-san/lmpress bash tests/cli_quantize.sh
. "$(dirname "$0")/lib-cli.sh"

# A random model whose every matrix row is a multiple of 128 (no fallback to a wider type).
xok setup-synth synth --dim 128 --layers 2 --heads 4 --kv-heads 2 --ffn 256 --vocab 64 --ctx 128 \
    --tokenizer-from "$FIX/tiny.h5" -o m.lmp
awk 'BEGIN { srand(3); split("the cat a dog sat on mat and ran big red it is at in", w, " ");
             for (i = 0; i < 150; i++) { s = ""; for (j = 0; j < 12; j++) s = s w[int(rand() * 15) + 1] " "; print s "." } }' >calib.txt
echo "a cat sat." >short.txt
ln m.lmp m-hard.lmp
ln -s m.lmp m-sym.lmp
CHECKSUM=$("$LMPRESS" info m.lmp --no-tensors | sed -n 's/^checksum: *//p')

Q=(quantize m.lmp -o x.lmp)

# ---- option values ----
while IFS='|' read -r name re args; do
    eval "extra=($args)"
    xfail "quantize-$name" "$re" "${Q[@]}" "${extra[@]}"
done <<'EOF'
bits-5|--bits 5: must be 4 or 8|--bits 5
bits-0|--bits 0: must be 4 or 8|--bits 0
bits-abc|--bits expects an integer, got 'abc'|--bits abc
bits-neg|--bits -4 is out of range|--bits -4
group-48|--group 48: must be 32, 64 or 128|--group 48
group-0|--group 0: must be 32, 64 or 128|--group 0
group-abc|--group expects an integer|--group x32
scheme-foo|--scheme 'foo': must be sym or asym|--scheme foo
method-foo|--method 'foo': must be search, rtn, imatrix, awq or gptq|--method foo
method-empty|--method '': must be|--method ''
gptq-no-calib|--method gptq needs --calib FILE|--method gptq
awq-no-calib|--method awq needs --calib FILE|--method awq
imatrix-no-calib|--method imatrix needs --calib FILE|--method imatrix
rtn-with-calib|--calib is not used by --method rtn|--method rtn --calib calib.txt
calib-nonexistent|cannot open 'nope.txt'.*no such file|--method gptq --calib nope.txt
calib-directory|calibration file '\.' is not a regular file|--method gptq --calib . --calib-tokens 64
calib-short|calibration file 'short.txt' has [0-9]+ tokens, fewer than the 128 requested|--method gptq --calib short.txt --calib-tokens 64
calib-short-default|calibration file 'short.txt' has [0-9]+ tokens, fewer than|--method imatrix --calib short.txt
calib-tokens-too-many|calibration file 'calib.txt' has [0-9]+ tokens, fewer than the 1000064 requested|--method awq --calib calib.txt --calib-tokens 1000000
calib-tokens-0|--calib-tokens 0 is out of range|--method gptq --calib calib.txt --calib-tokens 0
calib-tokens-abc|--calib-tokens expects an integer|--method gptq --calib calib.txt --calib-tokens many
gptq-damp-0|--gptq-damp 0 is out of range|--method gptq --calib calib.txt --gptq-damp 0
gptq-damp-1|--gptq-damp 1 is out of range|--method gptq --calib calib.txt --gptq-damp 1
gptq-damp-nan|--gptq-damp expects a number, got 'nan'|--method gptq --calib calib.txt --gptq-damp nan
threads-0|--threads 0 is out of range|--threads 0
threads-abc|--threads expects an integer|-t abc
tensor-type-bad-regex|--tensor-type '\[=q8_0': bad regular expression|--tensor-type '[=q8_0'
tensor-type-bad-regex-paren|--tensor-type '\(a=q8_0': bad regular expression|--tensor-type '(a=q8_0'
tensor-type-bad-type|--tensor-type: unknown type 'foo'|--tensor-type 'ffn=foo'
tensor-type-no-equals|--tensor-type 'ffn_down': expected REGEX=TYPE|--tensor-type ffn_down
tensor-type-no-type|--tensor-type 'ffn_down=': expected REGEX=TYPE|--tensor-type ffn_down=
tensor-type-no-regex|--tensor-type '=q8_0': expected REGEX=TYPE|--tensor-type =q8_0
output-type-foo|--output-type: unknown type 'q3'|--output-type q3
embed-type-foo|--embed-type: unknown type 'int4'|--embed-type int4
two-inputs|expected exactly one input model|m.lmp
output-is-calib|output 'calib.txt' is the calibration file|--method gptq --calib calib.txt -o calib.txt
output-is-input-hard|output 'm-hard.lmp' is the input|-o m-hard.lmp
output-is-input-sym|output 'm-sym.lmp' is the input|-o m-sym.lmp
output-is-input-dot|output './m.lmp' is the input|-o ./m.lmp
output-missing-dir|directory 'nowhere' does not exist|-o nowhere/x.lmp
EOF
xfail quantize-output-is-input "output 'm.lmp' is the input" quantize m.lmp -o m.lmp
xfail quantize-output-is-input-abs "is the input" quantize m.lmp -o "$W/m.lmp"
xfail quantize-no-input "expected exactly one input model" quantize -o x.lmp
xfail quantize-nonexistent "cannot open 'nope.lmp'" quantize nope.lmp -o x.lmp

# ---- q8_0 and q4 (RTN): summary, output file, provenance ----
# summary_ok NAME OUT TYPE: the summary on stderr names the output, the tensors by type, the sizes, bits
# per weight and time; info OUT shows the quantization and its parent's checksum.
summary_ok() {
    local name=$1 out=$2 type=$3
    check "$name-summary-line" grep -q "^lmpress: quantized m.lmp -> $out (" .err
    check "$name-summary-tensors" grep -qE "^  tensors: ([0-9]+ [a-z0-9_]+ ?)*[0-9]+ $type" .err
    check "$name-summary-size" grep -qE "^  size: [0-9.]+ MB -> [0-9.]+ MB \([0-9.]+x\), [0-9.]+ bits per weight, [0-9]+ parameters$" .err
    check "$name-summary-time" grep -qE "^  time: [0-9.]+ s$" .err
    check "$name-no-stdout" [ ! -s .out ]
    check "$name-written" [ -s "$out" ]
    if xok "$name-info" info "$out"; then
        check "$name-info-parent-checksum" grep -qE "^  provenance\.parent_checksum +$CHECKSUM$" .out
        check "$name-info-parent" grep -qE '^  provenance\.parent +"m\.lmp"$' .out
        check "$name-info-command" grep -qE "^  provenance\.command +\".* quantize m\.lmp" .out
        check "$name-info-type" grep -qE "^  blk\.0\.ffn_down\.weight +$type " .out
    fi
}
if xok quantize-q8 quantize m.lmp --bits 8 -o q8.lmp; then
    summary_ok quantize-q8 q8.lmp q8_0
    check quantize-q8-method grep -qE '^  quant\.method +"search"$' .out
    check quantize-q8-bits grep -qE '^  quant\.bits +8$' .out
    check quantize-q8-group grep -qE '^  quant\.group +32$' .out
fi
if xok quantize-q4 quantize m.lmp -o q4.lmp; then  # defaults: 4 bits, group 32, sym
    summary_ok quantize-q4 q4.lmp q4_0
    check quantize-q4-bits grep -qE '^  quant\.bits +4$' .out
    check quantize-q4-scheme grep -qE '^  quant\.scheme +"sym"$' .out
fi
if xok quantize-q4-asym-g64 quantize m.lmp --bits 4 --scheme asym --group 64 -q -o q4a.lmp && xok quantize-q4a-info info q4a.lmp; then
    check quantize-q4-asym-g64-quiet [ ! -s .err ]
    check quantize-q4-asym-g64-group grep -qE '^  quant\.group +64$' .out
    check quantize-q4-asym-g64-scheme grep -qE '^  quant\.scheme +"asym"$' .out
    check quantize-q4-asym-g64-type grep -qE '^  blk\.0\.attn_q\.weight +q4_1' .out
fi
rm -f q4a.lmp
xok quantize-default-output quantize m.lmp --bits 8 -q && check quantize-default-output-name [ -s m-q8_0.lmp ]
# the default name, once it exists, is refused like any other output, and replaced with -f
differ() { ! cmp -s "$1" "$2"; }
xfail quantize-default-output-exists "^lmpress quantize: output 'm-q8_0.lmp' exists \(use -f/--force to overwrite\)$" \
    quantize m.lmp --bits 8 -q
cp m-q8_0.lmp m-q8_0.first
xok quantize-default-output-info info m-q8_0.lmp && sed -n '/^tensors/,$p' .out >first.tensors
if xok quantize-default-output-force quantize m.lmp --bits 8 -q -f && xok quantize-default-output-force-info info m-q8_0.lmp; then
    check quantize-default-output-force-same-tensors diff first.tensors <(sed -n '/^tensors/,$p' .out)
    check quantize-default-output-force-provenance grep -q 'provenance.command.*quantize m.lmp --bits 8 -q -f' .out
fi
rm -f first.tensors
xok quantize-default-output-force-other quantize m.lmp --bits 4 -q -f -o m-q8_0.lmp &&
    check quantize-default-output-force-replaced differ m-q8_0.lmp m-q8_0.first
xok quantize-dry-run-output-exists quantize m.lmp --bits 8 --dry-run -q  # writes nothing: no refusal
rm -f m-q8_0.lmp m-q8_0.first
if xok quantize-tensor-type quantize m.lmp --tensor-type 'ffn_(down|up)=q8_0' --tensor-type 'attn_v=f16' -q -o tt.lmp &&
    xok quantize-tensor-type-info info tt.lmp; then
    check quantize-tensor-type-down grep -qE '^  blk\.1\.ffn_down\.weight +q8_0 ' .out
    check quantize-tensor-type-v grep -qE '^  blk\.1\.attn_v\.weight +f16 ' .out
    check quantize-tensor-type-q grep -qE '^  blk\.1\.attn_q\.weight +q4_0 ' .out
fi
rm -f tt.lmp

# ---- re-quantization ----
xfail quantize-requantize-refused "'q4.lmp' is already quantized.*--allow-requantize" quantize q4.lmp --bits 8 -o x.lmp
if xok quantize-requantize quantize q4.lmp --bits 8 --allow-requantize -o rq.lmp; then
    check quantize-requantize-says-dequantized grep -qi "dequantized to float32 before quantizing again" .err
    check quantize-requantize-summary grep -q "re-quantized" .err
    xok quantize-requantize-runs run rq.lmp -n 4 -q
fi
rm -f rq.lmp

# ---- --dry-run ----
before=$(snapshot m.lmp)
if xok quantize-dry-run quantize m.lmp --dry-run -o dry.lmp; then
    check quantize-dry-run-summary grep -q "would quantize m.lmp -> (dry run)" .err
    check quantize-dry-run-sizes grep -qE "^  size: .* bits per weight" .err
fi
xok quantize-dry-run-default-name quantize m.lmp --bits 8 --dry-run
check quantize-dry-run-writes-nothing [ "$before" = "$(snapshot m.lmp)" ]

# ---- calibrated methods ----
for method in imatrix awq gptq; do
    if xok "quantize-$method" quantize m.lmp --method $method --calib calib.txt --calib-tokens 256 -o "$method.lmp" &&
        xok "quantize-$method-info" info "$method.lmp"; then
        check "quantize-$method-meta" grep -qE "^  quant\.method +\"$method\"$" .out
        check "quantize-$method-calib-meta" grep -qE '^  quant\.calib_file +"calib\.txt"$' .out
        check "quantize-$method-calib-tokens" grep -qE '^  quant\.calib_tokens +256$' .out
        xok "quantize-$method-runs" run "$method.lmp" -n 4 -q
    fi
    rm -f "$method.lmp"
done
xok quantize-gptq-act-order quantize m.lmp --method gptq --calib calib.txt --calib-tokens 128 --act-order --gptq-damp 0.05 -q -o g.lmp
rm -f g.lmp

# ---- stories260K's shapes: ffn_down rows of 172 fall back to f16, with one warning each ----
# (a random model of stories260K's shapes, 260032 parameters: the fallback depends on the shapes alone)
xok setup-synth-260k synth --dim 64 --layers 5 --heads 8 --kv-heads 4 --ffn 172 --vocab 512 --ctx 512 \
    --tokenizer-from "$DEFAULT_MODEL" -o s260.lmp
for bits in 8 4; do
    if xok "quantize-260k-shapes-q$bits" quantize s260.lmp --bits $bits -o s.lmp; then
        check "quantize-260k-shapes-q$bits-fallback" grep -q "(5 fell back to a wider type)" .err
        check "quantize-260k-shapes-q$bits-warnings" [ "$(grep -c "blk\.\*\.ffn_down\.weight: row length 172 is not a multiple.*(5 tensors)" .err)" = 1 ]
        check "quantize-260k-shapes-q$bits-params" grep -q " 260032 parameters" .err
    fi
    rm -f s.lmp
done
rm -f s260.lmp
# ---- the shipped model (FFN 192 = 6 x 32): no fallback, provenance, still a story; GPTQ on its calibration text ----
xok info-default info "$DEFAULT_MODEL" --no-tensors && DSUM=$(awk '$1 == "checksum:" { print $2 }' .out)
for bits in 8 4; do
    if xok "quantize-default-q$bits" quantize "$DEFAULT_MODEL" --bits $bits -o d.lmp; then
        check "quantize-default-q$bits-no-fallback" bash -c '! grep -q "fell back\|warning" .err'
        check "quantize-default-q$bits-params" grep -q " 279232 parameters" .err
        xok "quantize-default-q$bits-info" info d.lmp
        check "quantize-default-q$bits-parent" grep -qE '^  provenance\.parent +".*models/default\.lmp"$' .out
        check "quantize-default-q$bits-parent-checksum" grep -qE '^  provenance\.parent_checksum +'"${DSUM:-none}"'$' .out
        xok "quantize-default-q$bits-run" run d.lmp -p "Once upon a time" --temp 0 -n 20
        check "quantize-default-q$bits-story" grep -q "^Once upon a time" .out
    fi
    rm -f d.lmp
done
xfail quantize-default-calib-short "calibration file 'short.txt' has [0-9]+ tokens, fewer than the 65536 requested" \
    quantize "$DEFAULT_MODEL" --method gptq --calib short.txt -o d.lmp
xok quantize-default-gptq quantize "$DEFAULT_MODEL" --method gptq --calib "$DEFAULT_CALIB" --calib-tokens 1024 -o d.lmp &&
    check quantize-default-gptq-calib grep -q "calibration: 1024 tokens" .err
rm -f d.lmp
check no-temporaries-left [ -z "$(find . -name '*.tmp.*' | head -1)" ]

finish

#!/usr/bin/env bash
# cli_kquant.sh - command-line cases of the super-block and codebook types (q4_K, q5_K, q6_K, iq4_nl), the
# scale search, presets and --target-bpw: bad values (unknown type or preset, a budget outside the possible
# range or without calibration text), the documented fallback for rows the block does not divide (a
# warning naming the tensors), the good paths with what "lmpress info" shows, and the GGUF round trip of
# the new types byte for byte. Conventions of tests/lib-cli.sh.
. "$(dirname "$0")/lib-cli.sh"

# dim 256, FFN 512: every matrix row is a multiple of 256. A second model with dim 288 (not a multiple of 256).
xok setup-synth synth --dim 256 --layers 2 --heads 4 --kv-heads 2 --ffn 512 --vocab 64 --ctx 128 \
    --tokenizer-from "$FIX/tiny.h5" -o m.lmp
xok setup-synth-288 synth --dim 288 --layers 2 --heads 4 --kv-heads 2 --ffn 512 --vocab 64 --ctx 128 \
    --tokenizer-from "$FIX/tiny.h5" -o m288.lmp
awk 'BEGIN { srand(5); split("the cat a dog sat on mat and ran big red it is at in", w, " ");
             for (i = 0; i < 150; i++) { s = ""; for (j = 0; j < 12; j++) s = s w[int(rand() * 15) + 1] " "; print s "." } }' >calib.txt

Q=(quantize m.lmp -o x.lmp)
while IFS='|' read -r name re args; do
    eval "extra=($args)"
    xfail "kquant-$name" "$re" "${Q[@]}" "${extra[@]}"
done <<'EOF2'
type-foo|--type: unknown type 'q3_K'|--type q3_K
type-runtime|--type: unknown type 'q8_a'|--type q8_a
preset-foo|--preset 'q4_k_x': unknown preset \(k4s, k4m, k5m, k6\)|--preset q4_k_x
bpw-0|--target-bpw 0: must be a positive number of bits|--target-bpw 0 --calib calib.txt
bpw-neg|--target-bpw -3 is out of range|--target-bpw -3 --calib calib.txt
bpw-abc|--target-bpw expects a number, got 'abc'|--target-bpw abc --calib calib.txt
bpw-above-f32|--target-bpw 40 is above f32's 32 bits per weight|--target-bpw 40 --calib calib.txt
bpw-no-calib|--target-bpw needs --calib FILE|--target-bpw 6
bpw-and-preset|--target-bpw and --preset both choose the types|--target-bpw 6 --calib calib.txt --preset k4m
bpw-below|--target-bpw 3 is below what the smallest types allow for this model \(possible range [0-9.]+ to 32 bits per weight\)|--target-bpw 3 --calib calib.txt
EOF2
[ -e x.lmp ] && bad kquant-no-output "x.lmp was written by a failing case" || ok

# ---- each type, search and rtn ----
for t in q4_K q5_K q6_K iq4_nl; do
    if xok "kquant-$t" quantize m.lmp --type $t -o m-$t.lmp; then
        xok "kquant-$t-info" info m-$t.lmp
        check "kquant-$t-info-type" grep -qE "^  blk\.1\.ffn_down\.weight +$t " "$W/.out"
        check "kquant-$t-info-version" grep -qE "^format: +lmpress version 2," "$W/.out"
        check "kquant-$t-meta" grep -qE "^  quant\.method +\"search\"$" "$W/.out"
        xok "kquant-$t-rtn" quantize m.lmp --type $t --method rtn -o m-$t-rtn.lmp
        check "kquant-$t-search-differs" bash -c "! cmp -s m-$t.lmp m-$t-rtn.lmp"
        xok "kquant-$t-run" run m-$t.lmp -p "the cat" -n 4 --temp 0
        # GGUF round trip: the quantized tensors come back byte for byte (same CRC32 in info)
        if xok "kquant-$t-gguf" export m-$t.lmp --gguf -o m-$t.gguf; then
            xok "kquant-$t-gguf-import" import m-$t.gguf -o m-$t-back.lmp
            xok "kquant-$t-info-a" info m-$t.lmp
            awk '$1 ~ /^blk\./ {print $1, $2, $NF}' "$W/.out" | sort >a.txt
            xok "kquant-$t-info-b" info m-$t-back.lmp
            awk '$1 ~ /^blk\./ {print $1, $2, $NF}' "$W/.out" | sort >b.txt
            check "kquant-$t-gguf-bytes" bash -c "[ -s a.txt ] && grep -q ' $t ' a.txt && cmp -s a.txt b.txt"
        fi
    fi
done

# ---- fallback: rows of 288 do not fit q4_K's 256 ----
if xok kquant-fallback quantize m288.lmp --type q4_K -o f.lmp; then
    check kquant-fallback-warning grep -qE "warning: blk\.\*\.attn_q\.weight: row length 288 is not a multiple of q4_K's block of 256; using iq4_nl \(2 tensors\)" "$W/.err"
    check kquant-fallback-down-kept bash -c "'$LMPRESS' info f.lmp | grep -qE '^  blk\.0\.ffn_down\.weight +q4_K '"
fi
if xok kquant-fallback-q6 quantize m288.lmp --type q6_K -o f6.lmp; then
    check kquant-fallback-q6-warning grep -qE "row length 288 is not a multiple of q6_K's block of 256; using q8_0" "$W/.err"
fi

# ---- presets ----
if xok kquant-preset-k4m quantize m.lmp --preset k4m -o p.lmp; then
    xok kquant-preset-info info p.lmp
    check kquant-preset-down-l0 grep -qE "^  blk\.0\.ffn_down\.weight +q6_K " "$W/.out"
    check kquant-preset-q grep -qE "^  blk\.0\.attn_q\.weight +q4_K " "$W/.out"
    check kquant-preset-meta grep -qE "^  quant\.preset +\"k4m\"$" "$W/.out"
fi

# ---- --target-bpw ----
if xok kquant-bpw quantize m.lmp --target-bpw 6 --calib calib.txt --calib-tokens 256 --sens-tokens 128 -o b.lmp; then
    check kquant-bpw-plan grep -qE "^target 6\.000 bits per weight \(possible [0-9.]+ to 32\): [0-9.]+, [0-9.]+ MB; predicted KLD" "$W/.out"
    check kquant-bpw-layers grep -qE "^  blk\.1 +q=[a-z0-9_K]+ k=" "$W/.out"
    check kquant-bpw-measured grep -qE "^measured KLD [0-9.]+ on the same 128 tokens" "$W/.out"
    bpw=$(sed -n 's/.*MB (.*), \([0-9.]*\) bits per weight.*/\1/p' "$W/.err")
    check kquant-bpw-within bash -c "awk -v b='$bpw' 'BEGIN { exit !(b > 0 && b <= 6.0) }'"
fi
finish

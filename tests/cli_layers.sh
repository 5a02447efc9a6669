#!/usr/bin/env bash
# cli_layers.sh - the layer check (scripts/check-layers.sh) passes on this tree and fails, naming the
# file and the rule, on copies of the tree with one planted violation each.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHECK=$ROOT/scripts/check-layers.sh
pass=0
fail=0
W=$(mktemp -d "${TMPDIR:-/tmp}/lmpress-layers.XXXXXX") || { echo "0 passed, 1 failed"; exit 1; }
trap 'rm -rf "$W"' EXIT

out=$("$CHECK" "$ROOT" 2>&1)
if [ $? -eq 0 ] && [[ $out == "check-layers: ok"* ]]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL tree: the layer check fails on this tree:"; echo "$out" | head -20; fi

# planted NAME REGEX SETUP: copy the tree, run SETUP in the copy, expect failure with REGEX in the output.
planted() {
    local name=$1 re=$2 setup=$3
    rm -rf "$W/t" && mkdir -p "$W/t"
    (cd "$ROOT" && tar cf - --exclude=./build --exclude=./build-san --exclude=./models --exclude=./.git \
        --exclude=./build-dev . ) | (cd "$W/t" && tar xf -)
    (cd "$W/t" && eval "$setup")
    local o rc
    o=$("$CHECK" "$W/t" 2>&1); rc=$?
    if [ $rc -ne 0 ] && [[ $o =~ $re ]]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL $name: exit $rc, output:"; echo "$o" | head -5; fi
}

planted format-includes-runtime 'format/lmp_meta.c:1: format/ includes "runtime/model.h" from runtime/' \
    'sed -i "1i #include \"runtime/model.h\"" format/lmp_meta.c'
planted runtime-includes-quant 'runtime/forward.c:1: runtime/ includes "quant/quantize.h" from quant/' \
    'sed -i "1i #include \"quant/quantize.h\"" runtime/forward.c'
planted quant-includes-prune 'quant/quantize.c:1: quant/ includes "prune/prune.h"' \
    'mkdir -p prune && touch prune/prune.h && sed -i "1i #include \"prune/prune.h\"" quant/quantize.c'
planted runtime-includes-cli 'runtime/model.c:1: runtime/ includes "cli/cli.h" from cli/' \
    'sed -i "1i #include \"cli/cli.h\"" runtime/model.c'
planted bare-include 'runtime/model.c:1: #include "lmp_common.h" does not name its layer' \
    'sed -i "1i #include \"lmp_common.h\"" runtime/model.c'
planted missing-header 'no such file in the tree' \
    'sed -i "1i #include \"format/no_such.h\"" format/lmp_meta.c'
planted makefile-flat-include "Makefile: INCLUDES has '-Iquant'" \
    'sed -i "s/^INCLUDES := .*/INCLUDES := -I. -Iquant/" Makefile'
planted makefile-cli-in-lib "LIB_SRC takes sources from 'cli/'" \
    'sed -i "s|^LIB_SRC := \$(wildcard |LIB_SRC := \$(wildcard cli/*.c |" Makefile'

echo "$pass passed, $fail failed"
[ $fail = 0 ]

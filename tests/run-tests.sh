#!/usr/bin/env bash
# run-tests.sh - runs every test binary in $BUILD/tests and every tests/cli_*.sh script, sums their
# "N passed, N failed" lines and prints the total as the last line. Exit status 1 on any failure
# (including a test program that crashed or printed no summary, or that passed and failed nothing
# without a SKIP line).
set -u
BUILD=${BUILD:-build}
export SHARED=${SHARED:-../shared}
export LMPRESS=${LMPRESS:-$BUILD/lmpress}
total_pass=0; total_fail=0; broken=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
run_one() { # name, command...
    local name=$1; shift
    local t0=$SECONDS
    "$@" >"$log" 2>&1
    local rc=$?
    local line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
    if [ -z "$line" ]; then
        echo "BROKEN $name (exit $rc, no summary line):"; tail -20 "$log"; broken=$((broken + 1)); return
    fi
    local p f
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed}
    if [ "$p" = 0 ] && [ "$f" = 0 ] && ! grep -qE '^SKIP' "$log"; then
        echo "BROKEN $name: it passed and failed nothing, and skipped nothing visibly (a test that checks nothing)"
        broken=$((broken + 1)); return
    fi
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
    if [ "$f" != 0 ] || [ $rc != 0 ]; then
        echo "---- $name: $line (exit $rc)"; grep -E '^(FAIL|SKIP)|ERROR|Sanitizer|runtime error' "$log" | head -40
        [ "$f" = 0 ] && broken=$((broken + 1))
    else
        printf '%-28s %s (%ds)\n' "$name" "$line" $((SECONDS - t0))
        grep -E '^SKIP' "$log" | sed 's/^/    /'
    fi
}
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d|*.o) continue;; esac
    run_one "$(basename "$t")" "$t"
done
for s in tests/cli_*.sh; do
    [ -f "$s" ] || continue
    run_one "$(basename "$s")" bash "$s"
done
[ $broken -gt 0 ] && echo "$broken test program(s) crashed or printed no summary" && total_fail=$((total_fail + broken))
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]

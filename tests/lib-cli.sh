# lib-cli.sh - helpers sourced by tests/cli_*.sh (not a test itself: run-tests.sh runs tests/cli_*.sh).
#
# Each script runs the lmpress binary ($LMPRESS, default build/lmpress) in a private mktemp -d work
# directory (removed on exit), counts every check as passed or failed, prints "FAIL name: why" for
# failures and "SKIP name: why" for cases that need $SHARED (default ../shared) when it is absent, and
# ends with "N passed, N failed" (exit status 1 on any failure). Cases that need a real small model, its
# tokenizer and text use the model the project ships ($DEFAULT_MODEL, models/default.lmp, with its evaluation
# text $DEFAULT_EVAL and calibration text $DEFAULT_CALIB) and never skip: those files are part of the checkout.
#
#   xfail NAME REGEX ARGS...   lmpress ARGS must fail: exit status 1..127 (no signal, no timeout), stderr one
#                              line starting "lmpress" and matching REGEX (bash =~: extended, case-blind),
#                              stdout empty, and the work directory unchanged (no file created, removed or
#                              modified; every ARG that names a file, in or out of it, keeps its MD5).
#   xok NAME ARGS...           lmpress ARGS must succeed (exit 0, no sanitizer report); its output is left
#                              in $W/.out and $W/.err for further checks. Returns 0 on success.
#   check NAME CMD...          CMD must succeed.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
LMPRESS=$(abspath "${LMPRESS:-build/lmpress}")
SHARED=$(abspath "${SHARED:-../shared}")
FIX=$ROOT/tests/fixtures
TIMEOUT=${CLI_TIMEOUT:-120}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export LC_ALL=C
shopt -s nocasematch

pass=0
fail=0
T0=$SECONDS

ok() { pass=$((pass + 1)); }
bad() { # name, why
    fail=$((fail + 1))
    echo "FAIL $1: $2"
    if [ -s "$W/.err" ]; then head -c 600 "$W/.err" | head -4 | sed 's/^/    stderr: /'; fi
}
skip() { echo "SKIP $*"; }
finish() {
    echo "($((SECONDS - T0)) s)"
    echo "$pass passed, $fail failed"
    [ "$fail" = 0 ] && exit 0
    exit 1
}

if [ ! -x "$LMPRESS" ]; then
    echo "FAIL setup: $LMPRESS is not an executable (run make first)"
    echo "0 passed, 1 failed"
    exit 1
fi

W=$(mktemp -d "${TMPDIR:-/tmp}/lmpress-cli.XXXXXX") || { echo "0 passed, 1 failed"; exit 1; }
trap 'cd /; rm -rf "$W"' EXIT
cd "$W" || exit 1

HAVE_SHARED=0
M260=$SHARED/models/stories260K
VALID=$SHARED/data/tinystories/valid.txt
TRAIN=$SHARED/data/tinystories/train.txt
[ -f "$M260/stories260K.bin" ] && [ -f "$M260/tok512.bin" ] && [ -f "$VALID" ] && [ -f "$TRAIN" ] && HAVE_SHARED=1
DEFAULT_MODEL=$ROOT/models/default.lmp
DEFAULT_EVAL=$ROOT/models/default-eval.txt
DEFAULT_CALIB=$ROOT/models/default-calib.txt
for f in "$DEFAULT_MODEL" "$DEFAULT_EVAL" "$DEFAULT_CALIB"; do
    if [ ! -f "$f" ]; then
        echo "FAIL setup: $f is missing (it is committed: a lost file or the wrong checkout)"
        echo "0 passed, 1 failed"
        exit 1
    fi
done

lmp() { timeout "$TIMEOUT" "$LMPRESS" "$@" >"$W/.out" 2>"$W/.err"; }

# State of the work directory (every entry below it, with type, size, mtime and inode; link targets) and the
# MD5 of every argument that names an existing file, in the work directory or not. Two processes: the tests
# run a few hundred cases.
shopt -s globstar nullglob
snapshot() {
    local e=(**)
    [ ${#e[@]} = 0 ] || stat -c '%F %n %s %.9Y %i %N' -- "${e[@]}"
    local a files=()
    for a in "$@"; do
        a=${a#*=}
        [ -f "$a" ] && files+=("$a")
    done
    [ ${#files[@]} = 0 ] || md5sum -- "${files[@]}" 2>/dev/null
    return 0
}

sanitizer_report() { [[ $(<"$W/.err") =~ Sanitizer|runtime\ error: ]]; }

xfail() { # name, regex, args...
    local name=$1 re=$2
    shift 2
    local before after rc why="" lines
    before=$(snapshot "$@")
    lmp "$@"
    rc=$?
    after=$(snapshot "$@")
    mapfile -t lines <"$W/.err"
    if [ $rc = 0 ]; then why="exit status 0"
    elif [ $rc = 124 ]; then why="timed out after ${TIMEOUT}s"
    elif [ $rc -ge 128 ]; then why="killed by signal $((rc - 128))"
    elif sanitizer_report; then why="sanitizer report"
    elif [ ${#lines[@]} != 1 ]; then why="stderr has ${#lines[@]} lines, expected 1"
    elif [[ ${lines[0]} != lmpress* ]]; then why="stderr does not start with 'lmpress'"
    elif ! [[ ${lines[0]} =~ $re ]]; then why="stderr does not match /$re/"
    elif [ -s "$W/.out" ]; then why="stdout not empty: $(head -c 100 "$W/.out" | head -1)"
    elif [ "$before" != "$after" ]; then
        why="files changed: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | head -3 | tr '\n' ' ')"
    fi
    if [ -n "$why" ]; then bad "$name" "$why (lmpress $*)"; else ok; fi
}

xok() { # name, args...
    local name=$1
    shift
    lmp "$@"
    local rc=$?
    if [ $rc != 0 ]; then bad "$name" "exit status $rc (lmpress $*)"; return 1; fi
    if sanitizer_report; then bad "$name" "sanitizer report (lmpress $*)"; return 1; fi
    ok
    return 0
}

check() { # name, command...
    local name=$1
    shift
    if "$@"; then ok; else bad "$name" "check failed: $*"; fi
}

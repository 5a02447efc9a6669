#!/usr/bin/env bash
# check-layers.sh - checks that the layers of lmpress point one way (docs/architecture.md).
#
#   scripts/check-layers.sh [ROOT]      ROOT: the tree to check (default: this repository)
#
# Layers, each allowed to include only itself and what is listed after it:
#   format    the base: status/errors/allocation, dtypes and type traits, the file format, importers
#   runtime   format                  (model, backends, CPU kernels, forward pass, calibration runner)
#   cuda      runtime format          (implements runtime/backend.h)
#   quant     runtime format          (quantization passes)
#   distill   runtime format          (the training engine and the distillation pass)
#   prune     distill runtime format  (pruning; the Taylor score uses the training engine's gradients)
#   cli       every library layer     (the programs)
#   tests, bench: anything
# Checked: every `#include "..."` of every .c/.h/.cu/.cuh file names its header with its folder
# ("runtime/model.h", never a bare "model.h"), that header exists, and its folder is allowed for the
# including file's folder; the Makefile's include path is the repository root only (no per-folder -I
# that would let a bare include resolve) and its library sources come from the library folders only.
# Prints one line per violation and exits 1 if there is any; prints "check-layers: ok (N includes)" else.
set -u
ROOT=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$ROOT" || { echo "check-layers: cannot enter $ROOT"; exit 2; }

declare -A ALLOW=(
    [format]="format"
    [runtime]="runtime format"
    [cuda]="cuda runtime format"
    [quant]="quant runtime format"
    [distill]="distill runtime format"
    [prune]="prune distill runtime format"
    [cli]="cli prune distill quant cuda runtime format"
    [tests]="tests cli prune distill quant cuda runtime format"
    [bench]="bench tests cli prune distill quant cuda runtime format"
)
LIB_DIRS="format runtime quant prune distill"

bad=0
n=0
violation() { echo "check-layers: $*"; bad=$((bad + 1)); }

for dir in "${!ALLOW[@]}"; do
    [ -d "$dir" ] || continue
    while IFS= read -r -d '' f; do
        lineno=0
        while IFS= read -r line; do
            lineno=$((lineno + 1))
            [[ $line =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]+)\" ]] || continue
            inc=${BASH_REMATCH[1]}
            n=$((n + 1))
            if [[ $inc != */* ]]; then
                violation "$f:$lineno: #include \"$inc\" does not name its layer (write \"<folder>/$inc\")"
                continue
            fi
            layer=${inc%%/*}
            if [ ! -f "$inc" ]; then
                violation "$f:$lineno: #include \"$inc\": no such file in the tree"
                continue
            fi
            case " ${ALLOW[$dir]} " in
            *" $layer "*) ;;
            *) violation "$f:$lineno: $dir/ includes \"$inc\" from $layer/, a layer above it (allowed: ${ALLOW[$dir]})" ;;
            esac
        done <"$f"
    done < <(find "$dir" -maxdepth 2 -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) -print0)
done

if [ -f Makefile ]; then
    inc_line=$(grep -E '^INCLUDES[[:space:]]*:?=' Makefile | head -1)
    flags=${inc_line#*=}
    for fl in $flags; do
        [ "$fl" = "-I." ] || violation "Makefile: INCLUDES has '$fl': the include path must be the repository root only (-I.)"
    done
    if grep -nE '(^|[[:space:]])-I(format|runtime|quant|prune|distill|cuda|cli|tests|bench)\b' Makefile >/dev/null; then
        violation "Makefile: a per-folder -I flag lets bare includes resolve: $(grep -nE -- '-I(format|runtime|quant|prune|distill|cuda|cli|tests|bench)' Makefile | head -1)"
    fi
    src_line=$(grep -E '^LIB_SRC[[:space:]]*:=' Makefile | head -1)
    for w in $(grep -oE '[a-z_]+/\*\.c' <<<"$src_line"); do
        d=${w%%/*}
        case " $LIB_DIRS " in
        *" $d "*) ;;
        *) violation "Makefile: LIB_SRC takes sources from '$d/', which is not a library layer ($LIB_DIRS)" ;;
        esac
    done
else
    violation "no Makefile in $ROOT"
fi

if [ $bad -gt 0 ]; then
    echo "check-layers: $bad violation(s) in $n includes"
    exit 1
fi
echo "check-layers: ok ($n includes)"

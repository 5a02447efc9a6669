#!/usr/bin/env bash
# check-deps.sh - make sure the Debian packages lmpress builds against are installed.
# As root it installs what is missing (apt-get update + install); otherwise it prints the exact
# command and fails. Called once by the Makefile (build/.deps-ok).
set -u
PKGS="libopenblas-dev libhdf5-dev zlib1g-dev"
missing=""
have_header() { # $1 = header name, rest = directories
    local h=$1; shift
    for d in "$@"; do [ -f "$d/$h" ] && return 0; done
    return 1
}
have_header zlib.h /usr/include || missing="$missing zlib1g-dev"
have_header hdf5.h /usr/include/hdf5/serial /usr/include || missing="$missing libhdf5-dev"
have_header cblas.h /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/openblas /usr/include/aarch64-linux-gnu/openblas-pthread || missing="$missing libopenblas-dev"
[ -z "$missing" ] && exit 0
cmd="apt-get update && apt-get install -y $PKGS"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "lmpress: installing missing packages:$missing" >&2
    echo "+ $cmd" >&2
    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PKGS) >&2 || {
        echo "lmpress: package installation failed; run: $cmd" >&2; exit 1; }
    exit 0
fi
echo "lmpress: missing packages:$missing" >&2
echo "lmpress: run as root: $cmd" >&2
exit 1

#!/usr/bin/env bash
# Make Debian's Ceph python bindings (python3-rados, python3-rbd: no wheel exists on
# PyPI) importable from a virtualenv, for the rbd store.
#
#   scripts/ceph-bindings.sh [VENV]      (default: $GLIMPSE_VENV or .venv)
#
# Installs the two packages when missing (root + apt-get), then links only their two
# extension modules into VENV/lib/ceph-bindings and adds that directory to the venv's
# sys.path with a .pth file; the rest of /usr/lib/python3/dist-packages stays out.
# The modules are built for Debian's CPython 3.11: another interpreter version fails.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:-${GLIMPSE_VENV:-$ROOT/.venv}}
DIST=/usr/lib/python3/dist-packages
if ! ls "$DIST"/rbd.cpython-*.so "$DIST"/rados.cpython-*.so >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "ceph-bindings: python3-rados/python3-rbd are missing and cannot be installed" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
        python3-rados python3-rbd >&2
fi
[ -x "$VENV/bin/python" ] || { echo "ceph-bindings: no virtualenv at $VENV" >&2; exit 1; }
VENV=$(cd "$VENV" && pwd)  # the .pth line must be absolute (relative ones name the site dir)
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
LIBS=$VENV/lib/ceph-bindings
mkdir -p "$LIBS"
for so in "$DIST"/rados.cpython-*.so "$DIST"/rbd.cpython-*.so; do
    ln -sf "$so" "$LIBS/"
done
echo "$LIBS" >"$SITE/debian-ceph.pth"
"$VENV/bin/python" -c 'import rados, rbd' || {
    echo "ceph-bindings: $VENV/bin/python cannot import them (built for $(ls "$DIST"/rbd.*.so))" >&2
    exit 1
}
echo "ceph-bindings: rados and rbd importable from $VENV" >&2

#!/usr/bin/env bash
# Run Glimpse with the embedded defaults: SQLite and a file store under ./data,
# listening on 127.0.0.1:9292, no authentication (noauth - never expose it).
#
#   ./scripts/serve.sh                                   defaults
#   ./scripts/serve.sh --port 9393 --data-dir /srv/glimpse
#   ./scripts/serve.sh --config-file /etc/glance/glance-api.conf
#
# Creates the virtualenv (GLIMPSE_VENV, default .venv in the repository) and installs
# Glimpse into it the first time, then runs `glimpse serve` with the arguments given.
# Relative paths (./data, --config-file) are taken from the current directory.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${GLIMPSE_VENV:-$ROOT/.venv}

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating virtualenv $VENV" >&2
    "${PYTHON:-python3}" -m venv "$VENV"
fi
# (Re)install when the venv is new or pyproject.toml changed since the last install
# by this script or by scripts/test.sh (which installs a superset).
WANT=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
installed=false
for stamp in "$VENV/.glimpse-serve-install" "$VENV/.glimpse-test-install"; do
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$WANT" ]; then installed=true; fi
done
if ! $installed || [ ! -x "$VENV/bin/glimpse" ]; then
    echo "==> installing Glimpse into $VENV" >&2
    mkdir -p "$ROOT/.tmp"
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -e "$ROOT" \
        >"$ROOT/.tmp/pip-install-serve.log" 2>&1; then
        grep -v "^WARNING: Location .* is ignored" "$ROOT/.tmp/pip-install-serve.log" \
            | tail -n 40 >&2
        echo "!!! pip install failed" >&2
        exit 1
    fi
    echo "$WANT" >"$VENV/.glimpse-serve-install"
fi
exec "$VENV/bin/glimpse" serve "$@"

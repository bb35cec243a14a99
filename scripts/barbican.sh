#!/usr/bin/env bash
# scripts/barbican.sh up|down|env DIR
#
# A real Barbican (key manager) for the signature tests, on 127.0.0.1 only, behind the
# project's own Keystone (scripts/keystone.sh).
#
#   up DIR    install Barbican (once, into the cache), configure it in DIR (SQLite, the
#             simple_crypto plugin, Keystone tokens), start it and register it in
#             Keystone's catalog as the key-manager service. Waits for the Keystone of
#             GLIMPSE_KEYSTONE_DIR (its keystone.env) while the installation runs.
#             Idempotent: a Barbican already running from DIR is reused. Prints
#             KEY=VALUE lines (also saved in DIR/barbican.env): BARBICAN_URL
#             BARBICAN_PORT BARBICAN_PID KEYSTONE_URL
#   down DIR  stop the Barbican started from DIR (by its saved pid)
#   env DIR   print DIR/barbican.env when that Barbican is running (exit 1 otherwise)
#
# Environment:
#   GLIMPSE_KEYSTONE_DIR  the Keystone to use (required for up; started by keystone.sh)
#   GLIMPSE_CACHE         where the virtualenv lives (default ~/.cache/glimpse-ci)
#   BARBICAN_PORT         port (default: a free one)
#   BARBICAN_VERSION      pip version spec (default "==23.0.0", the release tested here)
#   KEYSTONE_WAIT         seconds to wait for keystone.env (default 900)
#   PYTHON                interpreter for the virtualenv (default python3)
set -euo pipefail

CMD=${1:-}
DIR=${2:-}
usage() { sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ -n "$CMD" ] && [ -n "$DIR" ] || usage
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
CACHE=${GLIMPSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/glimpse-ci}
BARBICAN_VERSION=${BARBICAN_VERSION:-==23.0.0}
VENV=$CACHE/venv-barbican
log() { echo "[barbican] $*" >&2; }

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
ENV_FILE=$DIR/barbican.env
PID_FILE=$DIR/barbican.pid
# Barbican's plugins each parse the default configuration files on import: the
# service runs with HOME=DIR so that ~/.barbican/barbican.conf is this one.
CONF_DIR=$DIR/.barbican

alive() { [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }
answering() { curl -sf -o /dev/null --max-time 5 "$1"; }
free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

case $CMD in
    env)
        alive && [ -f "$ENV_FILE" ] || { log "no Barbican running from $DIR"; exit 1; }
        cat "$ENV_FILE"
        exit 0
        ;;
    down)
        if alive; then
            pid=$(cat "$PID_FILE")
            kill -TERM "$pid"  # uWSGI master, started with --die-on-term
            for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
            log "stopped (pid $pid)"
        fi
        rm -f "$PID_FILE"
        exit 0
        ;;
    up) ;;
    *) usage ;;
esac

if alive && [ -f "$ENV_FILE" ]; then
    # shellcheck disable=SC1090
    . "$ENV_FILE"
    if answering "$BARBICAN_URL"; then
        log "already running from $DIR (pid $BARBICAN_PID)"
        # Another Barbican may have taken the catalog entry of a shared Keystone since.
        if [ -n "${GLIMPSE_KEYSTONE_DIR:-}" ] && [ -f "$GLIMPSE_KEYSTONE_DIR/keystone.env" ]; then
            "$VENV/bin/python" "$HERE/keystone_admin.py" \
                "$(sed -n 's/^KEYSTONE_URL=//p' "$GLIMPSE_KEYSTONE_DIR/keystone.env")" \
                "$(sed -n 's/^ADMIN_PASSWORD=//p' "$GLIMPSE_KEYSTONE_DIR/keystone.env")" \
                catalog "$BARBICAN_URL" key-manager barbican >&2
        fi
        cat "$ENV_FILE"
        exit 0
    fi
fi
[ -n "${GLIMPSE_KEYSTONE_DIR:-}" ] || { log "GLIMPSE_KEYSTONE_DIR is not set"; exit 2; }

# ------------------------------------------------------------ virtualenv (cached)
mkdir -p "$CACHE"
# python-barbicanclient and python-openstackclient: docs/signatures.md's workflow
# (`openstack secret store`) runs from this virtualenv too.
WANT="barbican$BARBICAN_VERSION uwsgi python-barbicanclient python-openstackclient"
(
    flock 9  # two runs on one machine must not pip into the same venv at once
    if [ ! -x "$VENV/bin/uwsgi" ] || [ "$(cat "$VENV/.glimpse-want" 2>/dev/null)" != "$WANT" ]
    then
        log "installing $WANT into $VENV (first time: a few minutes)"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
        if ! { "$VENV/bin/pip" install -q --disable-pip-version-check -U pip wheel setuptools &&
            # shellcheck disable=SC2086
            "$VENV/bin/pip" install -q --disable-pip-version-check $WANT; } \
            >"$CACHE/venv-barbican.log" 2>&1; then
            grep -v '^WARNING: Location' "$CACHE/venv-barbican.log" | tail -n 30 >&2
            echo "pip install $WANT failed (log: $CACHE/venv-barbican.log)" >&2
            exit 1
        fi
        echo "$WANT" >"$VENV/.glimpse-want"
    fi
) 9>"$CACHE/venv-barbican.lock"

# ------------------------------------------------------------ the Keystone to sit behind
KS_ENV=$GLIMPSE_KEYSTONE_DIR/keystone.env
waited=0
until [ -f "$KS_ENV" ]; do
    [ "$waited" -ge "${KEYSTONE_WAIT:-900}" ] && { log "no $KS_ENV after ${waited}s"; exit 1; }
    [ "$waited" -eq 0 ] && log "waiting for $KS_ENV"
    sleep 2
    waited=$((waited + 2))
done
KEYSTONE_URL=$(sed -n 's/^KEYSTONE_URL=//p' "$KS_ENV")
ADMIN_PASSWORD=$(sed -n 's/^ADMIN_PASSWORD=//p' "$KS_ENV")
answering "$KEYSTONE_URL" || { log "Keystone at $KEYSTONE_URL does not answer"; exit 1; }

# ------------------------------------------------------------ configuration
if [ -f "$ENV_FILE" ]; then  # a re-start keeps its port, password and key-encryption key
    BARBICAN_PORT=${BARBICAN_PORT:-$(sed -n 's/^BARBICAN_PORT=//p' "$ENV_FILE")}
fi
PORT=${BARBICAN_PORT:-$(free_port)}
URL=http://127.0.0.1:$PORT
# One service user per DIR: Barbicans of other clones may share this Keystone.
SERVICE_USER=barbican-$(printf '%s' "$DIR" | sha256sum | cut -c1-8)
mkdir -p "$CONF_DIR" "$DIR/logs"
chmod 700 "$CONF_DIR"
[ -f "$CONF_DIR/kek" ] || "$PYTHON" -c 'import base64, os
print(base64.urlsafe_b64encode(os.urandom(32)).decode())' >"$CONF_DIR/kek"
[ -f "$CONF_DIR/service-password" ] || \
    echo "barbican-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    >"$CONF_DIR/service-password"
SERVICE_PASSWORD=$(cat "$CONF_DIR/service-password")

cat >"$CONF_DIR/barbican.conf" <<CONF
[DEFAULT]
host_href = $URL
db_auto_create = true
debug = false
log_file = $DIR/logs/barbican-app.log

[database]
connection = sqlite:///$DIR/barbican.db?timeout=60

[secretstore]
namespace = barbican.secretstore.plugin
enabled_secretstore_plugins = store_crypto

[crypto]
namespace = barbican.crypto.plugin
enabled_crypto_plugins = simple_crypto

[simple_crypto_plugin]
kek = $(cat "$CONF_DIR/kek")

[keystone_authtoken]
www_authenticate_uri = $KEYSTONE_URL
auth_url = $KEYSTONE_URL
auth_type = password
username = $SERVICE_USER
password = $SERVICE_PASSWORD
project_name = service
user_domain_id = default
project_domain_id = default

[oslo_policy]
enforce_new_defaults = true
enforce_scope = true
CONF
cp "$VENV/etc/barbican/barbican-api-paste.ini" "$CONF_DIR/barbican-api-paste.ini"
# Barbican's own WSGI script reads its paste file from /etc/barbican; this one reads
# it from DIR (the configuration is ~/.barbican/barbican.conf, with HOME=DIR).
cat >"$DIR/barbican_wsgi.py" <<'PY'
import os

from paste import deploy

application = deploy.loadapp(
    "config:" + os.path.join(os.environ["HOME"], ".barbican", "barbican-api-paste.ini"))
PY

"$VENV/bin/python" "$HERE/keystone_admin.py" "$KEYSTONE_URL" "$ADMIN_PASSWORD" \
    provision "$SERVICE_USER" "$SERVICE_PASSWORD" >&2

# ------------------------------------------------------------ start
alive && "$0" down "$DIR"
log "starting on 127.0.0.1:$PORT"
(
    cd "$DIR"
    HOME=$DIR setsid nohup "$VENV/bin/uwsgi" --http-socket "127.0.0.1:$PORT" \
        --virtualenv "$VENV" --wsgi-file "$DIR/barbican_wsgi.py" \
        --master --processes 1 --threads 1 --lazy-apps --die-on-term \
        --buffer-size 65535 --add-header "Connection: close" --disable-logging \
        >>"$DIR/logs/barbican.log" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
)
for _ in $(seq 1 120); do
    answering "$URL" && break
    alive || break
    sleep 0.5
done
if ! answering "$URL"; then
    log "Barbican did not come up; last lines of $DIR/logs/barbican.log:"
    tail -n 30 "$DIR/logs/barbican.log" >&2
    exit 1
fi

"$VENV/bin/python" "$HERE/keystone_admin.py" "$KEYSTONE_URL" "$ADMIN_PASSWORD" \
    catalog "$URL" key-manager barbican >&2

cat >"$ENV_FILE" <<EOF
BARBICAN_URL=$URL
BARBICAN_PORT=$PORT
BARBICAN_PID=$(cat "$PID_FILE")
KEYSTONE_URL=$KEYSTONE_URL
EOF
cat "$ENV_FILE"

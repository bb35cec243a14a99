#!/usr/bin/env bash
# scripts/keystone.sh up|down|env DIR
#
# A real Keystone for the tests, on 127.0.0.1 only.
#
#   up DIR    install Keystone (once, into the cache), configure it in DIR (SQLite,
#             fernet tokens, secure-RBAC defaults), bootstrap it, start it and create the
#             service user an image server authenticates as. Idempotent: a Keystone
#             already running from DIR is reused. Prints KEY=VALUE lines (also saved in
#             DIR/keystone.env): KEYSTONE_URL KEYSTONE_PORT KEYSTONE_PID ADMIN_PASSWORD
#             SERVICE_USER SERVICE_PASSWORD
#   down DIR  stop the Keystone started from DIR (by its saved pid)
#   env DIR   print DIR/keystone.env when that Keystone is running (exit 1 otherwise)
#
# Environment:
#   GLIMPSE_CACHE     where the virtualenv lives (default ~/.cache/glimpse-ci), shared by
#                     every clone on the machine so that re-runs skip the installation
#   KEYSTONE_PORT     port (default: a free one)
#   KEYSTONE_VERSION  pip version spec (default "==30.0.0", the release tested here)
#   PYTHON            interpreter for the virtualenv (default python3)
set -euo pipefail

CMD=${1:-}
DIR=${2:-}
usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ -n "$CMD" ] && [ -n "$DIR" ] || usage
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
CACHE=${GLIMPSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/glimpse-ci}
KEYSTONE_VERSION=${KEYSTONE_VERSION:-==30.0.0}
VENV=$CACHE/venv-keystone
log() { echo "[keystone] $*" >&2; }

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
ENV_FILE=$DIR/keystone.env
PID_FILE=$DIR/keystone.pid

alive() { [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }
answering() { curl -sf -o /dev/null --max-time 5 "$1"; }
free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

case $CMD in
    env)
        alive && [ -f "$ENV_FILE" ] || { log "no Keystone running from $DIR"; exit 1; }
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
    if answering "$KEYSTONE_URL"; then
        log "already running from $DIR (pid $KEYSTONE_PID)"
        cat "$ENV_FILE"
        exit 0
    fi
fi

# ------------------------------------------------------------ virtualenv (cached)
mkdir -p "$CACHE"
WANT="keystone$KEYSTONE_VERSION uwsgi"
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
            >"$CACHE/venv-keystone.log" 2>&1; then
            grep -v '^WARNING: Location' "$CACHE/venv-keystone.log" | tail -n 30 >&2
            echo "pip install $WANT failed (log: $CACHE/venv-keystone.log)" >&2
            exit 1
        fi
        echo "$WANT" >"$VENV/.glimpse-want"
    fi
) 9>"$CACHE/venv-keystone.lock"

# ------------------------------------------------------------ configuration
if [ -f "$ENV_FILE" ]; then  # a re-start keeps the passwords its database already has
    ADMIN_PASSWORD=${ADMIN_PASSWORD:-$(sed -n 's/^ADMIN_PASSWORD=//p' "$ENV_FILE")}
    SERVICE_PASSWORD=${SERVICE_PASSWORD:-$(sed -n 's/^SERVICE_PASSWORD=//p' "$ENV_FILE")}
fi
PORT=${KEYSTONE_PORT:-$(free_port)}
ADMIN_PASSWORD=${ADMIN_PASSWORD:-admin-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')}
SERVICE_USER=${SERVICE_USER:-glance}
SERVICE_PASSWORD=${SERVICE_PASSWORD:-glance-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')}
URL=http://127.0.0.1:$PORT/v3

mkdir -p "$DIR/fernet-keys" "$DIR/credential-keys" "$DIR/logs"
chmod 700 "$DIR/fernet-keys" "$DIR/credential-keys"
# Keystone on SQLite: the busy timeout and WAL keep tempest's concurrent writes from
# ending in "database is locked"; bcrypt at its minimum cost keeps user creation fast.
cat >"$DIR/keystone.conf" <<CONF
[DEFAULT]
debug = false
log_file = $DIR/logs/keystone-app.log

[database]
connection = sqlite:///$DIR/keystone.db?timeout=60

[token]
provider = fernet
expiration = 7200

[fernet_tokens]
key_repository = $DIR/fernet-keys

[fernet_receipts]
key_repository = $DIR/fernet-keys

[credential]
key_repository = $DIR/credential-keys

[identity]
password_hash_rounds = 4

# One uWSGI process, so an in-process cache stays coherent: Keystone invalidates it on
# every change it makes. Without it each token validation looks up every role
# assignment and role in SQLite again (about 1 s on a loaded two-core machine).
[cache]
enabled = true
backend = oslo_cache.dict
expiration_time = 600

[oslo_policy]
enforce_new_defaults = true
enforce_scope = true
CONF

KM() { "$VENV/bin/keystone-manage" --config-file "$DIR/keystone.conf" "$@"; }
me=$(id -un)
grp=$(id -gn)
log "db_sync and bootstrap in $DIR"
KM db_sync >>"$DIR/logs/keystone-manage.log" 2>&1
"$VENV/bin/python" -c 'import sqlite3, sys
sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' "$DIR/keystone.db"
[ -f "$DIR/fernet-keys/0" ] || KM fernet_setup --keystone-user "$me" --keystone-group "$grp" \
    >>"$DIR/logs/keystone-manage.log" 2>&1
[ -f "$DIR/credential-keys/0" ] || \
    KM credential_setup --keystone-user "$me" --keystone-group "$grp" \
    >>"$DIR/logs/keystone-manage.log" 2>&1
KM bootstrap --bootstrap-password "$ADMIN_PASSWORD" \
    --bootstrap-admin-url "$URL" --bootstrap-public-url "$URL" \
    --bootstrap-internal-url "$URL" --bootstrap-region-id RegionOne \
    >>"$DIR/logs/keystone-manage.log" 2>&1

# ------------------------------------------------------------ start
# uWSGI rather than gunicorn: Keystone's oslo.config parses sys.argv, uWSGI leaves the
# application a clean one. One process (SQLite has one writer); "Connection: close"
# because python-requests otherwise reuses sockets that --http-socket has closed.
log "starting on 127.0.0.1:$PORT"
(
    cd "$DIR"
    setsid nohup "$VENV/bin/uwsgi" --http-socket "127.0.0.1:$PORT" \
        --virtualenv "$VENV" --module keystone.wsgi.api:application \
        --env "OS_KEYSTONE_CONFIG_DIR=$DIR" --env OS_KEYSTONE_CONFIG_FILES=keystone.conf \
        --master --processes 1 --threads 1 --lazy-apps --die-on-term \
        --buffer-size 65535 --add-header "Connection: close" --disable-logging \
        >>"$DIR/logs/keystone.log" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
)
for _ in $(seq 1 120); do
    answering "$URL" && break
    alive || break
    sleep 0.5
done
if ! answering "$URL"; then
    log "Keystone did not come up; last lines of $DIR/logs/keystone.log:"
    tail -n 30 "$DIR/logs/keystone.log" >&2
    exit 1
fi

"$VENV/bin/python" "$HERE/keystone_admin.py" "$URL" "$ADMIN_PASSWORD" \
    provision "$SERVICE_USER" "$SERVICE_PASSWORD" >&2

cat >"$ENV_FILE" <<EOF
KEYSTONE_URL=$URL
KEYSTONE_PORT=$PORT
KEYSTONE_PID=$(cat "$PID_FILE")
ADMIN_PASSWORD=$ADMIN_PASSWORD
SERVICE_USER=$SERVICE_USER
SERVICE_PASSWORD=$SERVICE_PASSWORD
EOF
cat "$ENV_FILE"

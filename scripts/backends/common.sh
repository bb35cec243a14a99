# Helpers shared by scripts/backends/swift.sh and seaweedfs.sh (sourced, not run).
#
# Each back end keeps its state in DIR/<name>/: env (the KEY=VALUE lines printed by
# `up`), one <process>.pid file per process it started, logs and data.

BACKENDS_CACHE=${GLIMPSE_BACKENDS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/glimpse-backends}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf '!!! %s\n' "$*" >&2; exit 1; }

pid_alive() {  # pid_alive PIDFILE
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# free_ports N [OFFSET]: N distinct free TCP ports on 127.0.0.1; with OFFSET, port+OFFSET
# must be free as well (SeaweedFS opens its gRPC ports at +10000).
free_ports() {
    python3 - "$1" "${2:-0}" <<'PY'
import random, socket, sys
count, offset = int(sys.argv[1]), int(sys.argv[2])
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
found = []
while len(found) < count:
    port = random.randint(20000, 65535 - offset - 1)
    if port in found or (port + offset) in found:
        continue
    if free(port) and (offset == 0 or free(port + offset)):
        found.append(port)
print(" ".join(map(str, found)))
PY
}

# wait_for SECONDS COMMAND...: run COMMAND every half second until it succeeds.
wait_for() {
    local seconds=$1; shift
    local deadline=$(( $(date +%s) + seconds ))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then return 1; fi
        sleep 0.5
    done
}

# stop_pid PIDFILE [GRACE]: SIGTERM, then SIGKILL after GRACE seconds (default 5).
stop_pid() {
    local file=$1 grace=${2:-5} pid i
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 $((grace * 10))); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
    fi
    rm -f "$file"
}

# venv_with VENV PACKAGE...: make VENV and pip install the packages if VENV/bin/MARKER is
# missing; MARKER is the first argument after VENV.
venv_with() {
    local venv=$1 marker=$2; shift 2
    [ -x "$venv/bin/$marker" ] && return 0
    say "installing $* into $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$@" >&2 \
        || die "pip install $* failed"
}

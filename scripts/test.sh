#!/usr/bin/env bash
# Glimpse's checks: lint, then the whole test suite on SQLite, PostgreSQL and MariaDB.
#
#   ./scripts/test.sh                 everything
#   ./scripts/test.sh tests/api -x    extra arguments go to pytest
#
# Environment:
#   CI=true               every database back end is required (the fixtures fail loudly)
#   GLIMPSE_VENV          virtualenv to use (default: .venv in the repository)
#   GLIMPSE_TEST_DBS      back ends to test, default "sqlite,postgresql,mysql"
#   GLIMPSE_TEST_PG_URL   admin URL of PostgreSQL (default postgres@127.0.0.1:5432)
#   GLIMPSE_TEST_MYSQL_URL admin URL of MariaDB/MySQL (default root@127.0.0.1:3306)
#   PYTEST_WORKERS        pytest-xdist workers ("0" = no xdist; default: see below)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${GLIMPSE_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
IN_CI=false
if [ "${CI:-}" = "true" ]; then IN_CI=true; fi
BACKENDS=${GLIMPSE_TEST_DBS:-sqlite,postgresql,mysql}
PG_URL=${GLIMPSE_TEST_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres}
MYSQL_URL=${GLIMPSE_TEST_MYSQL_URL:-mysql+pymysql://root@127.0.0.1:3306/}

say() { printf '==> %s\n' "$*"; }
warn() { printf '!!! %s\n' "$*" >&2; }
now() { date +%s; }
T0=$(now)
declare -a TIMINGS=()
timed() {  # timed LABEL START
    TIMINGS+=("$(printf '%-22s %4ss' "$1" "$(($(now) - $2))")")
}
is_root() { [ "$(id -u)" = "0" ]; }
wants() { [[ ",$BACKENDS," == *",$1,"* ]]; }

# ------------------------------------------------------------------ virtualenv
t=$(now)
if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
# Reinstall only when the dependency list changed (or the venv is new).
STAMP="$VENV/.glimpse-test-install"
WANT=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ] || [ ! -x "$VENV/bin/glimpse" ]; then
    say "pip install -e .[test] into $VENV (log: .tmp/pip-install.log)"
    mkdir -p .tmp
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -e ".[test]" \
        >.tmp/pip-install.log 2>&1; then
        grep -v "^WARNING: Location .* is ignored" .tmp/pip-install.log | tail -n 40 >&2
        warn "pip install failed"
        exit 1
    fi
    echo "$WANT" >"$STAMP"
else
    say "virtualenv $VENV is up to date (pyproject.toml unchanged)"
fi
export PATH="$VENV/bin:$PATH"  # the client tests run glance / openstack from here
timed "virtualenv" "$t"

# ------------------------------------------------------------------ qemu-img
t=$(now)
if ! command -v qemu-img >/dev/null 2>&1; then
    if is_root && command -v apt-get >/dev/null 2>&1; then
        say "installing qemu-utils (qemu-img)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends qemu-utils \
            >/dev/null
    else
        warn "qemu-img is missing and cannot be installed here (not root or no apt-get):" \
            "install qemu-utils; tests that need it will fail or skip"
    fi
fi
timed "qemu-img" "$t"

# ------------------------------------------------------------------ Glance's metadefs
# tests/metadefs round-trips Glance's own catalogue: its JSON files come out of the
# glance wheel (downloaded once with pip, not installed) into .tmp/glance-metadefs.
t=$(now)
if ! "$VENV/bin/python" scripts/fetch_glance_metadefs.py .tmp/glance-metadefs \
    >.tmp/glance-metadefs.log 2>&1; then
    grep -v "^WARNING: Location" .tmp/glance-metadefs.log | tail -n 5 >&2
    warn "could not fetch Glance's metadefs catalogue: its round-trip test will" \
        "$($IN_CI && echo fail || echo skip)"
fi
export GLIMPSE_GLANCE_METADEFS=$ROOT/.tmp/glance-metadefs
timed "glance metadefs" "$t"

# ------------------------------------------------------------------ databases
db_ready() {  # db_ready URL -> 0 when a connection and SELECT 1 work
    "$VENV/bin/python" - "$1" <<'EOF' 2>/dev/null
import sys
from sqlalchemy import create_engine, text
engine = create_engine(sys.argv[1], connect_args={"connect_timeout": 3})
try:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
except Exception as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
EOF
}

is_local() { [[ "$1" == *"@127.0.0.1"* || "$1" == *"@localhost"* ]]; }

start_postgresql() {
    is_root || return 0
    command -v pg_ctlcluster >/dev/null 2>&1 || return 0
    [ -d /etc/postgresql ] || return 0
    local version
    for version in $(ls /etc/postgresql); do
        pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
    done
}

start_mariadb() {
    is_root || return 0
    [ -x /usr/sbin/mariadbd ] || return 0
    if id mysql >/dev/null 2>&1 && [ ! -d /run/mysqld ]; then
        install -d -o mysql -g mysql /run/mysqld
    fi
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd >/dev/null 2>&1 \
        || true
}

declare -a MISSING=()
ensure_db() {  # ensure_db NAME LABEL URL START_FUNCTION
    local name=$1 label=$2 url=$3 start=$4
    wants "$name" || return 0
    if db_ready "$url"; then
        say "$label is up"
        return 0
    fi
    if is_local "$url"; then
        say "$label is down: starting it"
        "$start"
        local i
        for i in $(seq 1 60); do
            if db_ready "$url"; then
                say "$label is up (after ${i}s)"
                return 0
            fi
            sleep 1
        done
    fi
    MISSING+=("$label")
}

t=$(now)
ensure_db postgresql PostgreSQL "$PG_URL" start_postgresql
ensure_db mysql MariaDB "$MYSQL_URL" start_mariadb
timed "databases" "$t"
if [ ${#MISSING[@]} -gt 0 ]; then
    if $IN_CI; then
        warn "CI=true: could not start ${MISSING[*]}; every back end is required in CI"
        warn "(tests on ${MISSING[*]} will fail)"
    else
        warn "could not start ${MISSING[*]}: the tests on ${MISSING[*]} will be SKIPPED"
        warn "(set GLIMPSE_TEST_DBS=sqlite to test SQLite alone without this warning)"
    fi
fi

# ------------------------------------------------------------------ Keystone (tests/rbac)
# tests/rbac needs a real Keystone. .ci/run starts one for the whole run and sets
# GLIMPSE_KEYSTONE_DIR; otherwise this script starts its own (scripts/keystone.sh, the
# first time it installs Keystone into ~/.cache/glimpse-ci) when the tests it runs
# include tests/rbac, and stops it at the end.
selected() {  # selected TESTDIR ARGS...: whether the pytest arguments include TESTDIR
    local a rp paths=0 dir=$ROOT/$1
    shift
    for a in "$@"; do
        [ -e "$a" ] || continue
        paths=1
        rp=$(realpath "$a")
        case "$dir/" in "$rp"/*) return 0 ;; esac
        case "$rp" in "$dir"*) return 0 ;; esac
    done
    [ "$paths" = 0 ]
}
rbac_selected() { selected tests/rbac "$@" || selected tests/signatures "$@"; }
STOP_SCRIPTS=()
STOP_DIRS=()
stop_at_exit() {  # stop_at_exit SCRIPT DIR: `scripts/SCRIPT down DIR` when this script ends
    STOP_SCRIPTS+=("$1")
    STOP_DIRS+=("$2")
    trap 'for i in "${!STOP_SCRIPTS[@]}"; do
        bash "$ROOT/scripts/${STOP_SCRIPTS[$i]}" down "${STOP_DIRS[$i]}" >/dev/null 2>&1
    done' EXIT
}
t=$(now)
if [ -z "${GLIMPSE_KEYSTONE_DIR:-}" ] && rbac_selected "$@"; then
    export GLIMPSE_KEYSTONE_DIR=$ROOT/.tmp/keystone
    mkdir -p .tmp
    say "starting Keystone for tests/rbac (scripts/keystone.sh up .tmp/keystone;" \
        "log: .tmp/keystone-up.log)"
    if bash scripts/keystone.sh up "$GLIMPSE_KEYSTONE_DIR" >.tmp/keystone-up.log 2>&1; then
        stop_at_exit keystone.sh "$GLIMPSE_KEYSTONE_DIR"
    else
        grep -v '^WARNING: Location' .tmp/keystone-up.log | tail -n 20 >&2
        if $IN_CI; then
            warn "Keystone did not start: the Keystone RBAC tests (tests/rbac) will FAIL"
        else
            warn "Keystone did not start: the Keystone RBAC tests (tests/rbac) will be SKIPPED"
        fi
    fi
fi
timed "keystone" "$t"

# ------------------------------------------------------------------ Barbican (tests/signatures)
# The signature tests need a real Barbican behind that Keystone: .ci/run starts one and
# sets GLIMPSE_BARBICAN_DIR; otherwise it is started here (scripts/barbican.sh) and
# stopped at the end.
t=$(now)
if [ -z "${GLIMPSE_BARBICAN_DIR:-}" ] && [ -n "${GLIMPSE_KEYSTONE_DIR:-}" ] &&
    selected tests/signatures "$@"; then
    export GLIMPSE_BARBICAN_DIR=$ROOT/.tmp/barbican-test
    say "starting Barbican for tests/signatures (scripts/barbican.sh up .tmp/barbican-test;" \
        "log: .tmp/barbican-up.log)"
    if bash scripts/barbican.sh up "$GLIMPSE_BARBICAN_DIR" >.tmp/barbican-up.log 2>&1; then
        stop_at_exit barbican.sh "$GLIMPSE_BARBICAN_DIR"
    else
        grep -v '^WARNING: Location' .tmp/barbican-up.log | tail -n 20 >&2
        warn "Barbican did not start: the signature tests (tests/signatures) will FAIL or SKIP"
    fi
fi
timed "barbican" "$t"

# ------------------------------------------------------------------ lint
t=$(now)
say "ruff check glimpse tests bench"
lint_rc=0
"$VENV/bin/ruff" check glimpse tests bench || lint_rc=$?
timed "ruff" "$t"
if [ -f scripts/gen_config_doc.py ] && ! "$VENV/bin/python" scripts/gen_config_doc.py --check
then
    warn "docs/configuration.md is out of date: run $VENV/bin/python scripts/gen_config_doc.py"
    [ "$lint_rc" -ne 0 ] || lint_rc=1
fi

# ------------------------------------------------------------------ tests
# Two xdist workers measured faster once the suite spends time in live servers and
# server databases; on one CPU they only add start-up time.
if [ -z "${PYTEST_WORKERS:-}" ]; then
    if [ "$(nproc)" -ge 2 ]; then PYTEST_WORKERS=2; else PYTEST_WORKERS=0; fi
fi
XDIST=()
if [ "$PYTEST_WORKERS" != "0" ]; then XDIST=(-n "$PYTEST_WORKERS"); fi

t=$(now)
LOG_DIR=$ROOT/.tmp
mkdir -p "$LOG_DIR"
LOG=$LOG_DIR/pytest.log
say "pytest ${XDIST[*]} $*"
set +e
"$VENV/bin/python" -m pytest -q ${XDIST[@]+"${XDIST[@]}"} "$@" 2>&1 | tee "$LOG"
test_rc=${PIPESTATUS[0]}
set -e
timed "pytest" "$t"
timed "total" "$T0"

# pytest's closing line, e.g. "3 failed, 120 passed, 6 skipped in 41.20s"
SUMMARY=$(grep -E '^(=+ )?(no tests ran|[0-9]+ [a-z]+.*) in [0-9.]+s( \([0-9:]+\))?( =+)?$' \
    "$LOG" | tail -n 1 || true)

echo
say "timings"
printf '    %s\n' "${TIMINGS[@]}"
if [ ${#MISSING[@]} -gt 0 ]; then
    warn "back ends not available: ${MISSING[*]}"
fi
if [ "$lint_rc" -ne 0 ]; then
    warn "ruff found problems (exit $lint_rc)"
fi
if [ "$test_rc" -eq 5 ]; then
    warn "pytest collected no tests: that is a failure"
    test_rc=1
fi
if [ "$test_rc" -ne 0 ]; then
    warn "pytest failed (exit $test_rc)"
fi
echo "${SUMMARY:-pytest printed no summary line (exit $test_rc)}"
if [ "$test_rc" -ne 0 ]; then exit "$test_rc"; fi
exit "$lint_rc"

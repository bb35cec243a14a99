#!/usr/bin/env bash
# A real OpenStack Swift for tests and for people: SAIO-like, one replica, one device
# directory, account/container/object servers and a proxy with tempauth (auth v1),
# plus the memcached tempauth keeps its tokens in, all on 127.0.0.1 only.
#
#   scripts/backends/swift.sh up DIR     install if missing, start, wait, print KEY=VALUE
#   scripts/backends/swift.sh down DIR   stop what `up` started (by PID)
#
# `up` is idempotent: when the proxy recorded in DIR still answers it only prints the
# lines again. Prints SWIFT_AUTH_URL, SWIFT_USER, SWIFT_KEY (tempauth v1) and
# SWIFT_ADMIN_USER / SWIFT_ADMIN_KEY (a reseller admin).
#
# Keystone too, when one is given: with SWIFT_KEYSTONE_AUTH_URL (a v3 URL on 127.0.0.1),
# SWIFT_KEYSTONE_USER, SWIFT_KEYSTONE_PASSWORD and SWIFT_KEYSTONE_PROJECT (default
# "service"; user and project in domain "default") set, a second proxy with authtoken
# and keystoneauth serves the same servers, and `up` also prints SWIFT_KEYSTONE_AUTH_URL,
# SWIFT_KEYSTONE_USER (project:user), SWIFT_KEYSTONE_KEY and SWIFT_KEYSTONE_ENDPOINT
# (the account URL: the Keystone need not have Swift in its catalog). The user must have
# the admin or member role in the project; it also validates the tokens. Swift and python-swiftclient
# come from PyPI into a virtualenv under $GLIMPSE_BACKENDS_CACHE (default
# ~/.cache/glimpse-backends); memcached from apt-get (when root) if missing.
# The device directory needs user xattrs (ext4, xfs, tmpfs do).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

# Names after DIR (what scripts/backends.sh asks of this server) are accepted and ignored.
[ $# -ge 2 ] || die "usage: $0 up|down DIR [NAME...]"
ACTION=$1
mkdir -p "$2"
STATE=$(cd "$2" && pwd)/swift
VENV=$BACKENDS_CACHE/venv-swift
SERVERS="object container account proxy"

answers() {  # tempauth hands out a token and the account answers with it
    # shellcheck disable=SC1091
    . "$STATE/env"
    local headers token url
    headers=$(curl -sf -m 3 -D - -o /dev/null -H "X-Auth-User: $SWIFT_USER" \
        -H "X-Auth-Key: $SWIFT_KEY" "$SWIFT_AUTH_URL") || return 1
    token=$(printf '%s' "$headers" | tr -d '\r' | sed -n 's/^[Xx]-[Aa]uth-[Tt]oken: //p')
    url=$(printf '%s' "$headers" | tr -d '\r' | sed -n 's/^[Xx]-[Ss]torage-[Uu]rl: //p')
    [ -n "$token" ] && [ -n "$url" ] || return 1
    curl -sf -m 3 -o /dev/null -H "X-Auth-Token: $token" "$url"
}

all_alive() {
    local s
    for s in memcached $SERVERS; do pid_alive "$STATE/run/$s.pid" || return 1; done
}

install() {
    venv_with "$VENV" swift-proxy-server 'swift>=2.38,<2.39' 'python-swiftclient>=4.4'
    if ! command -v memcached >/dev/null 2>&1; then
        [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1 \
            || die "memcached is missing and cannot be installed here (not root or no apt-get)"
        say "installing memcached"
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends memcached \
            >/dev/null
    fi
}

server_conf() {  # server_conf NAME PORT PIPELINE
    cat <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $2
workers = 0
user = $(id -un)
swift_dir = $STATE/etc
devices = $STATE/srv/node
mount_check = false
log_name = $1

[pipeline:main]
pipeline = $3

[app:$1-server]
use = egg:swift#$1

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:recon]
use = egg:swift#recon
recon_cache_path = $STATE/run
CONF
}

configure() {  # configure OBJECT CONTAINER ACCOUNT PROXY MEMCACHED
    local object=$1 container=$2 account=$3 proxy=$4 memcached=$5 prefix
    rm -rf "$STATE/etc" "$STATE/srv"
    mkdir -p "$STATE/etc" "$STATE/srv/node/d1" "$STATE/run" "$STATE/log"
    prefix=$(python3 -c 'import secrets; print(secrets.token_hex(8))')
    cat >"$STATE/etc/swift.conf" <<CONF
[swift-hash]
swift_hash_path_prefix = $prefix
swift_hash_path_suffix = $prefix

[storage-policy:0]
name = gold
default = yes

[swift-constraints]
max_file_size = 5368709122
CONF
    server_conf object "$object" "healthcheck recon object-server" >"$STATE/etc/object-server.conf"
    server_conf container "$container" "healthcheck recon container-server" \
        >"$STATE/etc/container-server.conf"
    server_conf account "$account" "healthcheck recon account-server" \
        >"$STATE/etc/account-server.conf"
    cat >"$STATE/etc/proxy-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $proxy
workers = 0
user = $(id -un)
swift_dir = $STATE/etc
log_name = proxy

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats tempauth copy dlo slo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

[filter:tempauth]
use = egg:swift#tempauth
user_admin_admin = $SWIFT_ADMIN_KEY_VALUE .admin .reseller_admin
user_glimpse_glimpse = $SWIFT_KEY_VALUE .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$memcached

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:copy]
use = egg:swift#copy

[filter:dlo]
use = egg:swift#dlo

[filter:slo]
use = egg:swift#slo
CONF
    local ring port
    for ring in object:$object container:$container account:$account; do
        port=${ring##*:}
        ring=${ring%%:*}
        (cd "$STATE/etc" &&
            "$VENV/bin/swift-ring-builder" "$ring.builder" create 6 1 1 &&
            "$VENV/bin/swift-ring-builder" "$ring.builder" add "r1z1-127.0.0.1:$port/d1" 1 &&
            "$VENV/bin/swift-ring-builder" "$ring.builder" rebalance) >>"$STATE/log/rings.log" 2>&1 \
            || die "swift-ring-builder $ring failed (log: $STATE/log/rings.log)"
    done
}

keystone_wanted() { [ -n "${SWIFT_KEYSTONE_AUTH_URL:-}" ]; }

keystone_answers() {  # a Keystone token is accepted by the keystone proxy
    local token endpoint
    endpoint=$(sed -n 's/^SWIFT_KEYSTONE_ENDPOINT=//p' "$STATE/keystone.env")
    token=$(keystone_token "$SWIFT_KEYSTONE_PASSWORD" | sed -n 1p) || return 1
    [ -n "$token" ] && curl -sf -m 20 -o /dev/null -H "X-Auth-Token: $token" "$endpoint"
}

keystone_token() {  # keystone_token PASSWORD -> lines: token, project id
    local body
    body=$(python3 - "${SWIFT_KEYSTONE_USER}" "$1" "${SWIFT_KEYSTONE_PROJECT:-service}" <<'PY'
import json, sys
user, password, project = sys.argv[1:]
print(json.dumps({"auth": {"identity": {"methods": ["password"], "password": {"user": {
    "name": user, "domain": {"id": "default"}, "password": password}}},
    "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}))
PY
)
    curl -sf -m 5 -D "$STATE/run/token.headers" -o "$STATE/run/token.json" \
        -H "Content-Type: application/json" -d "$body" \
        "${SWIFT_KEYSTONE_AUTH_URL%/}/auth/tokens" || return 1
    tr -d '\r' <"$STATE/run/token.headers" | sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: //p'
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"]["project"]["id"])' \
        "$STATE/run/token.json"
    rm -f "$STATE/run/token.headers" "$STATE/run/token.json"
}

start_keystone_proxy() {
    "$VENV/bin/python" -c 'import keystonemiddleware' 2>/dev/null || {
        say "installing keystonemiddleware into $VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check keystonemiddleware >&2 \
            || die "pip install keystonemiddleware failed"
    }
    local port project
    port=$(free_ports 1)
    project=$(keystone_token "$SWIFT_KEYSTONE_PASSWORD" | sed -n 2p) \
        || die "Keystone at $SWIFT_KEYSTONE_AUTH_URL refused $SWIFT_KEYSTONE_USER"
    sed -e "s/^bind_port = .*/bind_port = $port/" \
        -e 's/^pipeline = .*/pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats authtoken keystoneauth copy dlo slo proxy-logging proxy-server/' \
        -e 's/^log_name = proxy/log_name = proxy-keystone/' \
        "$STATE/etc/proxy-server.conf" >"$STATE/etc/proxy-keystone-server.conf"
    cat >>"$STATE/etc/proxy-keystone-server.conf" <<CONF

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
www_authenticate_uri = $SWIFT_KEYSTONE_AUTH_URL
auth_url = $SWIFT_KEYSTONE_AUTH_URL
auth_type = password
username = $SWIFT_KEYSTONE_USER
password = $SWIFT_KEYSTONE_PASSWORD
project_name = ${SWIFT_KEYSTONE_PROJECT:-service}
user_domain_id = default
project_domain_id = default
cache = swift.cache
delay_auth_decision = True

[filter:keystoneauth]
use = egg:swift#keystoneauth
operator_roles = admin, member
CONF
    cat >"$STATE/keystone.env" <<ENV
SWIFT_KEYSTONE_AUTH_URL=$SWIFT_KEYSTONE_AUTH_URL
SWIFT_KEYSTONE_USER=${SWIFT_KEYSTONE_PROJECT:-service}:$SWIFT_KEYSTONE_USER
SWIFT_KEYSTONE_KEY=$SWIFT_KEYSTONE_PASSWORD
SWIFT_KEYSTONE_ENDPOINT=http://127.0.0.1:$port/v1/AUTH_$project
ENV
    chmod 600 "$STATE/keystone.env"
    "$VENV/bin/swift-proxy-server" "$STATE/etc/proxy-keystone-server.conf" -v \
        </dev/null >"$STATE/log/proxy-keystone.log" 2>&1 &
    echo $! >"$STATE/run/proxy-keystone.pid"
    if ! wait_for 60 curl -sf -m 2 "http://127.0.0.1:$port/healthcheck" ||
            ! wait_for 90 keystone_answers; then
        tail -n 30 "$STATE/log/proxy-keystone.log" >&2 || true
        stop_pid "$STATE/run/proxy-keystone.pid" 5
        die "the swift proxy with Keystone auth did not accept a Keystone token"
    fi
    say "Swift with Keystone auth is up: proxy on 127.0.0.1:$port"
}

print_env() {
    cat "$STATE/env"
    if keystone_wanted; then cat "$STATE/keystone.env"; fi
}

up() {
    if [ -f "$STATE/env" ] && all_alive && answers >/dev/null 2>&1; then
        if keystone_wanted && ! { pid_alive "$STATE/run/proxy-keystone.pid" &&
                [ -f "$STATE/keystone.env" ] && keystone_answers >/dev/null 2>&1; }; then
            stop_pid "$STATE/run/proxy-keystone.pid" 5
            start_keystone_proxy
        fi
        print_env
        return 0
    fi
    down >/dev/null 2>&1
    install
    local object container account proxy memcached s
    # shellcheck disable=SC2207
    local ports=($(free_ports 5))
    object=${ports[0]} container=${ports[1]} account=${ports[2]} proxy=${ports[3]}
    memcached=${ports[4]}
    SWIFT_KEY_VALUE=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
    SWIFT_ADMIN_KEY_VALUE=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
    configure "$object" "$container" "$account" "$proxy" "$memcached"
    cat >"$STATE/env" <<ENV
SWIFT_AUTH_URL=http://127.0.0.1:$proxy/auth/v1.0
SWIFT_USER=glimpse:glimpse
SWIFT_KEY=$SWIFT_KEY_VALUE
SWIFT_ADMIN_USER=admin:admin
SWIFT_ADMIN_KEY=$SWIFT_ADMIN_KEY_VALUE
ENV
    chmod 600 "$STATE/env"
    memcached -u "$(id -un)" -l 127.0.0.1 -p "$memcached" -U 0 -m 64 \
        </dev/null >"$STATE/log/memcached.log" 2>&1 &
    echo $! >"$STATE/run/memcached.pid"
    for s in $SERVERS; do
        "$VENV/bin/swift-$s-server" "$STATE/etc/$s-server.conf" -v \
            </dev/null >"$STATE/log/$s.log" 2>&1 &
        echo $! >"$STATE/run/$s.pid"
    done
    for s in object:$object container:$container account:$account proxy:$proxy; do
        if ! wait_for 60 curl -sf -m 2 "http://127.0.0.1:${s##*:}/healthcheck"; then
            tail -n 30 "$STATE/log/${s%%:*}.log" >&2 || true
            down >/dev/null 2>&1
            die "swift ${s%%:*} server did not answer on 127.0.0.1:${s##*:} within 60 s"
        fi
    done
    if ! wait_for 30 answers; then
        tail -n 30 "$STATE/log/proxy.log" >&2 || true
        down >/dev/null 2>&1
        die "swift tempauth did not hand out a working token within 30 s"
    fi
    say "Swift is up: proxy on 127.0.0.1:$proxy"
    if keystone_wanted; then start_keystone_proxy; fi
    print_env
}

down() {
    local s
    for s in proxy-keystone proxy account container object memcached; do
        stop_pid "$STATE/run/$s.pid" 5
    done
    say "Swift in $STATE is stopped"
}

case $ACTION in
    up) up ;;
    down) down ;;
    *) die "usage: $0 up|down DIR" ;;
esac

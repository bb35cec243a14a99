#!/usr/bin/env bash
# tests/tempest/run.sh SUITE...
#
# Runs OpenStack tempest's image tests against a live Glimpse that validates real
# Keystone tokens. Everything comes from this repository: tempest and
# glance-tempest-plugin are installed (once) into a cached virtualenv, Keystone is
# scripts/keystone.sh, the test image is served by a loopback HTTP server started here.
#
# SUITE: image (tempest.api.image), rbac (glance_tempest_plugin image RBAC tests) or
# rbac-all (every glance_tempest_plugin RBAC test). tests/tempest/expected-<suite>.txt
# lists the tests that must pass; the run fails if one of them does not, or if tempest
# cannot run at all. Tests that fail and are not expected to pass are printed.
#
# Environment:
#   GLIMPSE_KEYSTONE_DIR    a Keystone already started with scripts/keystone.sh up DIR
#                           (default: start one in the work dir, stop it at the end)
#   GLIMPSE_TEMPEST_WORKDIR work directory (default .tmp/tempest in the repository)
#   GLIMPSE_CACHE           where the tempest virtualenv is kept (~/.cache/glimpse-ci)
#   GLIMPSE_TEMPEST_PORT    Glimpse's port (default: a free one)
#   CONCURRENCY             tempest workers (default 2)
#   IMAGE_CACHING           1 (default): Glimpse runs with its image cache on
#                           (image_cache_dir) and tempest's caching tests run; 0: off
#   GLIMPSE_TEMPEST_CATALOG_TYPE  the image service's type in Keystone's catalog
#                           (default image; runs sharing one Keystone each need one)
#   TEMPEST_REGEX           run only the tests of the suite matching this regex (the
#                           expected list is filtered the same way)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[ $# -gt 0 ] || { sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
for suite in "$@"; do
    case $suite in image | rbac | rbac-all) ;; *) echo "unknown suite $suite" >&2; exit 2 ;; esac
done
W=${GLIMPSE_TEMPEST_WORKDIR:-$ROOT/.tmp/tempest}
mkdir -p "$W"
W=$(cd "$W" && pwd)
CACHE=${GLIMPSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/glimpse-ci}
PYTHON=${PYTHON:-python3}
GLIMPSE=${GLIMPSE_BIN:-$ROOT/.venv/bin/glimpse}
TEMPEST_WANT=${TEMPEST_WANT:-tempest==47.0.0 glance-tempest-plugin==0.17.0}
VT=$CACHE/venv-tempest
CONCURRENCY=${CONCURRENCY:-2}
IMAGE_CACHING=${IMAGE_CACHING:-1}
CACHE_DIR_LINE=
case $IMAGE_CACHING in 0) CACHING_ENABLED=false ;; *) CACHING_ENABLED=true ;; esac
log() { echo "tempest: $*"; }
free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
[ -x "$GLIMPSE" ] || { log "no $GLIMPSE: run ./scripts/test.sh once (it creates .venv)"; exit 2; }

declare -a CLEANUP=()
cleanup() {
    local c
    for c in "${CLEANUP[@]}"; do eval "$c" || true; done
}
trap cleanup EXIT

# ------------------------------------------------------------ tempest (cached venv)
mkdir -p "$CACHE"
(
    flock 9
    if [ ! -x "$VT/bin/tempest" ] || [ "$(cat "$VT/.glimpse-want" 2>/dev/null)" != "$TEMPEST_WANT" ]
    then
        log "installing $TEMPEST_WANT into $VT (first time: a few minutes)"
        rm -rf "$VT"
        "$PYTHON" -m venv "$VT"
        if ! { "$VT/bin/pip" install -q --disable-pip-version-check -U pip wheel setuptools &&
            # shellcheck disable=SC2086
            "$VT/bin/pip" install -q --disable-pip-version-check $TEMPEST_WANT; } \
            >"$CACHE/venv-tempest.log" 2>&1; then
            grep -v '^WARNING: Location' "$CACHE/venv-tempest.log" | tail -n 30 >&2
            echo "pip install $TEMPEST_WANT failed (log: $CACHE/venv-tempest.log)" >&2
            exit 1
        fi
        echo "$TEMPEST_WANT" >"$VT/.glimpse-want"
    fi
) 9>"$CACHE/venv-tempest.lock"

# ------------------------------------------------------------ Keystone
KS_DIR=${GLIMPSE_KEYSTONE_DIR:-}
if [ -z "$KS_DIR" ]; then
    KS_DIR=$W/keystone
    bash "$ROOT/scripts/keystone.sh" up "$KS_DIR" >/dev/null
    CLEANUP+=("bash '$ROOT/scripts/keystone.sh' down '$KS_DIR'")
fi
KS_ENV=$(bash "$ROOT/scripts/keystone.sh" env "$KS_DIR") || { log "no Keystone in $KS_DIR"; exit 2; }
eval "$KS_ENV"  # KEYSTONE_URL KEYSTONE_PORT ADMIN_PASSWORD SERVICE_USER SERVICE_PASSWORD

PORT=${GLIMPSE_TEMPEST_PORT:-$(free_port)}
IMAGE_URL=http://127.0.0.1:$PORT
CATALOG_TYPE=${GLIMPSE_TEMPEST_CATALOG_TYPE:-image}
"$PYTHON" "$ROOT/scripts/keystone_admin.py" "$KEYSTONE_URL" "$ADMIN_PASSWORD" \
    catalog "$IMAGE_URL" "$CATALOG_TYPE" >/dev/null

# ------------------------------------------------------------ test image over loopback HTTP
# tempest's web-download and location tests fetch [image] http_image: a small valid qcow2.
mkdir -p "$W/http" "$W/logs"
rm -f "$W/http/test-image.qcow2"
qemu-img create -q -f qcow2 "$W/http/test-image.qcow2" 1M
HTTP_PORT=$(free_port)
setsid "$PYTHON" -m http.server --bind 127.0.0.1 --directory "$W/http" "$HTTP_PORT" \
    >"$W/logs/httpimage.log" 2>&1 </dev/null &
HTTP_PID=$!
CLEANUP+=("kill $HTTP_PID")
HTTP_IMAGE=http://127.0.0.1:$HTTP_PORT/test-image.qcow2
for _ in $(seq 1 40); do curl -sf -o /dev/null "$HTTP_IMAGE" && break; sleep 0.25; done
curl -sf -o /dev/null "$HTTP_IMAGE" || { log "the test image server did not start"; exit 1; }

# ------------------------------------------------------------ tempest workspace
TW=$W/tempest-ws
if [ ! -f "$TW/.stestr.conf" ]; then
    rm -rf "$TW"
    # workspace names are machine-wide (a registry file): one per work directory
    ( cd "$W" && "$VT/bin/tempest" init --name "glimpse-$(printf '%s' "$W" | md5sum | cut -c1-10)" \
        --workspace-path "$W/workspace.yaml" tempest-ws >/dev/null )
fi
mkdir -p "$TW/lock" "$TW/etc"
cat >"$TW/etc/tempest.conf" <<CONF
[DEFAULT]
log_dir = $W/logs
log_file = tempest.log
debug = false

[oslo_concurrency]
lock_path = $TW/lock

[auth]
use_dynamic_credentials = true
admin_username = admin
admin_password = $ADMIN_PASSWORD
admin_project_name = admin
admin_domain_name = Default
admin_system = none
create_isolated_networks = false
tempest_roles =

[identity]
uri_v3 = $KEYSTONE_URL
auth_version = v3
region = RegionOne
v3_endpoint_type = public
admin_domain_scope = false
default_domain_id = default

[identity-feature-enabled]
api_v2 = false
api_v3 = true

[service_available]
glance = true
nova = false
cinder = false
neutron = false
swift = false

[enforce_scope]
glance = true
keystone = true

[image]
catalog_type = $CATALOG_TYPE
region = RegionOne
endpoint_type = public
http_image = $HTTP_IMAGE
http_qcow2_image = $HTTP_IMAGE
build_timeout = 60
build_interval = 1
container_formats = bare,ami,ari,aki,ovf,ova
disk_formats = qcow2,raw,ami,ari,aki,vhd,vmdk,vdi,iso,vhdx
hashing_algorithm = sha512
image_caching_enabled = $CACHING_ENABLED

[image-feature-enabled]
api_v2 = true
import_image = true
os_glance_reserved = true
manage_locations = true
image_conversion = false
image_format_enforcement = true
do_secure_hash = true
http_store_enabled = true
store_weight_enabled = false
CONF

# ------------------------------------------------------------ Glimpse
G=$W/glimpse
rm -rf "$G"
[ "$CACHING_ENABLED" = false ] || CACHE_DIR_LINE="image_cache_dir = $G/data/image-cache"
mkdir -p "$G"
cat >"$G/glance-api.conf" <<CONF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = $PORT
public_endpoint = $IMAGE_URL
auth_strategy = keystone
data_dir = $G/data
workers = 2
enabled_import_methods = [glance-direct,web-download,copy-image]
# tempest waits for an all-stores import until "stores" equals the sorted store ids, and
# "stores" follows the order the copies were written (enabled_backends order, as Glance).
enabled_backends = cheap:file,fast:file,web:http
show_multiple_locations = true
worker_self_reference_url = $IMAGE_URL
hashing_algorithm = sha512
$CACHE_DIR_LINE

[glance_store]
default_backend = fast

[fast]
filesystem_store_datadir = $G/data/images-fast
store_description = Fast file store

[cheap]
filesystem_store_datadir = $G/data/images-cheap
store_description = Cheap file store

[web]
store_description = Read-only HTTP store

[import_filtering_opts]
allowed_hosts = [127.0.0.1]
allowed_ports = [80,443,$HTTP_PORT]

[keystone_authtoken]
www_authenticate_uri = $KEYSTONE_URL
auth_url = $KEYSTONE_URL
auth_type = password
username = $SERVICE_USER
password = $SERVICE_PASSWORD
project_name = service
user_domain_name = Default
project_domain_name = Default
service_token_roles_required = true
CONF
# As devstack does for Glance (glance-manage db_load_metadefs): the metadefs tests
# expect Glance's catalogue (resource types, namespaces) in the database.
METADEFS=${GLIMPSE_GLANCE_METADEFS:-$ROOT/.tmp/glance-metadefs}
"$(dirname "$GLIMPSE")/python" "$ROOT/scripts/fetch_glance_metadefs.py" "$METADEFS" \
    >"$G/metadefs.log" 2>&1 || { tail -n 20 "$G/metadefs.log"; exit 1; }
"$GLIMPSE" db sync --config-file "$G/glance-api.conf" >>"$G/metadefs.log" 2>&1 \
    && "$GLIMPSE" db load-metadefs --config-file "$G/glance-api.conf" "$METADEFS" \
    >>"$G/metadefs.log" 2>&1 || { tail -n 20 "$G/metadefs.log"; exit 1; }
log "Glance's metadefs catalogue loaded ($(ls "$METADEFS"/*.json | wc -l) files)"
setsid "$GLIMPSE" serve --config-file "$G/glance-api.conf" >"$G/glimpse.log" 2>&1 </dev/null &
GLIMPSE_PID=$!
CLEANUP=("kill $GLIMPSE_PID" "${CLEANUP[@]}")
for _ in $(seq 1 120); do
    curl -sf -o /dev/null "$IMAGE_URL/versions" && break
    kill -0 "$GLIMPSE_PID" 2>/dev/null || break
    sleep 0.5
done
curl -sf -o /dev/null "$IMAGE_URL/versions" || { tail -n 40 "$G/glimpse.log"; exit 1; }
log "Glimpse on $IMAGE_URL, Keystone $KEYSTONE_URL, test image $HTTP_IMAGE"

# ------------------------------------------------------------ run
# test_hash_calculation_cancelled serves its image from a NON-loopback address of
# this host; the project's tests talk to loopback only, so it is never run.
EXCLUDE=test_hash_calculation_cancelled
status=0
for suite in "$@"; do
    case $suite in
        image) regex='^tempest\.api\.image' ;;
        rbac) regex='^glance_tempest_plugin\.tests\.rbac\.v2\.test_project_[a-z_]+\.Image' ;;
        rbac-all) regex='^glance_tempest_plugin\.tests\.rbac' ;;
    esac
    filter=${TEMPEST_REGEX:-}
    [ -z "$filter" ] || regex=$filter
    echo "== tempest $suite ($regex)"
    out=$W/results/$suite
    rm -rf "$out"
    mkdir -p "$out"
    ( cd "$TW" && "$VT/bin/tempest" run --regex "$regex" --exclude-regex "$EXCLUDE" \
        --list-tests ) 2>/dev/null | grep -E '^[a-z_]+\.' | sed 's/\[.*//' | sort -u \
        >"$out/listed.txt" || true
    t0=$(date +%s)
    ( cd "$TW" && "$VT/bin/tempest" run --regex "$regex" --exclude-regex "$EXCLUDE" \
        --concurrency "$CONCURRENCY" ) >"$out/tempest-run.log" 2>&1 || true
    ( cd "$TW" && "$VT/bin/stestr" last --subunit ) >"$out/results.subunit" 2>/dev/null || true
    "$VT/bin/python" "$ROOT/tests/tempest/results.py" "$out" \
        "$ROOT/tests/tempest/expected-$suite.txt" "$(($(date +%s) - t0))" "$filter" \
        || status=1
done
exit $status

#!/usr/bin/env bash
# A single-node Ceph cluster (mon + one bluestore OSD on a sparse file, cephx, msgr v2 on
# 127.0.0.1 only) with the pool `images` for the rbd store, and optionally RGW for S3.
#
#   scripts/backends/ceph.sh up DIR [ceph] [s3-rgw]    (no names: both)
#   scripts/backends/ceph.sh down DIR
#
# Follows the contract in scripts/backends.sh. Everything lives in DIR/ceph; the cluster
# survives down/up (bluestore), and up restarts daemons that are not running. Users:
# client.glance (caps `profile rbd pool=images`, the production shape), client.glimpse-test
# (`profile rbd` on every pool: the conformance suite makes throw-away pools) and
# client.admin. RGW's S3 user uid=glimpse takes S3_ACCESS_KEY / S3_SECRET_KEY from the
# environment (random ones are made when unset).
# Clusters in different DIRs are independent (ports, fsid, keys, PIDs of their own):
# tests/faults/ceph.py runs a private one next to the shared one, to SIGSTOP its OSD.
set -euo pipefail

ACTION=${1:-} DIR=${2:-}
[ -n "$ACTION" ] && [ -n "$DIR" ] || { echo "usage: $0 up|down DIR [ceph] [s3-rgw]" >&2; exit 2; }
shift 2
mkdir -p "$DIR"
D=$(cd "$DIR" && pwd)/ceph
CONF=$D/ceph.conf
log() { printf '[ceph] %s\n' "$*" >&2; }
alive() { [ -f "$D/run/$1.pid" ] && kill -0 "$(cat "$D/run/$1.pid")" 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'; }
ceph_() { timeout 30 ceph -c "$CONF" -n client.admin --connect-timeout 5 "$@"; }

stop_all() {
    local f pid
    for f in "$D"/run/*.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null; then
            log "stopping $(basename "$f" .pid) (pid $pid)"
            kill "$pid" 2>/dev/null || true
        fi
    done
    for f in "$D"/run/*.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
        rm -f "$f"
    done
}

if [ "$ACTION" = down ]; then
    [ -d "$D/run" ] && stop_all
    exit 0
fi
[ "$ACTION" = up ] || { echo "usage: $0 up|down DIR [ceph] [s3-rgw]" >&2; exit 2; }

WANT_RGW=false
if [ $# -eq 0 ]; then WANT_RGW=true; fi
for a in "$@"; do [ "$a" = s3-rgw ] && WANT_RGW=true; done

# ------------------------------------------------------------ packages
need=()
for cmd in ceph-mon ceph-osd ceph rbd ceph-authtool monmaptool; do
    command -v "$cmd" >/dev/null 2>&1 || need=(ceph-mon ceph-osd ceph-common)
done
$WANT_RGW && ! command -v radosgw >/dev/null 2>&1 && need+=(radosgw)
[ -f /usr/lib/python3/dist-packages/rbd.cpython-311-x86_64-linux-gnu.so ] || need+=(python3-rbd)
[ -f /usr/lib/python3/dist-packages/rados.cpython-311-x86_64-linux-gnu.so ] || need+=(python3-rados)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        log "missing ${need[*]} and cannot install them (not root or no apt-get)"; exit 1
    fi
    log "apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >&2
fi

# ------------------------------------------------------------ a new cluster
new_cluster() {
    log "creating a cluster in $D"
    rm -rf "$D"
    mkdir -p "$D"/{mon/ceph-a,osd/ceph-0,run,log}
    local fsid mon_port rgw_port
    fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
    mon_port=$(free_port)
    rgw_port=$(free_port)
    printf 'MON_PORT=%s\nRGW_PORT=%s\n' "$mon_port" "$rgw_port" >"$D/ports.env"
    cat >"$CONF" <<CONF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $D/keyring
run dir = $D/run
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
pid file = $D/run/\$name.pid
mon data = $D/mon/\$cluster-\$id
osd data = $D/osd/\$cluster-\$id
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd objectstore = bluestore
bluestore block path = $D/osd/\$cluster-\$id/block.file
bluestore block create = true
bluestore block size = 8589934592
osd memory target = 939524096
bluestore cache autotune = false
bluestore cache size = 134217728
osd op num shards = 1
osd op num threads per shard = 2
[client.glance]
keyring = $D/glance.keyring
[client.rgw.r]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw dns name = localhost
# deleted objects' data is freed by RGW's garbage collector only (defaults: eligible after 2 h,
# a GC cycle every hour); a dev OSD of 8 GiB fills up within a few 1 GiB benches, so free it
# within about a minute: eligible after 30 s, a cycle every 30 s, each cycle holds a GC shard 30 s at most
rgw gc obj min wait = 30
rgw gc processor period = 30
rgw gc processor max time = 30
CONF
    local k=$D/keyring
    ceph-authtool --create-keyring "$k" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool "$k" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
        --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
    ceph-authtool "$k" --gen-key -n osd.0 --cap mon 'allow profile osd' \
        --cap mgr 'allow profile osd' --cap osd 'allow *' >/dev/null
    ceph-authtool "$k" --gen-key -n client.rgw.r --cap mon 'allow rw' --cap osd 'allow rwx' \
        --cap mgr 'allow rw' >/dev/null
    ceph-authtool "$k" --gen-key -n client.glimpse-test --cap mon 'profile rbd' \
        --cap osd 'profile rbd' --cap mgr 'profile rbd' >/dev/null
    ceph-authtool --create-keyring "$D/glance.keyring" --gen-key -n client.glance \
        --cap mon 'profile rbd' --cap osd 'profile rbd pool=images' \
        --cap mgr 'profile rbd pool=images' >/dev/null
    ceph-authtool "$k" --import-keyring "$D/glance.keyring" >/dev/null
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$D/monmap" >/dev/null
    ceph-mon -c "$CONF" --mkfs -i a --monmap "$D/monmap" --keyring "$k" 2>>"$D/log/setup.log"
    touch "$D/.new"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2 i
    shift 2
    for i in $(seq 1 "$limit"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    log "$what did not come up within ${limit}s (logs: $D/log)"
    return 1
}

osd_up() { ceph_ osd stat -f json | python3 -c 'import json,sys
sys.exit(0 if json.load(sys.stdin)["num_up_osds"] >= 1 else 1)'; }
rgw_answers() { curl -s -m 2 -o /dev/null "http://127.0.0.1:$RGW_PORT/"; }

[ -f "$D/ready" ] && [ -f "$CONF" ] || new_cluster
. "$D/ports.env"

if ! alive mon.a; then
    log "starting ceph-mon on 127.0.0.1:$MON_PORT"
    ceph-mon -c "$CONF" -i a </dev/null >>"$D/log/daemons.out" 2>&1
fi
wait_for 60 ceph-mon ceph_ -s

if [ -f "$D/.new" ]; then
    osd_uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
    ceph_ osd new "$osd_uuid" 0 >/dev/null
    ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" 2>>"$D/log/setup.log"
fi
if ! alive osd.0; then
    log "starting ceph-osd"
    ceph-osd -c "$CONF" -i 0 </dev/null >>"$D/log/daemons.out" 2>&1
fi
wait_for 90 ceph-osd osd_up

if [ -f "$D/.new" ]; then
    ceph_ osd pool create images 8 8 >/dev/null 2>&1
    timeout 60 rbd -c "$CONF" -n client.admin pool init images
    touch "$D/ready"
    rm -f "$D/.new"
fi

if $WANT_RGW; then
    if ! alive client.rgw.r; then
        log "starting radosgw on 127.0.0.1:$RGW_PORT"
        radosgw -c "$CONF" -n client.rgw.r </dev/null >>"$D/log/daemons.out" 2>&1
    fi
    wait_for 90 radosgw rgw_answers
    if [ -z "${S3_ACCESS_KEY:-}" ]; then
        S3_ACCESS_KEY=GLIMPSE$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)
        S3_SECRET_KEY=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
    fi
    radosgw_admin() { timeout 60 radosgw-admin -c "$CONF" -n client.admin "$@"; }
    if ! radosgw_admin user info --uid=glimpse >/dev/null 2>&1; then
        radosgw_admin user create --uid=glimpse --display-name=glimpse \
            --access-key="$S3_ACCESS_KEY" --secret="$S3_SECRET_KEY" >/dev/null
    elif ! radosgw_admin user info --uid=glimpse | grep -q "\"$S3_ACCESS_KEY\""; then
        radosgw_admin key create --uid=glimpse --key-type=s3 \
            --access-key="$S3_ACCESS_KEY" --secret="$S3_SECRET_KEY" >/dev/null
    fi
fi

FSID=$(sed -n 's/^fsid = //p' "$CONF")
echo "CEPH_CONF=$CONF"
echo "CEPH_USER=glance"
echo "CEPH_POOL=images"
echo "CEPH_KEYRING=$D/glance.keyring"
echo "CEPH_FSID=$FSID"
echo "CEPH_TEST_USER=glimpse-test"
echo "CEPH_ADMIN_USER=admin"
if $WANT_RGW; then
    echo "S3_RGW_ENDPOINT=http://127.0.0.1:$RGW_PORT"
    echo "S3_RGW_ACCESS_KEY=$S3_ACCESS_KEY"
    echo "S3_RGW_SECRET_KEY=$S3_SECRET_KEY"
    echo "S3_ACCESS_KEY=$S3_ACCESS_KEY"
    echo "S3_SECRET_KEY=$S3_SECRET_KEY"
fi

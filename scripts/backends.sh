#!/usr/bin/env bash
# Start and stop the real storage servers the store drivers are tested against.
#
#   scripts/backends.sh up DIR [ceph|swift|s3-rgw|s3-seaweedfs|all]...   (default: all)
#   scripts/backends.sh down DIR
#
# Contract of every server script scripts/backends/<server>.sh (ceph.sh, swift.sh,
# seaweedfs.sh), called as `<server>.sh up DIR` and `<server>.sh down DIR`:
#   up    (`<server>.sh up DIR [NAME...]`, NAME the back ends asked of it, e.g. ceph.sh
#         gets "ceph" and/or "s3-rgw") installs what is missing (apt-get / pip, only when missing), starts the server
#         listening on 127.0.0.1 only (free ports, picked once and kept in DIR), waits
#         until it answers, records every PID it started in DIR/<server>/run/*.pid and
#         prints the lines KEY=VALUE a glance-api.conf can be written from, on stdout
#         and nothing else there (progress goes to stderr). Exit status non-zero when
#         the server did not come up. Idempotent: when its servers already answer, it
#         starts nothing and prints the same lines again.
#   down  stops only what up started, by the recorded PIDs, and exits 0 when nothing
#         runs (any more). Data stays in DIR for the next up.
#   Each script keeps to DIR/<server>/ and takes S3_ACCESS_KEY / S3_SECRET_KEY from the
#   environment when it offers S3 (this dispatcher sets them once per DIR, in
#   DIR/s3-credentials.env), so one key pair works on every S3 server.
#
# Keys printed: ceph: CEPH_CONF CEPH_USER CEPH_POOL CEPH_KEYRING CEPH_FSID; s3-rgw:
# S3_RGW_ENDPOINT S3_ACCESS_KEY S3_SECRET_KEY; swift: SWIFT_AUTH_URL SWIFT_USER SWIFT_KEY
# ...; s3-seaweedfs: S3_SEAWEEDFS_ENDPOINT S3_ACCESS_KEY S3_SECRET_KEY.
# The dispatcher also writes everything printed to DIR/env (sourceable) and holds a lock
# on DIR/lock while it works, so parallel callers (pytest-xdist workers) start each
# server once. Exit status: non-zero when any requested server did not come up.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() { echo "usage: $0 up|down DIR [ceph|swift|s3-rgw|s3-seaweedfs|all]..." >&2; exit 2; }
[ $# -ge 2 ] || usage
ACTION=$1 DIR=$2
shift 2
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

server_of() {  # the script that provides a back end
    case $1 in
        ceph|s3-rgw) echo ceph ;;
        swift) echo swift ;;
        s3-seaweedfs) echo seaweedfs ;;
        *) echo "unknown back end '$1'" >&2; usage ;;
    esac
}

exec 9>"$DIR/lock"
flock 9

case $ACTION in
    up)
        [ $# -gt 0 ] || set -- all
        SERVERS=()
        for want in "$@"; do
            if [ "$want" = all ]; then set -- ceph swift s3-seaweedfs; fi
        done
        for want in "$@"; do
            s=$(server_of "$want")
            [[ " ${SERVERS[*]-} " == *" $s "* ]] || SERVERS+=("$s")
        done
        CREDS=$DIR/s3-credentials.env
        if [ ! -f "$CREDS" ]; then
            umask 077
            printf 'S3_ACCESS_KEY=%s\nS3_SECRET_KEY=%s\n' \
                "GLIMPSE$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)" \
                "$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')" >"$CREDS"
        fi
        set -a; . "$CREDS"; set +a
        rc=0
        : >"$DIR/env.new"
        for s in "${SERVERS[@]}"; do
            if [ ! -f "$HERE/backends/$s.sh" ]; then
                echo "backends: no script scripts/backends/$s.sh" >&2; rc=1; continue
            fi
            names=()  # the back ends asked of this server (ceph: ceph and/or s3-rgw)
            for want in "$@"; do [ "$(server_of "$want")" = "$s" ] && names+=("$want"); done
            if out=$(bash "$HERE/backends/$s.sh" up "$DIR" "${names[@]}" 9>&-); then
                printf '%s\n' "$out" | grep -E '^[A-Z0-9_]+=' >>"$DIR/env.new" || true
            else
                echo "backends: $s did not come up (logs under $DIR/$s/)" >&2; rc=1
            fi
        done
        # Keep what other servers printed earlier, newest value of each key wins.
        touch "$DIR/env"
        cat "$DIR/env" "$DIR/env.new" | awk -F= '{v[$1]=$0; if (!($1 in o)) {o[$1]=n++}}
            END {for (k in o) print o[k] "\t" v[k]}' | sort -n | cut -f2- >"$DIR/env.tmp"
        mv "$DIR/env.tmp" "$DIR/env"
        cat "$DIR/env.new"
        rm -f "$DIR/env.new"
        exit $rc
        ;;
    down)
        rc=0
        for s in ceph swift seaweedfs; do
            if [ -d "$DIR/$s" ] && [ -f "$HERE/backends/$s.sh" ]; then
                bash "$HERE/backends/$s.sh" down "$DIR" 9>&- || rc=1
            fi
        done
        rm -f "$DIR/env"
        exit $rc
        ;;
    *) usage ;;
esac

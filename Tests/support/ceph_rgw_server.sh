#!/usr/bin/env bash
# A real S3 server for Tiergate's tests: Ceph's RADOS Gateway (Debian 12's radosgw, Ceph 16.2) on a
# one-node cluster (one monitor, one OSD on memstore) on loopback, everything under a temporary folder.
#
# Prints one JSON line (endpoint, region, an S3 user's keys and a 0600 credentials file holding them),
# then serves until its stdin closes (the test process exited); then it stops the daemons and removes
# the folder. On failure it prints nothing on stdout and the tail of the daemons' logs on stderr.
#
# Choices that make a one-node cluster start in seconds, and why:
# - `auth none` everywhere, with `ms mon client mode = crc`: without it radosgw insists on a secure
#   connection and loops on "get_initial_auth_request returned -13".
# - memstore: no block device or file to provision, and nothing left on disk.
# - pools created up front with few placement groups: radosgw would otherwise create each on demand
#   with the default count, which a single OSD may refuse (mon_max_pg_per_osd); radosgw tags them.
# - a short paxos propose interval: every map change (OSD boot, pool creation) commits at once.
# - tcp_nodelay on the beast frontend: without it every response with a body waits 40 ms (Nagle's
#   algorithm on the server against the client's delayed ACK), a GET takes 46 ms instead of 3.
#
# Daemons get SIGKILL if this script dies (setpriv --pdeathsig), so none outlives a killed test run.
set -euo pipefail

for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool setpriv python3 curl; do
  command -v "$tool" >/dev/null || { echo "ceph_rgw_server: '$tool' is not installed; run scripts/setup (it installs radosgw ceph-mon ceph-osd ceph-common)" >&2; exit 1; }
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/tiergate-rgw-XXXXXX")
pids=()
# SIGKILL: the cluster is thrown away, and on SIGTERM the OSD would first save memstore to disk.
stop() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
fail() {
  echo "ceph_rgw_server: $*" >&2
  for log in client.rgw mon.a osd.0 daemons cli mkfs; do
    [ -s "$dir/log/$log.log" ] && { echo "--- tail of $log.log:" >&2; tail -n 8 "$dir/log/$log.log" | cut -c1-300 >&2; }
  done
  stop
  exit 1
}
trap 'fail "interrupted"' INT TERM

# Two free loopback ports: the monitor's and the gateway's.
read -r mon_port rgw_port < <(python3 -c '
import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))')

mkdir -p "$dir/log" "$dir/run" "$dir/mon/ceph-a" "$dir/osd/ceph-0" "$dir/rgw"
cd "$dir"
conf="$dir/ceph.conf"
fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
keyring = /dev/null
mon data = $dir/mon/\$cluster-\$id
osd data = $dir/osd/\$cluster-\$id
osd objectstore = memstore
memstore device bytes = 4294967296
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon max pg per osd = 1000
# The monitor stops when its disk is nearly full (5 % by default): not worth failing a test run for.
mon data avail crit = 0
paxos propose interval = 0.01
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1
rgw data = $dir/rgw
rgw enable usage log = false
rgw enable ops log = false
EOF

ceph_cli() { timeout 30 ceph -c "$conf" "$@"; }

monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null 2>&1 || fail "monmaptool failed"
ceph-mon -c "$conf" -i a --mkfs --monmap "$dir/monmap" >"$dir/log/mkfs.log" 2>&1 || fail "ceph-mon --mkfs failed"
setpriv --pdeathsig KILL -- ceph-mon -c "$conf" -i a -f >>"$dir/log/daemons.log" 2>&1 &
pids+=($!)

osd_uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
osd_id=$(ceph_cli osd new "$osd_uuid" 2>>"$dir/log/cli.log") || fail "the monitor did not answer 'ceph osd new'"
[ "$osd_id" = 0 ] || fail "'ceph osd new' returned '$osd_id', not 0"
ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$dir/log/mkfs.log" 2>&1 || fail "ceph-osd --mkfs failed"
setpriv --pdeathsig KILL -- ceph-osd -c "$conf" -i 0 -f >>"$dir/log/daemons.log" 2>&1 &
pids+=($!)

for pool in .rgw.root default.rgw.control default.rgw.meta default.rgw.log default.rgw.buckets.index default.rgw.buckets.data default.rgw.buckets.non-ec; do
  ceph_cli osd pool create "$pool" 8 8 >/dev/null 2>>"$dir/log/cli.log" || fail "cannot create pool $pool"
done

setpriv --pdeathsig KILL -- radosgw -c "$conf" -n client.rgw -f >>"$dir/log/daemons.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 300); do
  curl -s -o /dev/null "http://127.0.0.1:$rgw_port/" && break
  kill -0 "${pids[2]}" 2>/dev/null || fail "radosgw exited"
  sleep 0.1
done
curl -s -o /dev/null "http://127.0.0.1:$rgw_port/" || fail "radosgw did not answer on 127.0.0.1:$rgw_port within 30 s"

access_key=TIERGATE$(python3 -c 'import secrets; print(secrets.token_hex(6).upper())')
secret_key=$(python3 -c 'import secrets; print(secrets.token_urlsafe(30))')
timeout 60 radosgw-admin -c "$conf" user create --uid tiergate --display-name Tiergate \
  --access-key "$access_key" --secret "$secret_key" >/dev/null 2>>"$dir/log/cli.log" || fail "radosgw-admin user create failed"

credentials="$dir/credentials"
(umask 077; printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$access_key" "$secret_key" >"$credentials")
printf '{"server": "Ceph RGW %s", "endpoint": "http://127.0.0.1:%s", "region": "us-east-1", "accessKeyId": "%s", "secretAccessKey": "%s", "credentialsFile": "%s", "log": "%s"}\n' \
  "$(radosgw --version | awk '{print $3}')" "$rgw_port" "$access_key" "$secret_key" "$credentials" "$dir/log/client.rgw.log"

trap 'stop; exit 0' INT TERM
cat >/dev/null || true
stop

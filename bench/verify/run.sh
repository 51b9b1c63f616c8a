#!/bin/bash
# Verify benchmark (issue 10 §4): how long `fleetsync verify` takes per million files here.
#
# Times, in one run and against one real rsync daemon on 127.0.0.1 (fake super, as fleetsync provisions),
# the rsync run `fleetsync verify` makes on the source host (with and without its nice/ionice) (the exact arguments: nice/ionice, checksums,
# -aAXHS --numeric-ids, itemized output, versions protected) and a plain `rsync -n -c -a --delete` by hand.
# The SSH session around it adds a constant (well under a second), not a per-file cost.
#
#   bench/verify/run.sh                      # 200,000 files of 1-512 bytes, extrapolated to 1,000,000
#   bench/verify/run.sh --files 1000000      # the real thing (about 4 GB of inodes and a few minutes to create)
#
# Needs root (the daemon writes with fake super), rsync, python3. WORK defaults to /tmp/fleetsync-bench-verify;
# the tree is reused while WORK/src.shape matches. Caches are warm (the tree was just written or read): a
# cold-cache run is slower by the disk's random-read time, which this machine's page cache hides.
set -euo pipefail
files=200000
work=/tmp/fleetsync-bench-verify
while [ $# -gt 0 ]; do
  case "$1" in
    --files) files=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
mkdir -p "$work"
src=$work/src dst=$work/dst
if [ "$(cat "$work/src.shape" 2>/dev/null)" != "$files" ]; then
  rm -rf "$src" "$dst"
  echo "making $files files in $src ..."
  python3 - "$src" "$files" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(10)
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%04d" % (i % 1000)), "wb") as f:
        f.write(rng.randbytes(rng.randint(1, 512)))
PY
  echo "$files" > "$work/src.shape"
fi
mkdir -p "$dst"
chown nobody:nogroup "$dst"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
printf 'bench:%s\n' "$password" > "$work/secrets"
printf '%s\n' "$password" > "$work/password"
chmod 600 "$work/secrets" "$work/password"
cat > "$work/rsyncd.conf" <<CONF
pid file = $work/rsyncd.pid
lock file = $work/rsyncd.lock
log file = $work/rsyncd.log
use chroot = no
uid = nobody
gid = nogroup
[backup]
  path = $dst
  read only = no
  fake super = yes
  auth users = bench
  secrets file = $work/secrets
  hosts allow = 127.0.0.1
  filter = + /.fleetsync-versions/ + /.fleetsync-versions/.hold-* + /.fleetsync-versions/*/ - /.fleetsync-versions/**
CONF
rsync --daemon --no-detach --config="$work/rsyncd.conf" --port="$port" --address=127.0.0.1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
url=rsync://bench@127.0.0.1:$port/backup/
echo "initial copy to the daemon ..."
rsync -aAXHS --numeric-ids --delete --password-file="$work/password" "$src/" "$url"

seconds() { local t0 t1; t0=$(date +%s.%N); "$@" > "$work/out.txt"; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
verify=(nice -n 19 ionice -c 3 rsync -c -aAXHS --numeric-ids --omit-dir-times --no-human-readable --stats
  "--out-format=@fsv %i %n" "--filter=P /.fleetsync-versions/" --timeout=600 --contimeout=30
  --password-file="$work/password" -n --delete "$src/" "$url")
unniced=("${verify[@]:6}")
plain=(rsync -n -c -a --delete --password-file="$work/password" "$src/" "$url")
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
t_plain=$(seconds "${plain[@]}")
t_verify=$(seconds "${verify[@]}")
t_plain2=$(seconds "${plain[@]}")
t_verify2=$(seconds "${verify[@]}")
t_unniced=$(seconds "${unniced[@]}")
compared=$(sed -n 's/^Number of files: .*reg: \([0-9,]*\).*/\1/p' "$work/out.txt" | tr -d ,)
drift=$(grep -c '^@fsv ' "$work/out.txt" || true)
per_million() { echo "scale=1; $1 * 1000000 / $files" | bc; }
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
cat <<REPORT
files: $files ($compared compared by the last verify run, $drift itemized differences)
plain   rsync -n -c -a --delete:            ${t_plain} s, ${t_plain2} s  -> $(per_million "$t_plain2") s per million files
verify  (nice, ionice, -aAXHS, itemized):   ${t_verify} s, ${t_verify2} s  -> $(per_million "$t_verify2") s per million files
verify's rsync without nice/ionice:         ${t_unniced} s  -> $(per_million "$t_unniced") s per million files
(nice 19 / idle I/O class yield to everything else: on a busy machine verify takes longer, by design)
REPORT

#!/usr/bin/env bash
# What keeping owners, ACLs, xattrs and versions (issue 10) costs per transfer: one rsync run of a batch of
# changed files to a real rsync daemon on 127.0.0.1, as the hand-made `inotifywait | rsync -a` loop sends it and
# as fleetsync-watch sends it (metadata flags and `fake super`, then also versions: `--backup-dir` and the
# daemon's `pre-xfer exec` check), taken in turn within each round so the machine's load hits all alike.
# Not a test: run on demand, as root, on a quiet machine. Results go in docs/benchmarks.md.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: bench/versions/run.sh [--rounds N] [--files N] [--size BYTES] [--port P]
  --rounds N   rounds; each round rewrites the batch and sends it once per mode (default 200)
  --files N    files per batch (default 50)
  --size B     bytes per file (default 10240)
  --port P     rsync daemon port (default 18893)
USAGE
}

ROUNDS=200 FILES=50 SIZE=10240 PORT=18893
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --files) FILES=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in ROUNDS FILES SIZE PORT; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: ${v,,} must be a positive whole number" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "run.sh: run as root (the daemon's module for the loop runs as root)" >&2; exit 2; }
for c in rsync python3 setfattr; do command -v "$c" >/dev/null || { echo "run.sh: $c not installed" >&2; exit 2; }; done

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d /var/tmp/fleetsync-bench-versions.XXXXXX)
DAEMON=""
cleanup() {
  [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# The daemon's check, exactly as `fleetsync up` installs it (the script text of VersionsXferCheck.swift).
CHECK="$WORK/fleetsync-xfer-check"
sed -n '/public static let script = #"""/,/^    """#/p' "$REPO/Sources/FleetProvision/VersionsXferCheck.swift" |
  sed '1d;$d' | sed 's/^    //' >"$CHECK"
chmod 755 "$CHECK"
head -1 "$CHECK" | grep -q '^#!/bin/sh' || { echo "run.sh: could not extract the xfer check script" >&2; exit 1; }

mkdir -p "$WORK/src" "$WORK/plain" "$WORK/bare" "$WORK/meta" "$WORK/versions/.fleetsync-versions"
chown nobody "$WORK/meta" "$WORK/versions" "$WORK/versions/.fleetsync-versions"
printf 'bench\n' >"$WORK/pass"
printf 'bench:bench\n' >"$WORK/secrets"
chmod 600 "$WORK/pass" "$WORK/secrets"
FILTER='filter = + /.fleetsync-versions/ + /.fleetsync-versions/.hold-* - /.fleetsync-versions/*/**'
cat >"$WORK/rsyncd.conf" <<CONF
pid file = $WORK/rsyncd.pid
port = $PORT
address = 127.0.0.1
use chroot = no
max connections = 0
socket options = TCP_NODELAY
auth users = bench
secrets file = $WORK/secrets
read only = no
[plain]
  path = $WORK/plain
  uid = root
  gid = root
[bare]
  path = $WORK/bare
  uid = root
  gid = root
[meta]
  path = $WORK/meta
  uid = nobody
  gid = nogroup
  fake super = yes
  $FILTER
[versions]
  path = $WORK/versions
  uid = nobody
  gid = nogroup
  fake super = yes
  $FILTER
  pre-xfer exec = $CHECK
CONF
rsync --daemon --no-detach --config="$WORK/rsyncd.conf" &
DAEMON=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done

cd "$WORK/src"
for i in $(seq 0 $((FILES - 1))); do printf 'f%04d\0' "$i"; done >"$WORK/list"
# the loop's command, and fleetsync-watch's for listed paths (Sources/FleetWatch/Rsync*.swift), each with
# --files-from like both; "bare" is fleetsync's without what issue 10 added (metadata flags, fake super, versions)
common=(--from0 "--files-from=$WORK/list" --password-file="$WORK/pass" --sockopts=TCP_NODELAY)
flags=(--modify-window=-1 --force --ignore-times --delete-missing-args --stats --no-human-readable)
agent=(-aAXHS --numeric-ids "${flags[@]}" "--filter=P /.fleetsync-versions/")
run_mode() {
  case $1 in
    plain) rsync -a --stats "${common[@]}" . "rsync://bench@127.0.0.1:$PORT/plain/" ;;
    bare) rsync -a "${flags[@]}" "${common[@]}" . "rsync://bench@127.0.0.1:$PORT/bare/" ;;
    meta) rsync "${agent[@]}" "${common[@]}" . "rsync://bench@127.0.0.1:$PORT/meta/" ;;
    versions)
      stamp=$(date -u +%Y-%m-%dT%H-%M-%S.%3NZ)
      rsync "${agent[@]}" --backup "--backup-dir=.fleetsync-versions/$stamp" "${common[@]}" . \
        "rsync://bench@127.0.0.1:$PORT/versions/"
      ;;
  esac
}
# New content of the same size, with a modification time of its own second: a same-size rewrite within the
# second of the last one is skipped by plain `rsync -a` (its quick check sees size and time equal), which would
# make the loop look fast by not sending; fleetsync sends listed paths with --ignore-times.
rewrite() {
  for i in $(seq 0 $((FILES - 1))); do head -c "$SIZE" /dev/urandom >"$(printf 'f%04d' "$i")"; done
  touch -d "@$((1700000000 + $1 * 10))" f*
  setfattr -n user.bench -v "$1" f0000
}
rewrite 0
modes=(plain bare meta versions)
for m in "${modes[@]}"; do run_mode "$m" >/dev/null; done   # first sends: every file new

: >"$WORK/times"
for r in $(seq 1 "$ROUNDS"); do
  rewrite "$r"
  for k in 0 1 2 3; do
    m=${modes[$(((r + k) % 4))]}
    t0=$(date +%s%N)
    out=$(run_mode "$m")
    t1=$(date +%s%N)
    sent=$(sed -n 's/^Number of regular files transferred: //p' <<<"$out" | tr -d ,)
    echo "$m $(((t1 - t0) / 1000)) ${sent:-0}" >>"$WORK/times"
    sleep 0.01   # let the stamp move on (versions) and the daemon settle
  done
done

kept=$(find "$WORK/versions/.fleetsync-versions" -mindepth 1 -maxdepth 1 -type d | wc -l)
echo "rounds $ROUNDS, $FILES files of $SIZE bytes per run; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$(rsync --version | head -1)"
echo "version directories kept: $kept (one per versions run)"
python3 - "$WORK/times" <<'PY'
import sys, statistics
runs, sent = {}, {}
for line in open(sys.argv[1]):
    mode, us, files = line.split()
    runs.setdefault(mode, []).append(int(us) / 1000)
    sent[mode] = sent.get(mode, 0) + int(files)
names = {"plain": "the loop's `rsync -a`, daemon as root",
         "bare": "fleetsync's flags without issue 10's (`-a`, daemon as root)",
         "meta": "fleetsync, versions off (`-aAXHS --numeric-ids`, `fake super`)",
         "versions": "fleetsync, versions on (+ `--backup-dir`, the daemon's pre-xfer check)"}
print("| transfer | runs | files sent | mean | p50 | p90 | p99 |")
print("|---|---|---|---|---|---|---|")
for mode in ("plain", "bare", "meta", "versions"):
    t = sorted(runs[mode])
    q = lambda p: t[min(len(t) - 1, int(p * len(t)))]
    print(f"| {names[mode]} | {len(t)} | {sent[mode]:,} | {statistics.mean(t):.1f} ms | {q(0.5):.1f} ms | {q(0.9):.1f} ms | {q(0.99):.1f} ms |")
PY

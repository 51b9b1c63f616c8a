#!/usr/bin/env bash
# The watcher's own CPU per replicated file, beside its rsync runs' and the daemon's (issue 12): a source and a
# backup on tmpfs (no disk in the way), one rsync daemon, fleetsync-watch (inotify), the benchmark's writer at
# RATE files/s for SECONDS. Prints CPU per file of each part and the watcher's system calls per second when
# --strace is given. Not a test: run on demand, as root, on a quiet machine.
#
#   bench/watch/overhead.sh [--rate 1000] [--duration 15] [--strace] [--fleetsync-bin PATH]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
RATE=1000 DURATION=15 STRACE=0 FSW=$REPO/.build/release/fleetsync-watch
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) RATE=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --strace) STRACE=1; shift ;;
    --fleetsync-bin) FSW=$2; shift 2 ;;
    -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "overhead.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$FSW" ] || { echo "overhead.sh: $FSW missing: swift build -c release --product fleetsync-watch" >&2; exit 2; }
for c in rsync gcc curl jq; do command -v "$c" >/dev/null || { echo "overhead.sh: $c not installed" >&2; exit 2; }; done
[ "$STRACE" = 0 ] || command -v strace >/dev/null || { echo "overhead.sh: strace not installed" >&2; exit 2; }

R=$(mktemp -d /dev/shm/fleetsync-overhead.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$R"
}
trap cleanup EXIT
mkdir -p "$R/src/w" "$R/dst" "$R/run" "$R/bin"
gcc -O2 -o "$R/bin/writer" "$REPO/bench/watch/writer.c"
for d in $(seq 0 99); do mkdir "$(printf '%s/src/w/d%02d' "$R" "$d")"; done
rsync -a "$R/src/" "$R/dst/"
PASS=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
(umask 077 && echo "bench:$PASS" >"$R/run/secrets" && echo "$PASS" >"$R/run/pass")
PORT=$((20000 + RANDOM % 20000))
cat >"$R/run/rsyncd.conf" <<CONF
pid file = $R/run/rsyncd.pid
lock file = $R/run/rsyncd.lock
log file = $R/run/rsyncd.log
address = 127.0.0.1
port = $PORT
use chroot = no
uid = root
gid = root
[backup]
  path = $R/dst
  read only = no
  auth users = bench
  secrets file = $R/run/secrets
CONF
rsync --daemon --no-detach --config="$R/run/rsyncd.conf" &
DAEMON=$!
PIDS+=("$DAEMON")
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done
HPORT=$((PORT + 1))
"$FSW" run --source "$R/src" --target "rsync://bench@127.0.0.1:$PORT/backup" --password-file "$R/run/pass" \
  --health-port "$HPORT" --state-dir "$R/run/state" --backend inotify 2>"$R/run/fsw.log" &
FPID=$!
PIDS+=("$FPID")
ready=no
for _ in $(seq 300); do
  s=$(curl -sf "http://127.0.0.1:$HPORT/status" 2>/dev/null) &&
    [ "$(jq -r '.state == "watching" and .queueDepth == 0' <<<"$s")" = true ] && { ready=yes; break; }
  sleep 0.1
done
[ "$ready" = yes ] || { echo "overhead.sh: the watcher did not start; see $R/run/fsw.log" >&2; exit 1; }

ticks() { awk '{ print $14 + $15, $16 + $17 }' "/proc/$1/stat"; }
read -r self0 kids0 < <(ticks "$FPID")
read -r _ daemon0 < <(ticks "$DAEMON")
if [ "$STRACE" = 1 ]; then
  timeout "$DURATION" strace -c -p "$FPID" -f -o "$R/run/strace.txt" 2>/dev/null &
  SPID=$!
fi
nice -n -10 "$R/bin/writer" "$R/src/w" "$RATE" "$DURATION" 100 /dev/null >"$R/run/writer.txt"
files=$(awk '{ print $2 }' "$R/run/writer.txt")
for _ in $(seq 600); do
  s=$(curl -sf "http://127.0.0.1:$HPORT/status")
  [ "$(find "$R/dst/w" -type f | wc -l)" -ge "$files" ] && [ "$(jq -r '.queueDepth == 0 and .inFlight == 0' <<<"$s")" = true ] && break
  sleep 0.2
done
read -r self1 kids1 < <(ticks "$FPID")
read -r _ daemon1 < <(ticks "$DAEMON")
[ "$STRACE" = 0 ] || wait "$SPID" || true
hz=$(getconf CLK_TCK)
echo "$(cat "$R/run/writer.txt")"
echo "fleetsync-watch $(git -C "$REPO" log -1 --format=%h 2>/dev/null || echo '?'), $files files at $RATE/s for $DURATION s:"
awk -v f="$files" -v hz="$hz" -v a="$((self1 - self0))" -v b="$((kids1 - kids0))" -v c="$((daemon1 - daemon0))" 'BEGIN {
  printf "  CPU per file: watcher %.0f us, its rsync runs %.0f us, rsync daemon %.0f us\n", a / hz / f * 1e6, b / hz / f * 1e6, c / hz / f * 1e6 }'
curl -sf "http://127.0.0.1:$HPORT/status" | jq -r '"  rsync runs: \(.transfers), files sent: \(.filesSent)"'
if [ "$STRACE" = 1 ]; then
  echo "  system calls of the watcher and its rsync runs, per second:"
  awk -v d="$DURATION" '$NF ~ /^(fdatasync|access|poll|read|newfstatat|statfs|getdents64)$/ { printf "    %-12s %8.0f\n", $NF, $4 / d }' "$R/run/strace.txt"
fi

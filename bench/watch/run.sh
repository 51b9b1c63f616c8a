#!/usr/bin/env bash
# Watcher benchmark (issue #3): fleetsync-watch vs lsyncd vs the classic inotifywait + rsync loop, same run, same
# real rsync daemon on 127.0.0.1. Not a test: run on demand, as root, on a quiet machine. See bench/watch/README.md.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: bench/watch/run.sh [options]
  --files N            pre-existing files in the source tree (default 1000000, 1000 per directory)
  --rate R[,R...]      offered write rates in files/s (default 5000,1000)
  --duration S         seconds of load per run (default 30)
  --tools LIST         fleetsync,fleetsync-inotify,lsyncd,inotifywait (default: all; fleetsync only if its binary
                       exists). fleetsync runs with its default backend (auto: fanotify as root),
                       fleetsync-inotify with --backend inotify
  --slow-duration S    load seconds for lsyncd and the inotifywait loop (default 15; they fall behind on big trees)
  --drain-cap S        give up waiting for the backup after S seconds past the last write (default 120)
  --setup-dirs N[,N]   directories for the watch-setup test, multiples of 100, 0 = skip it (default 100000)
  --setup-only         only the watch-setup test (no source tree, no load runs)
  --ceiling N          files for the machine-ceiling step, 0 = skip it (default 50000)
  --restart-at S       SIGKILL each tool S seconds into its load and start it again at once (default 0: no)
  --first-change       before the load runs, per tool: seconds from its start to the first change that
                       reaches the backup (a file written every 50 ms from its start)
  --work DIR           work dir, reused between runs (default /var/tmp/fleetsync-bench)
  --port P             rsync daemon port; P+1 and P+2 for fleetsync-watch health (default 18873)
  --check full|quick   zero-difference check: checksum the whole tree (default), or only the written files
                       and size+mtime for the rest (much faster on 1M files)
  --fleetsync-bin PATH fleetsync-watch binary (default: <repo>/.build/release/fleetsync-watch)
USAGE
}

FILES=1000000 RATES=5000,1000 DURATION=30 TOOLS="" SLOW_DURATION=15 DRAIN_CAP=120 SETUP_DIRS=100000
WORK=/var/tmp/fleetsync-bench PORT=18873 CHECK=full SETUP_ONLY=0 CEILING=50000 RESTART_AT=0 FIRST_CHANGE=0
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
FSW="$REPO/.build/release/fleetsync-watch"
while [ $# -gt 0 ]; do
  case "$1" in
    --files) FILES=$2; shift 2 ;;
    --rate) RATES=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --tools) TOOLS=$2; shift 2 ;;
    --slow-duration) SLOW_DURATION=$2; shift 2 ;;
    --drain-cap) DRAIN_CAP=$2; shift 2 ;;
    --setup-dirs) SETUP_DIRS=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --check) CHECK=$2; shift 2 ;;
    --setup-only) SETUP_ONLY=1; shift ;;
    --ceiling) CEILING=$2; shift 2 ;;
    --restart-at) RESTART_AT=$2; shift 2 ;;
    --first-change) FIRST_CHANGE=1; shift ;;
    --fleetsync-bin) FSW=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$CHECK" in full | quick) ;; *) echo "run.sh: --check full|quick" >&2; exit 2 ;; esac
for v in FILES DURATION SLOW_DURATION DRAIN_CAP PORT CEILING RESTART_AT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "run.sh: ${v,,} must be a whole number, got '${!v}'" >&2; exit 2; }
done
[[ "$RATES" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "run.sh: --rate takes whole numbers, comma-separated" >&2; exit 2; }
[[ "$SETUP_DIRS" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "run.sh: --setup-dirs takes whole numbers, comma-separated" >&2; exit 2; }
IFS=, read -r -a setup_sizes <<<"$SETUP_DIRS"
for n in "${setup_sizes[@]}"; do
  if [ "$n" != 0 ] && { [ "$n" -lt 100 ] || [ $((n % 100)) != 0 ]; }; then
    echo "run.sh: --setup-dirs must be 0 or multiples of 100" >&2
    exit 2
  fi
done
[ "$(id -u)" = 0 ] || { echo "run.sh: run as root (rsync daemon with uid root, inotify limits)" >&2; exit 2; }
if [ -z "$TOOLS" ]; then
  TOOLS=lsyncd,inotifywait
  [ -x "$FSW" ] && TOOLS=fleetsync,fleetsync-inotify,$TOOLS
fi
case ",$TOOLS," in *,fleetsync,* | *,fleetsync-inotify,*) [ -x "$FSW" ] || { echo "run.sh: $FSW missing: swift build -c release --product fleetsync-watch" >&2; exit 2; } ;; esac
for c in rsync lsyncd inotifywait gcc curl jq python3 setsid; do
  command -v "$c" >/dev/null || { echo "run.sh: $c not installed" >&2; exit 2; }
done

PY=python3
NDIRS=100                          # target directories for the writes
PER_DIR=1000                       # pre-existing files per directory
SRC=$WORK/src DST=$WORK/dst RUN=$WORK/run BIN=$WORK/bin
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$WORK/results/$STAMP
mkdir -p "$SRC" "$DST" "$RUN" "$BIN" "$OUT"
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
now_ns() { date +%s%N; }

# --- trash: files written by a run are moved aside, and deleted only when the whole benchmark ends ----------------
# ext4 without a journal (as on the development machine) skips inodes freed in the last 60 s (360 s while their
# inode-table block is dirty) when it allocates new ones, reading each candidate's inode block. Deleting the last
# run's 300,000 files right before the next run made every file the writer and the receiving rsync created pay for
# that scan (a sixth of all CPU in a profile). So nothing is deleted between runs; the trash is emptied at exit,
# and the next benchmark waits until that deletion is 6 minutes old.
TRASH=$WORK/trash
TRASH_STAMP=$WORK/trash.emptied
trash() {
  mkdir -p "$TRASH"
  local p
  for p in "$@"; do
    if [ -e "$p" ]; then mv "$p" "$TRASH/$(date +%s%N)-${p##*/}"; fi
  done
}
empty_trash() {
  if [ -d "$TRASH" ] && [ -n "$(ls -A "$TRASH")" ]; then
    log "deleting the runs' files ($(du -sh "$TRASH" | cut -f1))"
    rm -rf "$TRASH"
    sync
    date +%s >"$TRASH_STAMP"
  fi
}

# --- cleanup: everything started here is stopped at exit, also on Ctrl-C --------------------------------------
PIDS=()            # process-group leaders (started with setsid)
SAVED_LIMITS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do
    kill -TERM -- "-$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 -- "-$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$p" 2>/dev/null || true
  done
  for kv in "${SAVED_LIMITS[@]}"; do echo "${kv#*=}" >"/proc/sys/fs/inotify/${kv%%=*}"; done
  empty_trash
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# start CMD... in its own session (process group), remember it, and set SPAWNED to its pid
# (not via $(...): a subshell would lose PIDS and wait for the child's stdout)
spawn() {
  setsid "$@" &
  SPAWNED=$!
  PIDS+=("$SPAWNED")
}
# stop one process group started by spawn
stop_group() {
  local p=$1
  kill -TERM -- "-$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 -- "-$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  local keep=()
  for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
  PIDS=("${keep[@]}")
}

# --- helpers ----------------------------------------------------------------------------------------------------
for f in gen writer arrive; do
  if [ ! -x "$BIN/$f" ] || [ "$HERE/$f.c" -nt "$BIN/$f" ]; then gcc -O2 -Wall -o "$BIN/$f" "$HERE/$f.c"; fi
done
# inotify limits, raised as the classic setup does (watches for the trees, a queue that survives a busy second);
# restored at exit
max_setup=0
for n in "${setup_sizes[@]}"; do [ "$n" -gt "$max_setup" ] && max_setup=$n; done
need_watches=$((max_setup + FILES / PER_DIR + 50000))
raise_limit() {
  local name=$1 want=$2 cur
  cur=$(cat "/proc/sys/fs/inotify/$name")
  if [ "$cur" -lt "$want" ]; then
    SAVED_LIMITS+=("$name=$cur")
    echo "$want" >"/proc/sys/fs/inotify/$name"
    log "fs.inotify.$name $cur -> $want (restored at exit)"
  fi
}
raise_limit max_user_watches "$need_watches"
raise_limit max_queued_events 1048576

# --- source tree: reuse when it has the right shape ------------------------------------------------------------
shape="files=$FILES per_dir=$PER_DIR"
if [ "$SETUP_ONLY" = 0 ] && [ "$(cat "$WORK/src.shape" 2>/dev/null)" != "$shape" ]; then
  log "creating source tree: $FILES files in $(((FILES + PER_DIR - 1) / PER_DIR)) dirs"
  if [ -e "$SRC" ] || [ -e "$DST" ]; then
    rm -rf "$SRC" "$DST" "$WORK/src.shape"
    sync
    date +%s >"$TRASH_STAMP"
  fi
  t0=$(now_ns)
  "$BIN/gen" "$SRC" "$FILES" "$PER_DIR"
  log "  took $((($(now_ns) - t0) / 1000000)) ms"
  echo "$shape" >"$WORK/src.shape"
fi
mkdir -p "$SRC/w" "$DST"

if [ "$SETUP_ONLY" = 0 ]; then
  # Room for what the runs write (kept in the trash until the end): 55 KB per file on average, on both sides.
  IFS=, read -r -a _rates <<<"$RATES"
  need_kb=$((CEILING * 110))
  for r in "${_rates[@]}"; do need_kb=$((need_kb + r * (DURATION + 2 * SLOW_DURATION) * 110)); done
  avail_kb=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
  if [ "$avail_kb" -lt $((need_kb + 2 * 1024 * 1024)) ]; then
    echo "run.sh: the runs write about $((need_kb / 1024 / 1024)) GB into $WORK (kept until the end), but only" \
      "$((avail_kb / 1024 / 1024)) GB are free; use fewer rates, a shorter --duration or another --work" >&2
    exit 2
  fi
  empty_trash
  # tmpfs frees inodes at once: nothing to wait for there.
  if [ -f "$TRASH_STAMP" ] && [ "$(stat -f -c %T "$WORK")" != tmpfs ]; then
    wait_s=$((370 - ($(date +%s) - $(cat "$TRASH_STAMP"))))
    if [ "$wait_s" -gt 0 ]; then
      log "waiting ${wait_s} s: files were deleted less than 6 minutes ago, and ext4 without a journal pays for" \
        "recently freed inodes on every file created (see the trash note above)"
      sleep "$wait_s"
    fi
  fi
fi

# --- rsync daemon ------------------------------------------------------------------------------------------------
PASS=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
umask 077
printf '%s\n' "$PASS" >"$RUN/bench.pass"
printf 'bench:%s\n' "$PASS" >"$RUN/rsyncd.secrets"
umask 022
rm -f "$RUN/rsyncd.pid"
cat >"$RUN/rsyncd.conf" <<CONF
pid file = $RUN/rsyncd.pid
lock file = $RUN/rsyncd.lock
log file = $RUN/rsyncd.log
address = 127.0.0.1
port = $PORT
use chroot = no
uid = root
gid = root
max connections = 0
# as fleetsync provisions its daemons: without it every session waits on delayed ACKs (~40 ms, twice)
socket options = TCP_NODELAY
[backup]
  path = $DST
  read only = no
  auth users = bench
  secrets file = $RUN/rsyncd.secrets
  hosts allow = 127.0.0.1
[setup]
  path = $WORK/setup-dst
  read only = no
  auth users = bench
  secrets file = $RUN/rsyncd.secrets
  hosts allow = 127.0.0.1
CONF
mkdir -p "$WORK/setup-dst"
# the daemon uses PORT, fleetsync-watch's health endpoint PORT+1 (runs) and PORT+2 (watch setup)
for p in "$PORT" $((PORT + 1)) $((PORT + 2)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "run.sh: port $p is in use; pick another base with --port" >&2
    exit 2
  fi
done
spawn rsync --daemon --no-detach --config="$RUN/rsyncd.conf"
DAEMON=$SPAWNED
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done
TARGET="rsync://bench@127.0.0.1:$PORT/backup"
rsync -q --password-file="$RUN/bench.pass" --contimeout=5 "$TARGET/" >/dev/null ||
  { echo "run.sh: rsync daemon on port $PORT does not answer" >&2; exit 1; }
log "rsync daemon pid $DAEMON on 127.0.0.1:$PORT"

# --- reset: backup == source, no written files, empty write dirs on both sides -----------------------------------
# A full local `rsync -a --delete` the first time and whenever the last check found differences; otherwise the
# pre-existing part is known equal and only w/ (and the top directory's attributes) are synced.
FULL_RESET=1
reset_trees() {
  trash "$SRC/w" "$DST/w"
  mkdir -p "$SRC/w"
  for d in $(seq 0 $((NDIRS - 1))); do mkdir "$(printf '%s/w/d%02d' "$SRC" "$d")"; done
  if [ "$FULL_RESET" = 1 ]; then
    rsync -a --delete "$SRC/" "$DST/"
    FULL_RESET=0
  else
    rsync -a --delete "$SRC/w/" "$DST/w/"
    rsync -dlptgoD "$SRC/" "$DST/"
  fi
}
# Waits (at most 5 minutes) until the daemon serves no connection: a tool stopped during a full sync of the
# whole tree leaves the daemon's side of it reading the backup for a while, and the next run would pay for it.
wait_daemon_idle() {
  local waited=0
  while pgrep -P "$DAEMON" >/dev/null 2>&1 && [ "$waited" -lt 300 ]; do
    [ "$waited" = 0 ] && log "waiting for the daemon's connections from the previous run to end"
    sleep 1
    waited=$((waited + 1))
  done
}
# count of paths that differ in content, presence or type between source and backup.
# full: checksums of every file (reads the whole 1M-file tree: a minute or two); quick: checksums of w/ only,
# size+mtime for the pre-existing part (which the tools only had to leave alone).
count_diffs() {
  if [ "$CHECK" = full ]; then
    rsync -rcn --delete --itemize-changes "$SRC/" "$DST/" | tee "$1" | wc -l
  else
    {
      rsync -rcn --delete --itemize-changes "$SRC/w/" "$DST/w/" | sed 's|^\([^ ]* *\)|\1w/|'
      rsync -rn --delete --itemize-changes --exclude=/w "$SRC/" "$DST/"
    } | tee "$1" | wc -l
  fi
}
src_dirs() { find "$SRC" -type d | wc -l; }

# --- tools -------------------------------------------------------------------------------------------------------
# Each start_* spawns the tool and sets TOOL_PID; wait_ready_* returns once the tool watches the tree and its
# initial sync is done.
# A restart (RESTARTING=1) keeps the state directory: the journal is what makes a SIGKILL lose nothing.
start_fleetsync() {
  HPORT=$((PORT + 1))
  [ "${RESTARTING:-0}" = 1 ] || rm -rf "$RUN/fsw-state"
  spawn "$FSW" run --source "$SRC" --target "$TARGET" --password-file "$RUN/bench.pass" \
    --health-port "$HPORT" --state-dir "$RUN/fsw-state" ${FSW_BACKEND:+--backend "$FSW_BACKEND"} 2>>"$1/tool.log" >&2
  TOOL_PID=$SPAWNED
}
start_fleetsync_inotify() { FSW_BACKEND=inotify start_fleetsync "$@"; }
wait_ready_fleetsync_inotify() { wait_ready_fleetsync "$@"; }
wait_ready_fleetsync() {
  local js
  for _ in $(seq 6000); do
    kill -0 "$TOOL_PID" 2>/dev/null || { echo "fleetsync-watch exited; see $1/tool.log" >&2; return 1; }
    js=$(curl -sf "http://127.0.0.1:$HPORT/status" 2>/dev/null) || { sleep 0.1; continue; }
    if [ "$(jq -r '.state == "watching" and .queueDepth == 0 and .inFlight == 0' <<<"$js")" = true ]; then
      echo "$js" >"$1/status-ready.json"
      return 0
    fi
    sleep 0.1
  done
  return 1
}
start_lsyncd() {
  cat >"$1/lsyncd.conf" <<CONF
settings { logfile = "$1/tool.log", statusFile = "$1/lsyncd.status", nodaemon = true, insist = false }
sync {
  default.rsync,
  source = "$SRC/",
  target = "$TARGET/",
  delay = 1,
  rsync = { archive = true, password_file = "$RUN/bench.pass", _extra = { "--contimeout=10", "--timeout=60" } },
}
CONF
  spawn lsyncd "$1/lsyncd.conf" 2>"$1/tool.stderr" >&2
  TOOL_PID=$SPAWNED
}
wait_ready_lsyncd() {
  for _ in $(seq 6000); do
    kill -0 "$TOOL_PID" 2>/dev/null || { echo "lsyncd exited; see $1/tool.log" >&2; return 1; }
    grep -q 'Startup of .* finished' "$1/tool.log" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
start_inotifywait() {
  # the classic loop, verbatim apart from paths: one full-tree rsync per event line
  # shellcheck disable=SC2016 # $1..$3 are expanded by the inner bash
  spawn bash -c 'inotifywait -mrq -e create,close_write,delete,moved_to "$1" |
    while read -r l; do rsync -az --delete --password-file="$2" "$1/" "$3/"; done' loop "$SRC" "$RUN/bench.pass" \
    "$TARGET" 2>"$1/tool.log" >&2
  TOOL_PID=$SPAWNED
}
wait_ready_inotifywait() {
  local want
  want=$(src_dirs)
  for _ in $(seq 6000); do
    [ "$($PY "$HERE/bench.py" inotify-watches "$TOOL_PID")" -ge "$want" ] && return 0
    sleep 0.1
  done
  return 1
}

# --- one run: tool x rate ----------------------------------------------------------------------------------------
RESULTS=$OUT/results.jsonl
run_one() {
  local tool=$1 rate=$2 dur=$DURATION note="" fn=${1//-/_}
  if [[ "$tool" != fleetsync* ]] && [ "$SLOW_DURATION" -lt "$DURATION" ]; then
    dur=$SLOW_DURATION
    note="load ${dur} s instead of ${DURATION} s (falls behind on big trees)"
  fi
  local dir=$OUT/$tool-$rate
  mkdir -p "$dir"
  log "[$tool @ $rate/s] reset backup to the source state"
  wait_daemon_idle
  reset_trees
  log "[$tool @ $rate/s] start, wait for watches + initial sync"
  local t0 t1
  t0=$(now_ns)
  "start_$fn" "$dir"
  # sampled from the start, so that the peak includes the initial sync
  local sampler arrive
  spawn "$PY" "$HERE/bench.py" sample "$TOOL_PID" "$dir/rss.json"
  sampler=$SPAWNED
  if ! "wait_ready_$fn" "$dir"; then
    log "[$tool] did not become ready; skipped (see $dir)"
    stop_group "$TOOL_PID"
    stop_group "$sampler"
    return 0
  fi
  t1=$(now_ns)
  local startup
  startup=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  local loadavg
  loadavg=$(cut -d' ' -f1 /proc/loadavg)
  log "[$tool @ $rate/s] ready after ${startup} s; load ${rate}/s for ${dur} s (load average $loadavg)"
  # The previous run's gigabytes of dirty pages are written back first, so this run does not pay for them.
  sync
  spawn nice -n -10 "$BIN/arrive" "$DST/w" "$NDIRS" "$dir/arrived.count" "$dir/arrivals.txt"
  arrive=$SPAWNED
  sleep 0.2
  # in the background + wait, so that Ctrl-C/TERM reach the trap at once (cleanup stops the writer too)
  spawn nice -n -10 "$BIN/writer" "$SRC/w" "$rate" "$dur" "$NDIRS" "$dir/writes.txt" >"$dir/writer.txt"
  local writer=$SPAWNED
  if [ "$RESTART_AT" -gt 0 ]; then
    sleep "$RESTART_AT"
    log "[$tool @ $rate/s] SIGKILL at ${RESTART_AT} s into the load, started again at once"
    kill -KILL -- "-$TOOL_PID" 2>/dev/null || true
    stop_group "$sampler"
    RESTARTING=1 "start_$fn" "$dir"
    spawn "$PY" "$HERE/bench.py" sample "$TOOL_PID" "$dir/rss.json"
    sampler=$SPAWNED
    note="${note:+$note; }SIGKILLed ${RESTART_AT} s into the load and restarted at once (RSS after the restart)"
  fi
  wait "$writer" || { log "[$tool @ $rate/s] writer failed"; exit 1; }
  local total
  total=$(awk '{ print $2 }' "$dir/writer.txt")
  log "[$tool @ $rate/s] $(cat "$dir/writer.txt"); waiting for the backup (cap ${DRAIN_CAP} s)"
  local deadline n=0
  deadline=$(($(now_ns) + DRAIN_CAP * 1000000000))
  while [ "$(now_ns)" -lt "$deadline" ]; do
    n=$(awk '{ print $1 }' "$dir/arrived.count" 2>/dev/null || echo 0)
    [ "${n:-0}" -ge "$total" ] && break
    sleep 0.2
  done
  log "[$tool @ $rate/s] arrived $n of $total; stopping"
  if ! kill -0 "$TOOL_PID" 2>/dev/null; then
    note="${note:+$note; }the tool exited during the run (see $dir)"
    log "[$tool @ $rate/s] $tool had exited"
  fi
  if [[ "$tool" == fleetsync* ]]; then curl -sf "http://127.0.0.1:$HPORT/status" >"$dir/status-end.json" || true; fi
  stop_group "$TOOL_PID"
  stop_group "$sampler"
  stop_group "$arrive"
  log "[$tool @ $rate/s] zero-difference check"
  local diffs overflows
  diffs=$(count_diffs "$dir/diffs.txt")
  [ "$diffs" = 0 ] || FULL_RESET=1
  overflows=$(awk '{ print $2 }' "$dir/arrived.count")
  $PY "$HERE/bench.py" analyze --tool "$tool" --label "$tool" --rate "$rate" --duration "$dur" \
    --writes "$dir/writes.txt" --arrivals "$dir/arrivals.txt" --rss "$dir/rss.json" --diffs "$diffs" \
    --overflows "$overflows" --drain-cap "$DRAIN_CAP" --startup "$startup" --loadavg "$loadavg" --note "$note" | tee -a "$RESULTS" >&2
}

# --- watch setup: 100,000 directories -----------------------------------------------------------------------------
SETUP_OUT=$OUT/setup.jsonl
run_setup() {
  local dirs=$1
  local top=100 sub=$((dirs / 100 - 1))
  local tree=$WORK/dirs-$dirs
  if [ ! -d "$tree" ]; then
    log "creating $dirs directories in $tree"
    "$BIN/gen" -d "$tree.tmp" "$top" "$sub"
    mv "$tree.tmp" "$tree"
  fi
  rsync -a --delete "$tree/" "$WORK/setup-dst/"
  local want=$((top * (sub + 1) + 1))
  log "watch setup, $want directories: inotifywait -r"
  for _ in 1 2 3; do $PY "$HERE/bench.py" setup-inotifywait "$tree" "$want" | tee -a "$SETUP_OUT" >&2; done
  local backend
  for backend in fanotify inotify; do
    [[ ",$TOOLS," == *,fleetsync,* || ",$TOOLS," == *,fleetsync-inotify,* ]] || continue
    log "watch setup, $want directories: fleetsync-watch --backend $backend"
    for _ in 1 2 3; do
      rm -rf "$RUN/fsw-setup-state"
      $PY "$HERE/bench.py" setup-fleetsync "$want" "http://127.0.0.1:$((PORT + 2))/status" -- \
        "$FSW" run --source "$tree" --target "rsync://bench@127.0.0.1:$PORT/setup" --backend "$backend" \
        --password-file "$RUN/bench.pass" --health-port $((PORT + 2)) --state-dir "$RUN/fsw-setup-state" |
        tee -a "$SETUP_OUT" >&2
    done
  done
}

# --- first change: from a tool's start to the first change that reaches the backup ------------------------------
FIRST_OUT=$OUT/first-change.jsonl
run_first_change() {
  local tool=$1 fn=${1//-/_}
  local dir=$OUT/$tool-first
  mkdir -p "$dir"
  reset_trees
  log "[$tool] first change: a file every 50 ms from the tool's start until one is on the backup"
  local t0 t1="" i=0
  t0=$(now_ns)
  "start_$fn" "$dir"
  while [ $(($(now_ns) - t0)) -lt 900000000000 ]; do
    printf 'probe %d\n' "$i" >"$SRC/w/d00/first-$i"
    i=$((i + 1))
    if compgen -G "$DST/w/d00/first-*" >/dev/null; then
      t1=$(now_ns)
      break
    fi
    kill -0 "$TOOL_PID" 2>/dev/null || break
    sleep 0.05
  done
  stop_group "$TOOL_PID"
  awk -v tool="$tool" -v a="$t0" -v b="$t1" -v files="$FILES" 'BEGIN {
    printf "{\"tool\": \"%s\", \"files\": %d, \"first_change_s\": %s}\n", tool, files, b == "" ? "null" : sprintf("%.3f", (b - a) / 1e9)
  }' | tee -a "$FIRST_OUT" >&2
}

# --- ceiling: what any rsync-based replicator can sustain on this machine -------------------------------------
# The writer and one rsync run over everything it wrote, each alone, measured as machine-wide busy CPU (writeback
# included, by a sync inside each phase). A tool that replicates each written file through rsync and a daemon on
# this machine needs both per file, so cores / (writer + rsync) per file bounds the sustainable rate, before any
# tool's own overhead and with the best case of one rsync run for all files.
CEILING_OUT=$OUT/ceiling.txt
busy_jiffies() { awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
run_ceiling() {
  local n=$CEILING w=$WORK/ceiling
  trash "$w" "$DST/ceiling"
  mkdir -p "$w" "$DST/ceiling"
  for d in $(seq 0 $((NDIRS - 1))); do mkdir "$(printf '%s/d%02d' "$w" "$d")"; done
  sync
  log "ceiling: $n files"
  local b0 b1 b2 b3 hz
  hz=$(getconf CLK_TCK)
  b0=$(busy_jiffies)
  "$BIN/writer" "$w" 1000000 "$(awk -v n="$n" 'BEGIN { print n / 1000000 }')" "$NDIRS" /dev/null >/dev/null
  sync
  b1=$(busy_jiffies)
  (cd "$w" && find . -type f -printf '%P\0') >"$RUN/ceiling.list"
  b2=$(busy_jiffies)
  rsync -a --files-from="$RUN/ceiling.list" --from0 --sockopts=TCP_NODELAY --password-file="$RUN/bench.pass" \
    "$w/" "$TARGET/ceiling/"
  sync
  b3=$(busy_jiffies)
  local arrived
  arrived=$(find "$DST/ceiling" -type f | wc -l)
  trash "$w" "$DST/ceiling"
  rm -f "$RUN/ceiling.list"
  awk -v n="$n" -v got="$arrived" -v hz="$hz" -v cores="$(nproc)" -v w=$((b1 - b0)) -v r=$((b3 - b2)) 'BEGIN {
    wus = w / hz * 1e6 / n; rus = r / hz * 1e6 / n
    printf "ceiling (%d files, %d copied): writer %.0f us/file, one rsync run %.0f us/file (machine CPU, each alone)", n, got, wus, rus
    printf " -> at most %.0f files/s on %d cores for any rsync-based replicator, before its own overhead\n", cores * 1e6 / (wus + rus), cores
  }' | tee "$CEILING_OUT" >&2
}

# --- main ---------------------------------------------------------------------------------------------------------
{
  echo "# fleetsync watcher benchmark $STAMP"
  echo
  echo "command: bench/watch/run.sh --files $FILES --rate $RATES --duration $DURATION --tools $TOOLS" \
    "--slow-duration $SLOW_DURATION --drain-cap $DRAIN_CAP --setup-dirs $SETUP_DIRS --ceiling $CEILING --check $CHECK$([ "$RESTART_AT" -gt 0 ] && echo " --restart-at $RESTART_AT")$([ "$FIRST_CHANGE" = 1 ] && echo " --first-change")$([ "$SETUP_ONLY" = 1 ] && echo " --setup-only")"
  echo "machine: nproc $(nproc), $(uname -sr), $(rsync --version | head -1 | sed 's/  */ /g'), $(lsyncd --version 2>&1 | head -1 | sed 's/Version: /lsyncd /'), $(inotifywait --help 2>&1 | head -1), load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "tree: $FILES pre-existing files in $(((FILES + PER_DIR - 1) / PER_DIR)) dirs; writes of 10-100 KB into $NDIRS dirs; rsync daemon on 127.0.0.1"
  echo "inotify: max_user_watches $(cat /proc/sys/fs/inotify/max_user_watches), max_queued_events $(cat /proc/sys/fs/inotify/max_queued_events)"
  echo "fanotify: max_queued_events $(cat /proc/sys/fs/fanotify/max_queued_events 2>/dev/null || echo none)"
  if [[ ",$TOOLS," == *,fleetsync* ]]; then
    echo "fleetsync-watch: $FSW, built $(date -u -r "$FSW" +%FT%TZ); worktree at $(git -C "$REPO" log -1 --format='%h %s' 2>/dev/null || echo '?')"
  else
    echo "fleetsync-watch: not run ($FSW not built)"
  fi
} >"$OUT/header.txt"
cat "$OUT/header.txt" >&2
for n in "${setup_sizes[@]}"; do [ "$n" -gt 0 ] && run_setup "$n"; done
[ "$SETUP_ONLY" = 0 ] && [ "$CEILING" -gt 0 ] && run_ceiling
[ "$SETUP_ONLY" = 1 ] && RATES=""
IFS=, read -r -a tool_list <<<"$TOOLS"
if [ "$SETUP_ONLY" = 0 ] && [ "$FIRST_CHANGE" = 1 ]; then
  for tool in "${tool_list[@]}"; do run_first_change "$tool"; done
fi
IFS=, read -r -a rate_list <<<"$RATES"
for rate in "${rate_list[@]}"; do
  for tool in "${tool_list[@]}"; do run_one "$tool" "$rate"; done
done
[ "$SETUP_ONLY" = 1 ] || reset_trees
{
  cat "$OUT/header.txt"
  echo
  [ -s "$RESULTS" ] && $PY "$HERE/bench.py" table "$RESULTS"
  if [ -s "$CEILING_OUT" ]; then
    echo
    cat "$CEILING_OUT"
  fi
  if [ -s "$FIRST_OUT" ]; then
    echo
    echo "first change on the backup, from the tool's start ($FILES files in the tree):"
    jq -r '"- \(.tool): \(if .first_change_s then "\(.first_change_s) s" else "none within 900 s" end)"' "$FIRST_OUT"
  fi
  if [ -s "$SETUP_OUT" ]; then
    echo
    echo "watch setup (directories + root; kernel: unreclaimable slab grown meanwhile, approximate):"
    jq -r '"- \(.dirs) dirs, \(.tool): \(if .seconds then "\(.seconds * 1000 | floor) ms" else "not reached" end), \(.watches) watches, RSS \(.rss_kb / 1024 | floor) MB, kernel \(.kernel_kb / 1024 | floor) MB\(if .watchSetupSeconds then ", watchSetupSeconds \(.watchSetupSeconds)" else "" end)"' "$SETUP_OUT"
  fi
  echo
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/report.md"
log "results in $OUT"

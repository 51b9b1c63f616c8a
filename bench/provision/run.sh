#!/usr/bin/env bash
# Benchmark: fleetsync up / up (no change) / status / heal / supervise pass / down on a 40-node fleet (20 sources with 2 directories
# each, 20 backup hosts), side by side with the same steps done by a plain OpenSSH loop in parallel
# (one ssh session per host, 40 at once: the same files, the same daemons, no checks). fleetsync also works on
# every host at once (`--forks` the node count; its default, 32, would make a second wave).
#
#   bench/provision/run.sh [--sources 20] [--reps 3]
#
# Needs root (network namespaces). Not a test: prints wall times; record them in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
sources=20
reps=3
while [ $# -gt 0 ]; do
  case "$1" in
    --sources) sources=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    *) echo "usage: $0 [--sources N] [--reps N]" >&2; exit 64 ;;
  esac
done
nodes=$((sources * 2))
fleet_id=4
state=/tmp/fleetsync-testfleet-$fleet_id
work=$(mktemp -d /tmp/fleetsync-bench-provision.XXXXXX)

if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then export PATH="/opt/swift/usr/bin:$PATH"; fi
scripts/deps
swift build -c release --product fleetsync >/dev/null
swift build -c release --product fleetsync-watch >/dev/null
bin=$(swift build -c release --show-bin-path)

saved_sysctl=$(for k in max_user_watches max_user_instances max_queued_events; do cat /proc/sys/fs/inotify/$k; done)
cleanup() {
  set +e
  scripts/testfleet --id $fleet_id down >/dev/null 2>&1
  i=0
  for k in max_user_watches max_user_instances max_queued_events; do
    i=$((i + 1)); echo "$saved_sysctl" | sed -n "${i}p" >/proc/sys/fs/inotify/$k
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "== bringing up $nodes nodes"
scripts/testfleet --id $fleet_id up $nodes >/dev/null
mapfile -t addrs < <(python3 -c 'import json,sys; [print(n["address"]) for n in json.load(open(sys.argv[1]))["nodes"]]' "$state/fleet.json")
for i in $(seq 1 "$sources"); do
  scripts/testfleet --id $fleet_id exec "$i" -- sh -c 'mkdir -p /srv/data/a /srv/data/b && echo seed >/srv/data/a/seed'
done

python3 - "$work/fleet.yaml" "$state" "$sources" "${addrs[@]}" <<'PY'
import sys
out, state, n = sys.argv[1], sys.argv[2], int(sys.argv[3]); addrs = sys.argv[4:]
y = [f"defaults:\n  ssh:\n    identity: {state}/id_ed25519\n    known_hosts: {state}/known_hosts\n  watch:\n    batch_delay_ms: 100",
     "backups:"]
for i in range(n):
    y.append(f"  bk{i+1}:\n    address: {addrs[n+i]}\n    daemons:\n      main:\n        modules:\n"
             f"          s{i+1}-a: /srv/backup/s{i+1}/a\n          s{i+1}-b: /srv/backup/s{i+1}/b")
y.append("sources:")
for i in range(n):
    y.append(f"  s{i+1}:\n    address: {addrs[i]}\n    directories:\n"
             f"      a: {{ path: /srv/data/a, to: [bk{i+1}/s{i+1}-a] }}\n"
             f"      b: {{ path: /srv/data/b, to: [bk{i+1}/s{i+1}-b] }}")
open(out, "w").write("\n".join(y) + "\n")
PY

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }

# The OpenSSH loop: per host one ssh session doing the same writes and starts, 40 in parallel.
ssh_opts=(-i "$state/id_ed25519" -o IdentitiesOnly=yes -o UserKnownHostsFile="$state/known_hosts"
  -o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR)
export SSH_OPTS="${ssh_opts[*]}" BIN="$bin" SOURCES=$sources
openssh_step() { # step index
  local step=$1 i=$2 addr=$3
  local idx=$(( (i - 1) % SOURCES + 1 ))
  case "$step" in
    up)
      if [ "$i" -gt "$SOURCES" ]; then
        # shellcheck disable=SC2086
        ssh $SSH_OPTS "root@$addr" "set -e; mkdir -p /etc/fleetsync/rsyncd /run/fleetsync /var/log/fleetsync /srv/backup/s$idx/a /srv/backup/s$idx/b
chown nobody:nogroup /srv/backup/s$idx/a /srv/backup/s$idx/b
cat >/etc/fleetsync/rsyncd/main.conf <<EOC
port = 8730
pid file = /run/fleetsync/rsyncd-main.pid
lock file = /run/fleetsync/rsyncd-main.lock
log file = /var/log/fleetsync/rsyncd-main.log
use chroot = yes
uid = nobody
gid = nogroup
read only = no
[s$idx-a]
  path = /srv/backup/s$idx/a
  auth users = fs-s$idx-a
  secrets file = /etc/fleetsync/rsyncd/main.secrets
[s$idx-b]
  path = /srv/backup/s$idx/b
  auth users = fs-s$idx-b
  secrets file = /etc/fleetsync/rsyncd/main.secrets
EOC
(umask 077; printf 'fs-s$idx-a:benchsecret\nfs-s$idx-b:benchsecret\n' >/etc/fleetsync/rsyncd/main.secrets)
if [ -f /run/fleetsync/rsyncd-main.pid ]; then kill \$(cat /run/fleetsync/rsyncd-main.pid) 2>/dev/null; sleep 0.2; rm -f /run/fleetsync/rsyncd-main.pid; fi
rsync --daemon --config=/etc/fleetsync/rsyncd/main.conf"
      else
        local bk=${ADDRS[$((SOURCES + idx - 1))]}
        # shellcheck disable=SC2086
        ssh $SSH_OPTS "root@$addr" "set -e; mkdir -p /etc/fleetsync/watch /var/lib/fleetsync/bin /var/lib/fleetsync/watch /run/fleetsync /var/log/fleetsync
cat >/var/lib/fleetsync/bin/fleetsync-watch.tmp && chmod 755 /var/lib/fleetsync/bin/fleetsync-watch.tmp && mv /var/lib/fleetsync/bin/fleetsync-watch.tmp /var/lib/fleetsync/bin/fleetsync-watch
printf 'fs.inotify.max_user_watches = 1048576\n' >/etc/sysctl.d/60-fleetsync.conf; sysctl -q -p /etc/sysctl.d/60-fleetsync.conf
for d in a b; do
  (umask 077; echo benchsecret >/etc/fleetsync/watch/\$d.password)
  printf 'source = /srv/data/%s\ntarget = rsync://fs-s$idx-%s@$bk:8730/s$idx-%s\npassword-file = /etc/fleetsync/watch/%s.password\nstate-dir = /var/lib/fleetsync/watch/%s\nhealth-port = 970%s\n' \$d \$d \$d \$d \$d \$([ \$d = a ] && echo 0 || echo 1) >/etc/fleetsync/watch/\$d.conf
  [ -f /run/fleetsync/watch-\$d.pid ] && kill \$(cat /run/fleetsync/watch-\$d.pid) 2>/dev/null && sleep 0.2
  setsid /var/lib/fleetsync/bin/fleetsync-watch run --config /etc/fleetsync/watch/\$d.conf </dev/null >>/var/log/fleetsync/watch-\$d.log 2>&1 &
  echo \$! >/run/fleetsync/watch-\$d.pid
done" <"$BIN/fleetsync-watch"
      fi ;;
    status)
      # shellcheck disable=SC2086
      ssh $SSH_OPTS ${SSH_CM:-} "root@$addr" 'for f in /run/fleetsync/*.pid; do kill -0 "$(cat "$f")" && echo "$f up"; done' >/dev/null ;;
    down)
      # shellcheck disable=SC2086
      ssh $SSH_OPTS "root@$addr" 'for f in /run/fleetsync/*.pid; do kill "$(cat "$f")" 2>/dev/null; done; sleep 0.2; rm -rf /etc/fleetsync /var/lib/fleetsync /run/fleetsync /var/log/fleetsync /etc/sysctl.d/60-fleetsync.conf' ;;
  esac
}
export -f openssh_step
export ADDRS_LIST="${addrs[*]}"
run_openssh() { # step
  local step=$1
  for i in $(seq 1 "$nodes"); do echo "$step $i ${addrs[$((i - 1))]}"; done |
    xargs -P "$nodes" -n 3 bash -c 'ADDRS=($ADDRS_LIST); openssh_step "$0" "$1" "$2"'
}

declare -A fs os
for rep in $(seq 1 "$reps"); do
  echo "== repetition $rep"
  t0=$(now); "$bin/fleetsync" up -i "$work/fleet.yaml" --forks "$nodes" --watch-binary "$bin/fleetsync-watch" >"$work/up.log" 2>&1 || { cat "$work/up.log"; exit 1; }; t1=$(now)
  fs[up]+=" $(elapsed "$t0" "$t1")"
  t0=$(now); "$bin/fleetsync" up -i "$work/fleet.yaml" --forks "$nodes" --watch-binary "$bin/fleetsync-watch" >"$work/up2.log" 2>&1 || { cat "$work/up2.log"; exit 1; }; t1=$(now)
  fs[again]+=" $(elapsed "$t0" "$t1")"
  grep -q "changed=0" "$work/up2.log" || { echo "second up changed something:"; cat "$work/up2.log"; exit 1; }
  t0=$(now); "$bin/fleetsync" status -i "$work/fleet.yaml" --forks "$nodes" >"$work/status.log" 2>&1 || true; t1=$(now)
  fs[status]+=" $(elapsed "$t0" "$t1")"
  # One `heal` pass with nothing to repair: what each `supervise` pass costs on a healthy fleet.
  t0=$(now); "$bin/fleetsync" heal -i "$work/fleet.yaml" --forks "$nodes" >"$work/heal.log" 2>&1 || true; t1=$(now)
  fs[heal]+=" $(elapsed "$t0" "$t1")"
  grep -q "heal: ok=$nodes" "$work/heal.log" || { echo "heal found something to do:"; cat "$work/heal.log"; exit 1; }
  # `supervise` keeps each host's connection from pass to pass: the median of its passes 2 to 5
  # (the first one connects), as its /status reports them.
  "$bin/fleetsync" supervise -i "$work/fleet.yaml" --forks "$nodes" --interval 1 --metrics-port 19479 >"$work/supervise.log" 2>&1 &
  sup=$!
  pass=$(python3 - <<'PY'
import json, time, urllib.request
seen, end = {}, time.time() + 180
while len(seen) < 5 and time.time() < end:
    try:
        d = json.load(urllib.request.urlopen("http://127.0.0.1:19479/status", timeout=2))
    except Exception:
        d = None
    if d:
        seen[d["ended"]] = (d["seconds"], all(h["outcome"] == "ok" for h in d["hosts"]))
    time.sleep(0.1)
later = [v for _, v in sorted(seen.items())][1:]
if len(later) < 4 or not all(ok for _, ok in later):
    print("bad", seen)
else:
    print(f"{sorted(s for s, _ in later)[len(later) // 2]:.2f}")
PY
)
  kill -TERM "$sup"; wait "$sup" || true
  case "$pass" in bad*) echo "supervise: $pass"; cat "$work/supervise.log"; exit 1 ;; esac
  fs[supervise]+=" $pass"
  t0=$(now); "$bin/fleetsync" down -i "$work/fleet.yaml" --forks "$nodes" >"$work/down.log" 2>&1 || { cat "$work/down.log"; exit 1; }; t1=$(now)
  fs[down]+=" $(elapsed "$t0" "$t1")"

  t0=$(now); run_openssh up; t1=$(now); os[up]+=" $(elapsed "$t0" "$t1")"
  t0=$(now); run_openssh up 2>/dev/null || true; t1=$(now); os[again]+=" $(elapsed "$t0" "$t1")"
  t0=$(now); run_openssh status || true; t1=$(now); os[status]+=" $(elapsed "$t0" "$t1")"
  os[heal]+=" ${os[status]##* }"  # a loop's check is its status pass; it cannot tell a hung process
  # The loop's answer to kept connections: OpenSSH's ControlMaster, opened by a first pass.
  export SSH_CM="-o ControlMaster=auto -o ControlPath=$work/cm-%h -o ControlPersist=300"
  run_openssh status || true
  t0=$(now); run_openssh status || true; t1=$(now); os[supervise]+=" $(elapsed "$t0" "$t1")"
  for a in "${addrs[@]}"; do ssh -o ControlPath="$work/cm-%h" -O exit "root@$a" 2>/dev/null || true; done
  unset SSH_CM
  t0=$(now); run_openssh down; t1=$(now); os[down]+=" $(elapsed "$t0" "$t1")"
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "fleet: $sources sources x 2 directories + $sources backup hosts ($nodes nodes), $(nproc) cores, median of $reps"
printf '%-22s %12s %12s %8s\n' step fleetsync openssh-loop ratio
for step in up again status heal supervise down; do
  f=$(echo "${fs[$step]}" | median); o=$(echo "${os[$step]}" | median)
  label=$step; [ "$step" = up ] && label="up from scratch"; [ "$step" = again ] && label="up, no change"
  [ "$step" = heal ] && label="heal (one pass)"
  [ "$step" = supervise ] && label="supervise pass"
  printf '%-22s %11ss %11ss %8s\n' "$label" "$f" "$o" "$(python3 -c "print(f'{$f/$o:.2f}x')")"
done
echo "(openssh-loop 'up, no change' re-does every write and restart: a plain loop cannot tell what changed)"
echo "(supervise pass: connections kept from pass to pass; the loop's is its status pass over ControlMaster connections)"

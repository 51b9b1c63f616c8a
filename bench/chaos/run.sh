#!/usr/bin/env bash
# Chaos run (issue 11): 3 sources with 2 protected directories each and 2 backup hosts, writing
# --rate files/s (1,000) for --seconds (60) into the protected directories while faults are injected
# over and over: watchers SIGKILLed and SIGSTOPped, a backup's rsync daemon stopped, a source and a
# backup cut off the network for 10 s, nodes "rebooted" (every fleetsync process killed, /run emptied,
# then the boot script run, as a boot would). `fleetsync supervise` runs throughout.
#
# Afterwards it waits until `fleetsync status` says every instance is healthy with nothing queued, runs
# `fleetsync verify`, and prints the counts: faults injected, restarts (all, and those by supervise),
# files written, files differing, the worst replication lag `status` saw.
#
#   bench/chaos/run.sh [--rate 1000] [--seconds 60] [--fault-every 4]
#
# Needs root (network namespaces; bk1 and s1 boot systemd). Not a test: record the result in
# docs/reliability.md. Exit status 0 only when verify found no difference and every instance is healthy.
set -euo pipefail
cd "$(dirname "$0")/../.."
rate=1000
seconds=60
fault_every=4
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --fault-every) fault_every=$2; shift 2 ;;
    *) echo "usage: $0 [--rate N] [--seconds N] [--fault-every N]" >&2; exit 64 ;;
  esac
done
fleet_id=4
state=/tmp/fleetsync-testfleet-$fleet_id
work=$(mktemp -d /tmp/fleetsync-chaos.XXXXXX)
chmod 755 "$work"

if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then export PATH="/opt/swift/usr/bin:$PATH"; fi
scripts/deps
swift build -c release --product fleetsync >/dev/null
swift build -c release --product fleetsync-watch >/dev/null
bin=$(swift build -c release --show-bin-path)

saved_sysctl=$(for k in max_user_watches max_user_instances max_queued_events; do cat /proc/sys/fs/inotify/$k; done)
cleanup() {
  set +e
  [ -n "${supervise_pid:-}" ] && kill "$supervise_pid" 2>/dev/null
  [ -n "${watch_pid:-}" ] && kill "$watch_pid" 2>/dev/null
  scripts/testfleet --id $fleet_id down >/dev/null 2>&1
  i=0
  for k in max_user_watches max_user_instances max_queued_events; do
    i=$((i + 1)); echo "$saved_sysctl" | sed -n "${i}p" >/proc/sys/fs/inotify/$k
  done
  if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT INT TERM

systemd=2
[ -x /lib/systemd/systemd ] || systemd=0
echo "== bringing up 5 nodes ($systemd with systemd)"
scripts/testfleet --id $fleet_id up 5 --systemd $systemd >/dev/null
mapfile -t addrs < <(python3 -c 'import json,sys; [print(n["address"]) for n in json.load(open(sys.argv[1]))["nodes"]]' "$state/fleet.json")
for i in 2 3 4; do scripts/testfleet --id $fleet_id exec "$i" -- mkdir -p /srv/data/a /srv/data/b; done

# Nodes: 1 bk1 (systemd), 2 s1 (systemd), 3 s2, 4 s3, 5 bk2. s1 and s2 back up to bk1, s3 to bk2.
cat >"$work/fleet.yaml" <<YAML
defaults:
  ssh:
    identity: $state/id_ed25519
    known_hosts: $state/known_hosts
    connect_timeout: 10
backups:
  bk1:
    address: ${addrs[0]}
    daemons:
      main:
        modules: { s1-a: /srv/backup/s1/a, s1-b: /srv/backup/s1/b, s2-a: /srv/backup/s2/a, s2-b: /srv/backup/s2/b }
  bk2:
    address: ${addrs[4]}
    daemons:
      main:
        modules: { s3-a: /srv/backup/s3/a, s3-b: /srv/backup/s3/b }
sources:
  s1:
    address: ${addrs[1]}
    directories:
      a: { path: /srv/data/a, to: [bk1/s1-a] }
      b: { path: /srv/data/b, to: [bk1/s1-b] }
  s2:
    address: ${addrs[2]}
    directories:
      a: { path: /srv/data/a, to: [bk1/s2-a] }
      b: { path: /srv/data/b, to: [bk1/s2-b] }
  s3:
    address: ${addrs[3]}
    directories:
      a: { path: /srv/data/a, to: [bk2/s3-a] }
      b: { path: /srv/data/b, to: [bk2/s3-b] }
YAML
fleetsync() { "$bin/fleetsync" "$@" -i "$work/fleet.yaml"; }

echo "== fleetsync up"
fleetsync up >"$work/up.log" 2>&1 || { cat "$work/up.log"; exit 1; }

metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The binary itself in the background (not the function, whose subshell would outlive a kill).
"$bin/fleetsync" supervise -i "$work/fleet.yaml" --interval 2 --deadline 30 --metrics-port "$metrics_port" \
  >"$work/supervise.log" 2>&1 &
supervise_pid=$!
"$bin/fleetsync" status -i "$work/fleet.yaml" --watch --json --interval 1 >"$work/readings.jsonl" 2>/dev/null &
watch_pid=$!

echo "== writing $rate files/s for $seconds s, a fault every $fault_every s"
per_node=$(( (rate + 2) / 3 ))
for i in 2 3 4; do
  scripts/testfleet --id $fleet_id exec "$i" -- python3 - "$per_node" "$seconds" /srv/data/a /srv/data/b \
    <bench/chaos/writer.py >"$work/writer-$i.json" 2>"$work/writer-$i.err" &
done
python3 bench/chaos/faults.py --fleet-id $fleet_id --seconds "$seconds" --every "$fault_every" \
  --systemd "$systemd" --log "$work/faults.jsonl"
wait_writers=0
for job in $(jobs -p); do
  [ "$job" = "$supervise_pid" ] || [ "$job" = "$watch_pid" ] || wait "$job" || wait_writers=1
done
[ "$wait_writers" = 0 ] || { echo "a writer failed:"; cat "$work"/writer-*.err; exit 1; }

echo "== load over; waiting for every instance healthy with nothing queued (up to 10 min)"
converged=no
started=$(date +%s)
while [ $(( $(date +%s) - started )) -lt 600 ]; do
  if fleetsync status --json >"$work/final-status.json" 2>/dev/null \
    && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if all((i.get("queueDepth") or 0)==0 and (i.get("lagSeconds") or 0)==0 for h in d["hosts"] for i in h["instances"]) else 1)' "$work/final-status.json"
  then converged=yes; break; fi
  sleep 2
done
converge_seconds=$(( $(date +%s) - started ))
kill "$watch_pid" 2>/dev/null || true
curl -s "http://127.0.0.1:$metrics_port/metrics" >"$work/metrics.txt" || true
kill "$supervise_pid" 2>/dev/null || true
wait "$supervise_pid" 2>/dev/null || true
supervise_pid= watch_pid=

echo "== fleetsync verify"
verify_status=0
fleetsync verify --json >"$work/verify.json" 2>"$work/verify.err" || verify_status=$?
fleetsync status >"$work/final-status.txt" 2>&1 || true
cat "$work/final-status.txt"

python3 bench/chaos/report.py "$work" "$converged" "$converge_seconds" "$verify_status" "$rate" "$seconds"

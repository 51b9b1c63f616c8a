#!/usr/bin/env bash
# SSH layer benchmark (not a test): fleetsync exec/push against OpenSSH ssh/scp run by `xargs -P`,
# on a test fleet of N nodes (default 50), same key, same known_hosts, same parallelism.
#
# Usage: bench/ssh/run.sh            (as root; env: N=50 REPS=5 FLEET_ID=1)
# Prints the wall time of every repetition, the medians and the ratios fleetsync/OpenSSH.
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${N:-50}
REPS=${REPS:-5}
FLEET_ID=${FLEET_ID:-1}
STATE=/tmp/fleetsync-testfleet-$FLEET_ID
WORK=$(mktemp -d /tmp/fleetsync-bench-ssh.XXXXXX)

echo "building release..." >&2
swift build -c release --product fleetsync >/dev/null
BIN=$(swift build -c release --show-bin-path)/fleetsync

cleanup() {
  scripts/testfleet --id "$FLEET_ID" down >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
echo "bringing up $N nodes (fleet $FLEET_ID)..." >&2
scripts/testfleet --id "$FLEET_ID" up "$N" >/dev/null

KEY=$STATE/id_ed25519
KH=$STATE/known_hosts
python3 -c 'import json,sys; [print(n["address"]) for n in json.load(open(sys.argv[1]))["nodes"]]' \
  "$STATE/fleet.json" >"$WORK/addrs"
sed 's/^/root@/' "$WORK/addrs" >"$WORK/hosts"
head -c 1048576 /dev/urandom >"$WORK/payload"
SSH_OPTS=(-i "$KEY" -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile="$KH"
  -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o ControlMaster=no -o LogLevel=ERROR)
FS_OPTS=(--hosts "$WORK/hosts" --identity "$KEY" --known-hosts "$KH" --forks "$N")
export SSH_AUTH_SOCK=

# Runs "$@" once, fails loudly if it fails, prints elapsed seconds.
timed() {
  local start end
  start=$(date +%s%N)
  if ! "$@" >"$WORK/out" 2>&1; then
    echo "FAILED: $*" >&2
    tail -20 "$WORK/out" >&2
    exit 1
  fi
  end=$(date +%s%N)
  awk -v ns=$((end - start)) 'BEGIN { printf "%.3f", ns / 1e9 }'
}

fs_exec() { "$BIN" exec "${FS_OPTS[@]}" -- true; }
ssh_exec() { xargs -P "$N" -I{} ssh "${SSH_OPTS[@]}" root@{} true <"$WORK/addrs"; }
fs_push() { "$BIN" push "${FS_OPTS[@]}" "$WORK/payload" /srv/bench-payload --mode 0644; }
scp_push() { xargs -P "$N" -I{} scp -q "${SSH_OPTS[@]}" "$WORK/payload" root@{}:/srv/bench-payload <"$WORK/addrs"; }

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }

# Warm-up (page cache, ARP), not counted.
fs_exec >/dev/null 2>&1 || true
ssh_exec >/dev/null 2>&1 || true

declare -A times
for rep in $(seq 1 "$REPS"); do
  for case in fs_exec ssh_exec fs_push scp_push; do
    t=$(timed "$case")
    times[$case]+="$t "
    printf 'rep %d  %-9s %6.3f s\n' "$rep" "$case" "$t"
  done
done

# Every node got the whole payload.
want=$(sha256sum <"$WORK/payload" | cut -c1-64)
for i in $(seq 1 "$N"); do
  got=$(scripts/testfleet --id "$FLEET_ID" exec "$i" -- sha256sum /srv/bench-payload | cut -c1-64)
  [[ $got == "$want" ]] || { echo "node $i: payload differs" >&2; exit 1; }
done

m() { tr ' ' '\n' <<<"${times[$1]}" | grep . | median; }
fe=$(m fs_exec) se=$(m ssh_exec) fp=$(m fs_push) sp=$(m scp_push)
echo
echo "nodes=$N reps=$REPS (median wall time)"
awk -v a="$fe" -v b="$se" 'BEGIN { printf "exec true : fleetsync %.3f s  ssh (xargs -P) %.3f s  ratio %.2f\n", a, b, a / b }'
awk -v a="$fp" -v b="$sp" 'BEGIN { printf "push 1 MB : fleetsync %.3f s  scp (xargs -P) %.3f s  ratio %.2f\n", a, b, a / b }'

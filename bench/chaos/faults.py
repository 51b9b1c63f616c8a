#!/usr/bin/env python3
"""Injects one fault every --every seconds for --seconds, cycling through the list below, on the chaos
run's fleet (nodes: 1 bk1, 2 s1, 3 s2, 4 s3, 5 bk2). Each fault is one JSON line in --log."""
import argparse
import json
import subprocess
import threading
import time

WPID = r"""wpid() {
  if [ -d /run/systemd/system ]; then systemctl show -p MainPID --value "fleetsync-watch@$1.service"
  else p=$(cat "/run/fleetsync/watch-$1.pid" 2>/dev/null) && pgrep -o -P "$p" -f ' run --config'; fi
}
"""
# A stop job that a concurrent start (by supervise) replaces says "canceled": the daemon was stopped.
STOP_RSYNCD = """if [ -d /run/systemd/system ]; then systemctl stop fleetsync-rsyncd@main.service 2>&1 | grep -v canceled >&2; true
else kill "$(cat /run/fleetsync/rsyncd-main.pid)"; fi"""
START_RSYNCD = """if [ -d /run/systemd/system ]; then systemctl is-active -q fleetsync-rsyncd@main.service || { systemctl start fleetsync-rsyncd@main.service; echo started; }
else [ -f /run/fleetsync/rsyncd-main.pid ] && kill -0 "$(cat /run/fleetsync/rsyncd-main.pid)" 2>/dev/null || { /etc/init.d/fleetsync start >/dev/null; echo started; }; fi"""
# A boot: every fleetsync process of the node gone (SIGKILL, as at a power loss), /run emptied, then
# what the init system runs at boot. The nodes without systemd share the machine's pid namespace, so
# only processes in the node's network namespace are killed. A systemd node of the test fleet cannot
# reboot its PID 1: there every instance is SIGKILLed and systemd starts them again (Restart=on-failure).
REBOOT = r"""if [ -d /run/systemd/system ]; then systemctl kill --signal=KILL 'fleetsync-*.service'; echo crash
else
  pkill -KILL --ns $$ --nslist net -f '^(/bin/sh /var/lib/fleetsync/bin/fleetsync-supervise|/var/lib/fleetsync/bin/fleetsync-watch|rsync )'
  sleep 0.5; rm -rf /run/fleetsync; /etc/init.d/fleetsync start; echo boot
fi"""

FAULTS = [
    ("sigkill-watcher", 2, "a:bk1:s1-a"),
    ("sigstop-watcher", 3, "b:bk1:s2-b"),
    ("stop-rsyncd", 5, None),
    ("cut", 3, "s2"),
    ("sigkill-watcher", 4, "a:bk2:s3-a"),
    ("sigstop-watcher", 2, "b:bk1:s1-b"),
    ("cut", 1, "bk1"),
    ("reboot", 4, "s3"),
    ("reboot", 5, "bk2"),
    ("stop-rsyncd", 1, None),
    ("sigstop-watcher", 4, "b:bk2:s3-b"),
    ("reboot", 2, "s1"),
    ("cut", 5, "bk2"),
    ("reboot", 3, "s2"),
    ("cut", 4, "s3"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fleet-id", required=True)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--every", type=float, default=4)
    ap.add_argument("--systemd", type=int, default=2)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    log = open(args.log, "a")
    lock = threading.Lock()
    start = time.monotonic()

    def testfleet(*words):
        return subprocess.run(["scripts/testfleet", "--id", args.fleet_id, *words], capture_output=True, text=True)

    def on(node, script):
        return testfleet("exec", str(node), "--", "sh", "-c", script)

    def record(kind, node, target, result, **extra):
        line = {"t": round(time.monotonic() - start, 1), "fault": kind, "node": node, "target": target,
                "ok": result.returncode == 0, "output": (result.stdout + result.stderr).strip()[-300:], **extra}
        with lock:
            log.write(json.dumps(line) + "\n")
            log.flush()
        print(f"  t={line['t']:5.1f}s {kind} {target or ''} on node {node}: {'ok' if line['ok'] else line['output']}")

    def later(seconds, body):
        timer = threading.Timer(seconds, body)
        timer.start()
        timers.append(timer)

    timers = []
    index = 0
    while time.monotonic() - start < args.seconds:
        kind, node, target = FAULTS[index % len(FAULTS)]
        index += 1
        if kind in ("sigkill-watcher", "sigstop-watcher"):
            signal = "KILL" if kind == "sigkill-watcher" else "STOP"
            # A watcher between two starts has no process for a moment: try for up to 5 s.
            r = on(node, WPID + f'i=0; until p=$(wpid {target}) && [ -n "$p" ] && [ "$p" != 0 ]; do '
                   f'i=$((i+1)); [ $i -ge 25 ] && echo "no process" && exit 1; sleep 0.2; done; kill -{signal} "$p" && echo "$p"')
            record(kind, node, target, r)
        elif kind == "stop-rsyncd":
            record(kind, node, "rsyncd@main", on(node, STOP_RSYNCD))
            later(10, lambda node=node: record("start-rsyncd-if-down", node, "rsyncd@main", on(node, START_RSYNCD)))
        elif kind == "cut":
            record(kind, node, target, testfleet("cut", str(node)))
            later(10, lambda node=node, target=target: record("restore", node, target, testfleet("restore", str(node))))
        elif kind == "reboot":
            record(kind, node, target, on(node, REBOOT))
        time.sleep(max(0.0, index * args.every - (time.monotonic() - start)))
    for timer in timers:
        timer.join()


if __name__ == "__main__":
    main()

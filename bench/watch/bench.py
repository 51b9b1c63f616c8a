#!/usr/bin/env python3
"""Helpers for bench/watch/run.sh (standard library only).

  bench.py sample PID OUT.json          peak RSS of PID's process tree until PID exits or SIGTERM
  bench.py inotify-watches PID          number of inotify watches held by PID's process tree
  bench.py analyze ...                  latency/throughput of one run -> one JSON line
  bench.py table RESULTS.jsonl          side-by-side table (Markdown)
  bench.py setup-inotifywait DIR N      seconds until `inotifywait -r` reports "Watches established."
  bench.py setup-fleetsync N URL -- CMD seconds until CMD's /status (at URL) reports watches >= N
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request


def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pid):
    """The process tree under pid, as (pid, parent pid) pairs."""
    kids = children_map()
    out, todo = [], [(pid, None)]
    while todo:
        p, parent = todo.pop()
        out.append((p, parent))
        todo.extend((k, p) for k in kids.get(p, []))
    return out


def exe(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def status(pid):
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
    except OSError:
        return None
    return fields


def kb(fields, key):
    v = fields.get(key, "0 kB").split()
    return int(v[0]) if v else 0


def cmd_sample(pid, out):
    """Every 200 ms: sum VmRSS over the tree, rsync processes apart; keep the peaks and per-command VmHWM.

    A child that runs its parent's executable (a fork that has not exec'd yet, a shell subshell) shares its
    parent's pages and is not counted again."""
    pid = int(pid)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    peak_tool = peak_rsync = 0
    hwm = {}
    samples = 0
    while not stop and os.path.exists(f"/proc/{pid}"):
        tool = rs = 0
        for p, parent in tree(pid):
            st = status(p)
            if not st:
                continue
            if parent is not None and st.get("Name") != "rsync" and exe(p) == exe(parent):
                continue
            name = st.get("Name", "?")
            rss = kb(st, "VmRSS")
            if name == "rsync":
                rs += rss
            else:
                tool += rss
                hwm[name] = max(hwm.get(name, 0), kb(st, "VmHWM"))
        peak_tool, peak_rsync = max(peak_tool, tool), max(peak_rsync, rs)
        samples += 1
        time.sleep(0.2)
    with open(out, "w") as f:
        json.dump({"tool_peak_kb": peak_tool, "rsync_peak_kb": peak_rsync, "hwm_kb": hwm, "samples": samples}, f)


def watches_of(pid):
    n = 0
    for p, _ in tree(int(pid)):
        try:
            fds = os.listdir(f"/proc/{p}/fdinfo")
        except OSError:
            continue
        for fd in fds:
            try:
                with open(f"/proc/{p}/fdinfo/{fd}") as f:
                    n += sum(1 for line in f if line.startswith("inotify wd:"))
            except OSError:
                pass
    return n


def pct(sorted_vals, q):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def cmd_analyze(args):
    a = dict(zip(args[0::2], args[1::2]))
    writes = {}
    with open(a["--writes"]) as f:
        for line in f:
            i, ns = line.split()
            writes[int(i)] = int(ns)
    arrivals = {}
    if os.path.exists(a["--arrivals"]):
        with open(a["--arrivals"]) as f:
            for line in f:
                i, ns, _ = line.split()
                arrivals[int(i)] = int(ns)
    lat = sorted((arrivals[i] - w) / 1e9 for i, w in writes.items() if i in arrivals)
    first_w = min(writes.values()) if writes else 0
    last_w = max(writes.values()) if writes else 0
    arrived = len(lat)
    lost = len(writes) - arrived
    last_a = max((arrivals[i] for i in writes if i in arrivals), default=None)
    duration = float(a["--duration"])
    res = {
        "tool": a["--tool"],
        "label": a.get("--label", a["--tool"]),
        "rate": float(a["--rate"]),
        "duration": duration,
        "files": len(writes),
        "offered": (len(writes) - 1) / ((last_w - first_w) / 1e9) if len(writes) > 1 and last_w > first_w else 0,
        "replicated": arrived / ((last_a - first_w) / 1e9) if last_a and last_a > first_w else 0,
        "p50": pct(lat, 0.50),
        "p99": pct(lat, 0.99),
        "max": lat[-1] if lat else None,
        "drain": (last_a - last_w) / 1e9 if last_a and lost == 0 else None,
        "drain_cap": float(a["--drain-cap"]),
        "lost": lost,
        "diffs": int(a["--diffs"]),
        "overflows": int(a.get("--overflows", "0")),
        "startup": float(a.get("--startup", "nan")),
        "note": a.get("--note", ""),
        "loadavg": a.get("--loadavg", ""),
    }
    rss = json.load(open(a["--rss"])) if os.path.exists(a.get("--rss", "")) else {}
    res["rss_kb"] = rss.get("tool_peak_kb")
    res["rsync_rss_kb"] = rss.get("rsync_peak_kb")
    res["hwm_kb"] = rss.get("hwm_kb")
    print(json.dumps(res))


def fmt_s(v):
    return "-" if v is None else (f"{v * 1000:.0f} ms" if v < 1 else f"{v:.1f} s")


def fmt_mb(kb_):
    return "-" if kb_ is None else f"{kb_ / 1024:.0f} MB"


def cmd_table(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    head = ["tool", "offered/s", "replicated/s", "p50", "p99", "max", "drain", "lost", "diffs", "RSS (rsync)", "startup", "notes"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        drain = fmt_s(r["drain"]) if r["drain"] is not None else f"> {r['drain_cap']:.0f} s (cap)"
        note = r["note"]
        if r.get("loadavg"):
            note = f"load avg {r['loadavg']} at start" + ("; " + note if note else "")
        if r["overflows"]:
            note = (note + "; " if note else "") + f"probe queue overflowed {r['overflows']}x"
        print(
            "| "
            + " | ".join(
                [
                    r["label"],
                    f"{r['offered']:,.0f} ({r['files']:,} in {r['duration']:.0f} s)",
                    f"{r['replicated']:,.0f}",
                    fmt_s(r["p50"]),
                    fmt_s(r["p99"]),
                    fmt_s(r["max"]),
                    drain,
                    f"{r['lost']:,}",
                    f"{r['diffs']:,}",
                    f"{fmt_mb(r['rss_kb'])} ({fmt_mb(r['rsync_rss_kb'])})",
                    fmt_s(r["startup"]) if r["startup"] == r["startup"] else "-",
                    note,
                ]
            )
            + " |"
        )


def unreclaimable_slab_kb():
    """The kernel's unreclaimable slab memory (where inotify marks live), from /proc/meminfo."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("SUnreclaim:"):
                return int(line.split()[1])
    return 0


def cmd_setup_inotifywait(d, expect):
    slab0 = unreclaimable_slab_kb()
    t0 = time.monotonic()
    p = subprocess.Popen(
        ["inotifywait", "-mr", "-e", "create,close_write,delete,moved_to", d],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        secs = None
        for line in p.stderr:
            if "Watches established" in line:
                secs = time.monotonic() - t0
                break
        st = status(p.pid) or {}
        print(json.dumps({"tool": "inotifywait -r", "seconds": secs, "watches": watches_of(p.pid),
                          "rss_kb": kb(st, "VmRSS"), "kernel_kb": unreclaimable_slab_kb() - slab0,
                          "expect": int(expect), "dirs": int(expect) - 1}))
    finally:
        p.terminate()
        p.wait()


def cmd_setup_fleetsync(expect, url, cmd, timeout=600):
    """Seconds until the watcher watches: its /status shows `watches` >= expect (inotify), or says
    fanotify with its setup time recorded (fanotify has no watch per directory)."""
    expect = int(expect)
    slab0 = unreclaimable_slab_kb()
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        secs, js = None, {}
        while time.monotonic() - t0 < timeout and p.poll() is None:
            try:
                js = json.load(urllib.request.urlopen(url, timeout=2))
                fanotify = js.get("eventBackend") == "fanotify" and js.get("watchSetupSeconds") is not None
                if fanotify or js.get("watches", 0) >= expect:
                    secs = time.monotonic() - t0
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        st = status(p.pid) or {}
        print(json.dumps({"tool": f"fleetsync-watch ({js.get('eventBackend')})", "seconds": secs,
                          "watches": js.get("watches"), "watchSetupSeconds": js.get("watchSetupSeconds"),
                          "state": js.get("state"), "rss_kb": kb(st, "VmRSS"),
                          "kernel_kb": unreclaimable_slab_kb() - slab0, "expect": expect, "dirs": expect - 1,
                          "exited": p.poll()}))
    finally:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    c = argv[1]
    if c == "sample":
        cmd_sample(argv[2], argv[3])
    elif c == "inotify-watches":
        print(watches_of(argv[2]))
    elif c == "analyze":
        cmd_analyze(argv[2:])
    elif c == "table":
        cmd_table(argv[2])
    elif c == "setup-inotifywait":
        cmd_setup_inotifywait(argv[2], argv[3])
    elif c == "setup-fleetsync":
        i = argv.index("--")
        cmd_setup_fleetsync(argv[2], argv[3], argv[i + 1 :])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

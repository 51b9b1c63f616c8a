#!/usr/bin/env python3
"""Prints the chaos run's counts from its work directory; exit 0 only when verify found no difference,
every instance converged healthy and every fault was injected."""
import collections
import json
import re
import sys

work, converged, converge_seconds, verify_status, rate, seconds = sys.argv[1:7]


def lines(path):
    try:
        return [json.loads(l) for l in open(path) if l.strip()]
    except FileNotFoundError:
        return []


faults = lines(f"{work}/faults.jsonl")
injected = collections.Counter(f["fault"] for f in faults if f["fault"] not in ("restore", "start-rsyncd-if-down"))
failed_faults = [f for f in faults if not f["ok"]]
rsyncd_left_down = sum(1 for f in faults if f["fault"] == "start-rsyncd-if-down" and "started" in f["output"])
writers = [json.load(open(f"{work}/writer-{i}.json")) for i in (2, 3, 4)]
written = sum(w["written"] for w in writers)
rewrites = sum(w["rewrites"] for w in writers)

worst_lag, worst_at, unhealthy_readings, readings = 0.0, "", 0, 0
for reading in lines(f"{work}/readings.jsonl"):
    readings += 1
    if not reading.get("ok"):
        unhealthy_readings += 1
    for host in reading["hosts"]:
        for inst in host["instances"]:
            lag = inst.get("lagSeconds") or 0
            if lag > worst_lag:
                worst_lag, worst_at = lag, f"{host['host']} {inst['instance']}"

final = json.load(open(f"{work}/final-status.json"))
instances = [i for h in final["hosts"] for i in h["instances"]]
restarts = sum(i.get("restarts") or 0 for i in instances)
healthy = sum(1 for i in instances if i["state"] == "healthy")

actions = collections.Counter()
try:
    metrics = open(f"{work}/metrics.txt").read().splitlines()
except FileNotFoundError:
    metrics = []
for line in metrics:
    m = re.match(r'fleetsync_supervise_actions_total\{.*action="(\w+)".*\} (\d+)', line)
    if m:
        actions[m.group(1)] += int(m.group(2))

verify = json.load(open(f"{work}/verify.json")) if verify_status in ("0", "2") else []
tally = collections.Counter()
outcomes = collections.Counter()
for host in verify:
    for d in host["directories"]:
        outcomes[d["outcome"]] += 1
        for key in ("compared", "differing", "missing", "extra", "attributes"):
            tally[key] += (d.get("found") or {}).get(key, 0)
differing = tally["differing"] + tally["missing"] + tally["extra"] + tally["attributes"]

rows = [
    ("load", f"{rate} files/s for {seconds} s into 6 directories on 3 sources"),
    ("files written (new / rewrites)", f"{written} / {rewrites}"),
    ("faults injected", f"{sum(injected.values())}: " + ", ".join(f"{k} {v}" for k, v in sorted(injected.items()))),
    ("faults that could not be injected", str(len(failed_faults))),
    ("restarts, all (status RESTARTS: systemd, pid-file supervisor, supervise)", str(restarts)),
    ("starts + restarts by supervise", f"{actions['start'] + actions['restart']} (start {actions['start']}, restart {actions['restart']}, left {actions['leave']})"),
    ("rsync daemons still down 10 s after being stopped", str(rsyncd_left_down)),
    ("worst replication lag seen by status (1 s readings)", f"{worst_lag:.1f} s ({worst_at})"),
    ("readings with some instance not healthy", f"{unhealthy_readings} of {readings}"),
    ("converged (all healthy, nothing queued) after the load", f"{converged}, {converge_seconds} s"),
    ("instances healthy at the end", f"{healthy} of {len(instances)}"),
    ("verify: directories by outcome", ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or f"verify exit {verify_status}"),
    ("verify: files compared", str(tally["compared"])),
    ("verify: files differing / missing / extra / other attributes",
     f"{tally['differing']} / {tally['missing']} / {tally['extra']} / {tally['attributes']}"),
]
print("\n| | |\n|---|---|")
for k, v in rows:
    print(f"| {k} | {v} |")
for f in failed_faults:
    print(f"fault not injected: {f}")
ok = converged == "yes" and verify_status == "0" and differing == 0 and healthy == len(instances) and not failed_faults
print("\nchaos run:", "PASSED" if ok else "FAILED")
sys.exit(0 if ok else 1)

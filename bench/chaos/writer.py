#!/usr/bin/env python3
"""Writes RATE files/s for SECONDS into the given directories, round robin, 500 files a folder; one write
in 20 rewrites an earlier file. Prints {"written": N, "rewrites": R} as JSON at the end."""
import json
import os
import random
import sys
import time

rate, seconds, dirs = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
random.seed(os.getpid())
written = rewrites = 0
made = []
start = time.monotonic()
tick = 0.01
while True:
    now = time.monotonic() - start
    if now >= seconds:
        break
    due = int(now * rate) - written - rewrites
    for _ in range(max(0, due)):
        n = written + rewrites
        if made and n % 20 == 19:
            path = random.choice(made)
            rewrites += 1
        else:
            d = dirs[written % len(dirs)]
            folder = os.path.join(d, f"w{written // (500 * len(dirs))}")
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"f{written}")
            made.append(path)
            written += 1
        with open(path, "w") as f:
            f.write(f"{path} {n} {time.time()}\n" * 8)
    time.sleep(tick)
print(json.dumps({"written": written, "rewrites": rewrites}))

#!/usr/bin/env python3
"""Ratio table for scripts/bench: imgorigin against the best peer of each workload.

    python3 scripts/bench-table.py bench-results/<run>/imgorigin.jsonl bench-results/<run>/sharp.jsonl ...

Median over repetitions with min-max; the ratio is the median of the per-repetition
ratios against that repetition's best peer (all servers ran in the same repetition, one
after the other). Runs the harness marked as contended (another process used more than
0.15 cores) are left out and counted.
"""
import json
import statistics
import sys
from collections import defaultdict

MAX_OTHER = 0.15
OURS = "imgorigin"
WORKLOADS = ["miss-jpeg", "miss-webp", "miss-avif", "thumb", "hit", "first-view"]


def spread(vals, fmt):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    m = format(statistics.median(vals), fmt)
    return m if len(vals) == 1 else f"{m} ({format(min(vals), fmt)}–{format(max(vals), fmt)})"


runs = defaultdict(list)  # (label, workload) -> [result per repetition, in order]
dropped = 0
for path in sys.argv[1:]:
    for line in open(path):
        d = json.loads(line)
        if "workload" not in d:
            continue
        if (d.get("other_cpu_cores") or 0) > MAX_OTHER:
            dropped += 1
            d = dict(d, rps=None)
        runs[(d["label"], d["workload"])].append(d)

peers = sorted({label for label, _ in runs if label != OURS})
print(f"| workload | {OURS} req/s | " + " | ".join(f"{p} req/s" for p in peers)
      + f" | {OURS} / best peer | {OURS} p99 ms | {OURS} CPU ms/req | "
      + " | ".join(f"{p} CPU ms/req" for p in peers) + " |")
print("|---|---|" + "---|" * len(peers) + "---|---|---|" + "---|" * len(peers))
for wl in WORKLOADS:
    ours = runs.get((OURS, wl), [])
    if not ours:
        continue
    ratios = []
    for i, o in enumerate(ours):
        best = max((runs[(p, wl)][i]["rps"] or 0 for p in peers if len(runs.get((p, wl), [])) > i), default=0)
        if o["rps"] and best:
            ratios.append(o["rps"] / best)
    cells = [spread([r["rps"] for r in ours], ".1f")]
    cells += [spread([r["rps"] for r in runs.get((p, wl), [])], ".1f") for p in peers]
    cells.append(spread(ratios, ".2f") + "×" if ratios else "-")
    cells.append(spread([r["p99_ms"] for r in ours], ".1f"))
    cells.append(spread([r.get("server_cpu_ms_per_req") for r in ours], ".1f"))
    cells += [spread([r.get("server_cpu_ms_per_req") for r in runs.get((p, wl), [])], ".0f") for p in peers]
    print(f"| {wl} | " + " | ".join(cells) + " |")
reps = max((len(v) for v in runs.values()), default=0)
print(f"\n{reps} repetition(s); {dropped} contended run(s) left out.")

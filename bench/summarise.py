#!/usr/bin/env python3
"""Prints the BENCHMARKS.md tables from bench/results/*.jsonl: per result name, the median of
the runs and the min-max, for throughput, latency, the echo ceiling and the ratio to it."""
import json, statistics, sys, glob, collections

rows = collections.OrderedDict()
for path in sys.argv[1:] or sorted(glob.glob("bench/results/*.jsonl")):
    for line in open(path):
        if line.startswith("{"):
            v = json.loads(line)
            rows.setdefault(v["scenario"], []).append(v)

def cell(runs, key, fmt="{:.0f}"):
    xs = [r[key] for r in runs if r.get(key) is not None]
    if not xs:
        return "–"
    med = statistics.median(xs)
    if len(xs) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"

cols = [("msgs/s", "msgs_per_s", "{:.0f}"), ("p50 ms", "p50_ms", "{:.1f}"),
        ("p99 ms", "p99_ms", "{:.1f}"), ("p99.9 ms", "p999_ms", "{:.1f}"),
        ("echo msgs/s", "echo_msgs_per_s", "{:.0f}"), ("ratio to echo", "ratio_to_echo", "{:.2f}")]
extra = [("accepted/s", "accepted_per_s", "{:.0f}"), ("vs smallest registry", "ratio_to_baseline", "{:.2f}"),
         ("RSS MiB", "rss_mib", "{:.0f}"), ("peak RSS MiB", "peak_rss_mib", "{:.0f}"),
         ("fill msgs/s", "fill_msgs_per_s", "{:.0f}"), ("DB MiB", "db_mib", "{:.0f}"),
         ("listening ms", "startup_ms", "{:.0f}"), ("ready ms", "ready_ms", "{:.0f}"),
         ("echo ready ms", "echo_ready_ms", "{:.0f}"), ("errors", "errors", "{:.0f}"),
         ("load (1 min)", "loadavg_1m", "{:.1f}")]
groups = collections.OrderedDict()
for name, runs in rows.items():
    groups.setdefault(name.split("@")[0].split("-")[0], []).append((name, runs))
for group, members in groups.items():
    every = [r for _, runs in members for r in runs]
    used = [c for c in cols + extra if any(r.get(c[1]) is not None for r in every)]
    print(f"### {group}\n")
    print("| result (runs) | " + " | ".join(c[0] for c in used) + " |")
    print("|---" * (len(used) + 1) + "|")
    for name, runs in members:
        print(f"| `{name}` ({len(runs)}) | " + " | ".join(cell(runs, c[1], c[2]) for c in used) + " |")
    print()

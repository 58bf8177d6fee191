#!/usr/bin/env python3
"""Markdown tables from the report's CSV, as pasted into README.md.

    scripts/report-tables.py [target/pagewise-report/report.csv]
"""
import csv
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "target/pagewise-report/report.csv"
rows = list(csv.DictReader(open(path)))
cases = []
for r in rows:
    key = (r["workload"], r["size_label"], r["iters"])
    if key not in cases:
        cases.append(key)
cell = {(r["workload"], r["size_label"], r["iters"], r["allocator"]): r for r in rows}

PEERS = ["system", "jemalloc", "mimalloc"]
POLICIES = ["pagewise-unmap", "pagewise-dontneed", "pagewise-free", "pagewise-retain", "pagewise-adaptive"]
PREFETCH = ["pagewise-retain/none", "pagewise-retain/populate", "pagewise-retain", "pagewise-retain/populate+hugepage"]


def short(a):
    return a.replace("pagewise-", "pw-")


def table(title, columns, field, fmt, bold_default=True):
    print(f"\n{title}\n")
    print("| case | " + " | ".join(short(c) for c in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for w, s, it in cases:
        out = []
        vals = {c: cell.get((w, s, it, c)) for c in columns}
        present = [float(v[field]) for v in vals.values() if v]
        best = min(present) if present else None
        for c in columns:
            v = vals[c]
            if not v:
                out.append("—")
                continue
            text = fmt(float(v[field]))
            if field == "time_ms" and float(v[field]) == best:
                text = f"**{text}**"
            out.append(text)
        print(f"| {w} {s} ×{it} | " + " | ".join(out) + " |")


table("Median time, ms (best in bold; `pw-retain` is the default):",
      PEERS + POLICIES + ["bound"], "time_ms", lambda v: f"{v:.0f}" if v >= 10 else f"{v:.1f}")
table("Prefetch modes under the default release policy, median time, ms (`pw-retain` = hugepage):",
      PREFETCH, "time_ms", lambda v: f"{v:.0f}" if v >= 10 else f"{v:.1f}")
table("First round of a fresh process (the untimed warm-up), ms per round:",
      PEERS + POLICIES, "cold_round_ms", lambda v: f"{v:.1f}")
table("Median minor faults in the timed rounds:", PEERS + POLICIES, "minflt", lambda v: f"{v:.0f}")
table("Median peak RSS, MiB:", PEERS + POLICIES, "peak_rss_mib", lambda v: f"{v:.0f}")
table("Median RSS 1.5 s after the work, MiB:", PEERS + POLICIES, "rss_after_mib", lambda v: f"{v:.1f}")

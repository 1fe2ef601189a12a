#!/usr/bin/env python3
"""Compare two benchmark results: python3 bench/compare.py A.json B.json

Prints, for every scenario both files have, each figure of A and B and the relative
change from A to B, marked `+` when B is better and `-` when B is worse (higher is
better for req/s; lower is better for latency, CPU, SQL statements and round trips).
Changes smaller than --noise percent (default 5) are left unmarked: run-to-run spread
on a shared machine is of that order. Warns when the runs are not comparable
(different machine, settings, a debug binary, a --quick run, uncommitted changes).
Python 3 standard library only.
"""
from __future__ import annotations

import argparse
import json
import sys

# (key, label, higher_is_better, is_count). Counts per request (SQL statements, cache
# round trips) are nearly deterministic: they are compared by absolute difference, and a
# difference of COUNT_STEP or more is always marked; a relative change of a near-zero
# count (0.003 -> 0.006 statements per request) would say nothing.
FIGURES = [
    ("rps", "req/s", True, False),
    ("p50_ms", "p50 ms", False, False),
    ("p99_ms", "p99 ms", False, False),
    ("p99_9_ms", "p99.9 ms", False, False),
    ("cpu_us_per_req", "CPU µs/req", False, False),
    ("sql_reads_per_req", "SQL/req", False, True),
    ("round_trips_per_req", "RT/req", False, True),
]
COUNT_STEP = 0.05


def load(path: str) -> dict:
    with open(path) as f:
        doc = json.load(f)
    if "results" not in doc:
        sys.exit(f"compare: {path} is not a bench/run.py result")
    return doc


def label(doc: dict, path: str) -> str:
    git = doc.get("git", {})
    tags = []
    if git.get("dirty"):
        tags.append("dirty")
    if doc.get("settings", {}).get("quick"):
        tags.append("quick")
    if "/release/" not in (doc.get("binary") or ""):
        tags.append("not release")
    extra = f" ({', '.join(tags)})" if tags else ""
    return f"{git.get('short_sha', '?')}{extra} {doc.get('started_at', '')} [{path}]"


def caveats(a: dict, b: dict) -> list[str]:
    notes = []
    for key in ("cores", "cpu_model"):
        va, vb = a.get("machine", {}).get(key), b.get("machine", {}).get(key)
        if va != vb:
            notes.append(f"machine {key} differs: {va} vs {vb}")
    sa = {k: v for k, v in a.get("settings", {}).items() if k != "server_env"}
    sb = {k: v for k, v in b.get("settings", {}).items() if k != "server_env"}
    for key in sorted(set(sa) | set(sb)):
        if sa.get(key) != sb.get(key):
            notes.append(f"setting {key} differs: {sa.get(key)} vs {sb.get(key)}")
    for key in ("postgres", "redis", "oha"):
        va, vb = a.get("versions", {}).get(key), b.get("versions", {}).get(key)
        if va != vb:
            notes.append(f"{key} version differs: {va} vs {vb}")
    for name, doc in (("A", a), ("B", b)):
        if doc.get("settings", {}).get("quick"):
            notes.append(f"{name} is a --quick run: short durations, noisy figures")
        if "/release/" not in (doc.get("binary") or ""):
            notes.append(f"{name} did not run a release binary ({doc.get('binary')})")
        if doc.get("git", {}).get("dirty"):
            notes.append(f"{name} ran with uncommitted changes")
    return notes


def change(va, vb, higher_is_better: bool, noise: float, is_count: bool = False) -> str:
    if va is None or vb is None:
        return "-"
    if is_count:
        diff = vb - va
        if abs(diff) < 0.005:
            return "="
        mark = (" +" if diff < 0 else " -") if abs(diff) >= COUNT_STEP else ""
        rel = f" ({diff / va * 100:+.0f}%)" if va >= COUNT_STEP else ""
        return f"{diff:+.2f}{rel}{mark}"
    if va == 0:
        return "=" if vb == 0 else "new"
    pct = (vb - va) / abs(va) * 100
    mark = ""
    if abs(pct) >= noise:
        better = pct > 0 if higher_is_better else pct < 0
        mark = " +" if better else " -"
    return f"{pct:+.1f}%{mark}"


def num(v, key: str) -> str:
    if v is None:
        return "-"
    if key == "rps" or key == "cpu_us_per_req":
        return f"{v:,.0f}"
    return f"{v:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description="Relative differences between two bench results.")
    ap.add_argument("a", help="baseline result JSON (e.g. bench/results/<date>-<sha>.json)")
    ap.add_argument("b", help="candidate result JSON")
    ap.add_argument("--noise", type=float, default=5.0,
                    help="percent below which a change is not marked (default 5)")
    args = ap.parse_args()
    a, b = load(args.a), load(args.b)

    print(f"A: {label(a, args.a)}")
    print(f"B: {label(b, args.b)}")
    for note in caveats(a, b):
        print(f"note: {note}")
    print()

    ra = {r.get("id", r["name"] + "/" + r["cache"]): r for r in a["results"]}
    rb = {r.get("id", r["name"] + "/" + r["cache"]): r for r in b["results"]}
    rows = [["scenario", "figure", "A", "B", "change"]]
    for sid in [k for k in ra if k in rb]:
        first = True
        for key, name, hib, is_count in FIGURES:
            va, vb = ra[sid].get(key), rb[sid].get(key)
            if va is None and vb is None:
                continue
            rows.append([sid if first else "", name, num(va, key), num(vb, key),
                         change(va, vb, hib, args.noise, is_count)])
            first = False
    only = sorted(set(ra) ^ set(rb))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if only:
        print(f"\nin only one of the files: {', '.join(only)}")
    print(f"\n+ better, - worse (changes under {args.noise:g}% unmarked; SQL/req and RT/req "
          f"as absolute differences, marked from {COUNT_STEP}); req/s higher is better, "
          "everything else lower is better")
    return 0


if __name__ == "__main__":
    sys.exit(main())

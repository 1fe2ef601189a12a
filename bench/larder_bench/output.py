"""The table, the warnings about runs that had errors, and the JSON results."""
from __future__ import annotations

import datetime as dt
import json
import os


def warn_bad(results: list[dict]) -> None:
    bad = [r["name"] for r in results if r["non_2xx"] or r["error_count"] or r["graphql_errors"]]
    if bad:
        print(f"warning: non-2xx answers, connection errors or GraphQL errors in: "
              f"{', '.join(bad)} (see status_codes, errors, graphql_errors in the JSON)")


def fmt(v, spec: str = ".1f", none: str = "-") -> str:
    return none if v is None else format(v, spec)


def table(results: list[dict]) -> str:
    head = ["scenario", "cache", "req/s", "of floor", "p50 ms", "p99 ms", "p99.9 ms",
            "CPU µs/req", "SQL/req", "RT/req", "hit %", "cache err", "bad"]
    rows = []
    floor = next((r["rps"] for r in results if r.get("scenario") == "health"), None)
    for r in results:
        of_floor = (r["rps"] / floor) if floor and r["rps"] and r["kind"] == "closed" else None
        rows.append([
            r["name"], r["cache"], fmt(r["rps"], ",.0f"), fmt(of_floor, ".2f"),
            fmt(r["p50_ms"], ".2f"), fmt(r["p99_ms"], ".2f"), fmt(r["p99_9_ms"], ".2f"),
            fmt(r["cpu_us_per_req"], ",.0f"), fmt(r["sql_reads_per_req"], ".2f"),
            fmt(r["round_trips_per_req"], ".2f"),
            fmt(None if r["cache_hit_rate"] is None or r["cache"] == "none"
                else r["cache_hit_rate"] * 100, ".1f"),
            str(r["cache_errors"]), str(r["non_2xx"] + r["error_count"] + r["graphql_errors"]),
        ])
        if r["kind"] == "mix":
            for side in ("reads", "writes"):
                s = r[side]
                rows.append([f"  └ {side}", "", fmt(s["rps"], ",.0f"), "", fmt(s["p50_ms"], ".2f"),
                             fmt(s["p99_ms"], ".2f"), fmt(s["p99_9_ms"], ".2f"),
                             "", "", "", "", "", str(s["non_2xx"] + s["error_count"])])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(
        c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def write_results(doc: dict, out_dir: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    stem = f"{dt.date.today().isoformat()}-{doc['git']['short_sha']}"
    if doc["git"]["dirty"]:
        stem += "-dirty"
    if doc["settings"]["quick"]:
        stem += "-quick"
    if doc["settings"].get("cluster"):
        stem += "-cluster"
    if doc["settings"].get("list_mix"):
        stem += "-list-mix"
    if doc["settings"].get("hostile"):
        stem += "-hostile"
    if doc["settings"].get("writes"):
        stem += "-writes"
    path = os.path.join(out_dir, stem + ".json")
    n = 2
    while os.path.exists(path):
        path = os.path.join(out_dir, f"{stem}-{n}.json")
        n += 1
    text = json.dumps(doc, indent=2) + "\n"
    for p in (path, os.path.join(out_dir, "latest.json")):
        with open(p, "w") as f:
            f.write(text)
    return path


def print_full_summary(results: list[dict], settings: dict, doc: dict) -> None:
    """The full run's table and the lines under it: RSS, the mix, the list mix, the
    crowds, the Redis kill, the fixed rate, and warnings about runs that had errors."""
    from .lists import print_list_mix
    print(table(results))
    print(f"RSS of the cached server after its runs: {fmt(doc['rss_mb_after_cached_runs'])} MB; "
          "'of floor' is req/s over GET /health's on the same server")
    mix = next(r for r in results if r["kind"] == "mix")
    print(f"mix: {mix['read_connections']} read + {mix['write_connections']} write connections; "
          f"writes were {fmt(mix['write_fraction'] * 100 if mix['write_fraction'] is not None else None)} % "
          f"of requests; {mix['versions_bumped']} updates committed")
    if mix["versions_bumped"] != mix["writes"]["status_codes"].get("200", 0):
        print(f"warning: {mix['writes']['status_codes'].get('200', 0)} updateProduct answers "
              f"were 200 but {mix['versions_bumped']} versions were bumped")
    print_list_mix(results)
    for c in (r for r in results if r["kind"] == "crowd"):
        print(f"{c['name']}: {fmt(c['rps'], ',.0f')} req/s, p50 {fmt(c['p50_ms'], '.1f')} ms, "
              f"{c['non_2xx'] + c['error_count'] + c['graphql_errors']} errors, {c['shed']} shed, "
              f"{c['db_refused']} database reads refused, hit rate "
              f"{fmt(c['cache_hit_rate'] * 100 if c['cache_hit_rate'] is not None else None, '.1f')} %, "
              f"{fmt(c['sql_reads_per_req'], '.3f')} SQL/request")
    killed = next((r for r in results if "killed_after_s" in r), None)
    if killed:
        print(f"{killed['name']} (after {killed['killed_after_s']:.1f} s): "
              f"{killed['non_2xx'] + killed['error_count'] + killed['graphql_errors']} errors, "
              f"p99 {fmt(killed['p99_ms'], '.1f')} ms (limit 2 x baseline + 10 = "
              f"{fmt(killed['p99_limit_ms'], '.1f')} ms), {fmt(killed['sql_reads_per_req'], '.3f')} SQL/request")
    rate = next(r for r in results if r["kind"] == "fixed-rate")
    print(f"fixed rate: achieved {fmt(rate['rps'], ',.0f')} of {settings['rate']} req/s; "
          "its percentiles are latency-corrected (measured from the scheduled send time)")
    if (rate["rps"] or 0) < 0.95 * settings["rate"]:
        print(f"warning: the server did not keep up with {settings['rate']} req/s, so the "
              "fixed-rate percentiles measure a growing queue, not service time")
    warn_bad(results)

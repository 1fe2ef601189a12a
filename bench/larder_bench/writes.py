"""The write runs (--writes): what a mutation costs. Per binary and round, each on a server
of its own (stopping it makes Postgres report its WAL statistics at once):

- lone update: LONE_WRITES sequential `updateProduct` from one connection, the clean
  per-mutation accounting (no group commit can share a flush between two mutations);
- updates: `updateProduct(stockQuantity)` of random products, closed loop, 32 connections;
- creates: `createProduct` in random existing categories, closed loop, 32 connections;
- mix 90:10: `product(id)` reads and `updateProduct` writes of random products, 9 reads
  to every write by count (one shuffled body file, 32 connections, closed loop), so
  faster writes raise the throughput instead of taking the readers' share.

Each reports mutations/s, p50/p99, server CPU per request, SQL statements and cache round
trips per mutation (from /metrics), WAL flushes per mutation (`pg_stat_wal.wal_sync`, the
whole cluster: the bench has it to itself) and the read hit rate. With `--against BIN`
the rounds alternate between the two binaries on the same machine (each on a database of
its own, seeded by itself), and the summary prints both medians and their ratio."""
from __future__ import annotations

import json
import os
import random
import statistics
import time

from .checks import prewarm_products
from .consts import MUTATION, PRODUCTS, READS
from .oha import mutation_bodies, oha_cmd, oha_mutation_args, summarize_oha
from .output import fmt
from .server import Server, server_figures
from .tools import log, psql

CREATE = ('mutation {{ createProduct(input: {{ name: "{name}", price: "{price}", '
          'category: "{category}", stockQuantity: {stock} }}) {{ id version }} }}')
LONE_WRITES = 300
SCENARIOS = ("lone update", "updates", "creates", "mix 90:10")
MIX_BODIES = 20_000


def wal_syncs() -> int:
    return int(psql("select wal_sync from pg_stat_wal"))


def settled_wal_syncs() -> int:
    """`wal_sync` once the server's backends have exited and reported (they report at
    exit, or when idle at most 10 s late): the value, unchanged for half a second."""
    last = wal_syncs()
    for _ in range(20):
        time.sleep(0.5)
        now = wal_syncs()
        if now == last:
            return now
        last = now
    return last


def create_bodies(path: str, db: str, n: int = 20_000) -> str:
    """`n` createProduct bodies in the database's existing categories (seeded)."""
    categories = psql("select name from categories order by id", db=db).splitlines()
    rng = random.Random(7)
    with open(path, "w") as f:
        for i in range(n):
            query = CREATE.format(name=f"Bench item {i}", price=f"{rng.randrange(100, 10_000) / 100:.2f}",
                                  category=rng.choice(categories), stock=rng.randrange(500))
            f.write(json.dumps({"query": query}) + "\n")
    return path


def mix_bodies(path: str) -> str:
    """MIX_BODIES JSON bodies in a seeded random order: 9 in 10 read a random product,
    1 in 10 sets a random product's stock (oha sends them line by line)."""
    rng = random.Random(9)
    bodies = []
    for i in range(MIX_BODIES):
        pid = rng.randrange(1, PRODUCTS + 1)
        if i % 10 == 0:
            query = MUTATION.format(id=pid, stock=rng.randrange(500))
        else:
            query = READS["product"].replace("{ID}", str(pid))
        bodies.append(json.dumps({"query": query}))
    rng.shuffle(bodies)
    with open(path, "w") as f:
        f.write("\n".join(bodies) + "\n")
    return path


def committed_updates(db: str) -> int:
    """Updates committed so far: every update raises a product's version by one."""
    return int(psql("select coalesce(sum(version - 1), 0) from products", db=db))


def run_scenario(bench, binary: str, env: dict, db: str, scenario: str, label: str) -> dict:
    """One scenario on a fresh server (warm cache: every product read once first)."""
    server = Server(binary, env, bench.tmp, label.replace(" ", "-"))
    server.start()
    try:
        prewarm_products(server)
        duration = bench.s["duration"]
        updates = mutation_bodies(os.path.join(bench.tmp, "mutations.jsonl"))
        if scenario == "lone update":
            load = ["-n", str(LONE_WRITES), "-c", "1"]
            cmds = [oha_cmd(bench.oha, load, oha_mutation_args(server.base, updates))]
        elif scenario == "updates":
            load = ["-z", f"{duration}s", "-c", str(bench.s["connections"])]
            cmds = [oha_cmd(bench.oha, load, oha_mutation_args(server.base, updates))]
        elif scenario == "creates":
            bodies = create_bodies(os.path.join(bench.tmp, f"creates-{db}.jsonl"), db)
            load = ["-z", f"{duration}s", "-c", str(bench.s["connections"])]
            cmds = [oha_cmd(bench.oha, load, oha_mutation_args(server.base, bodies))]
        else:
            bodies = mix_bodies(os.path.join(bench.tmp, "mix.jsonl"))
            load = ["-z", f"{duration}s", "-c", str(bench.s["connections"])]
            cmds = [oha_cmd(bench.oha, load, oha_mutation_args(server.base, bodies))]
        time.sleep(0.2)
        wal_before = wal_syncs()
        updates_before = committed_updates(db)
        before = server.snapshot()
        if len(cmds) == 1:
            outputs = [bench._run(cmds[0], label, duration + 60)]
        else:
            _, reads, writes, _ = bench._together(server, cmds[0], cmds[1], label)
            outputs = [reads, writes]
        time.sleep(0.3)
        after = server.snapshot()
        updated = committed_updates(db) - updates_before
    finally:
        server.stop()
    wal_after = settled_wal_syncs()
    figures = server_figures(before, after)
    summaries = [summarize_oha(o) for o in outputs]
    writes = summaries[-1]
    mixed = scenario.startswith("mix")
    # In the mix one oha sends both: the mutations are what Postgres counted.
    mutations = updated if mixed else writes["requests"] - writes["non_2xx"]
    elapsed = writes["requests"] / writes["rps"] if writes["rps"] else None
    per_mutation = lambda v: v / mutations if mutations else None
    d = {k: after[k] - before[k] for k in ("sql_read", "sql_write", "round_trips")}
    requests = figures["server_requests"]
    return {
        "scenario": scenario, "name": label, "binary": binary, "kind": "writes",
        "commands": cmds, "mutations": mutations,
        "mutations_per_s": (mutations / elapsed if elapsed else None) if mixed else writes["rps"],
        "rps": sum(s["rps"] or 0 for s in summaries),
        "p50_ms": writes["p50_ms"], "p99_ms": writes["p99_ms"],
        "cpu_us_per_req": figures["cpu_us_per_req"],
        "cpu_us_per_mutation": None if mixed else figures["cpu_us_per_req"],
        "sql_per_mutation": None if mixed else per_mutation(d["sql_write"] + d["sql_read"]),
        "round_trips_per_mutation": None if mixed else per_mutation(d["round_trips"]),
        "wal_syncs_per_mutation": per_mutation(wal_after - wal_before),
        "cache_hit_rate": figures["cache_hit_rate"],
        "requests": requests,
        "non_2xx": sum(s["non_2xx"] for s in summaries),
        "error_count": sum(s["error_count"] for s in summaries),
        "graphql_errors": figures["graphql_errors"],
        "cache_errors": figures["cache_errors"],
        "server": figures,
        "oha": summaries,
    }


def write_runs(bench, binaries: list[tuple[str, str, dict, str]], rounds: int) -> list[dict]:
    """`rounds` rounds; in each, every scenario on every binary (tag, path, server
    environment, database), alternating."""
    results = []
    for rnd in range(1, rounds + 1):
        for scenario in SCENARIOS:
            for tag, binary, env, db in binaries:
                log(f"writes, round {rnd}: {scenario} on {tag} ({binary})")
                r = run_scenario(bench, binary, env, db, scenario, f"{scenario} [{tag}] #{rnd}")
                r.update(tag=tag, round=rnd)
                results.append(r)
    return results


COLUMNS = [("mutations/s", "mutations_per_s", ",.0f"), ("p50 ms", "p50_ms", ".2f"),
           ("p99 ms", "p99_ms", ".2f"), ("CPU µs/req", "cpu_us_per_req", ",.0f"),
           ("SQL/mut", "sql_per_mutation", ".2f"), ("WAL flush/mut", "wal_syncs_per_mutation", ".2f"),
           ("RT/mut", "round_trips_per_mutation", ".2f"), ("req/s", "rps", ",.0f"),
           ("hit %", "cache_hit_rate", ".1f")]


def median_of(results: list[dict], tag: str, scenario: str, key: str):
    values = [r[key] for r in results if r["tag"] == tag and r["scenario"] == scenario
              and r[key] is not None]
    if not values:
        return None
    m = statistics.median(values)
    return m * 100 if key == "cache_hit_rate" else m


def print_writes(results: list[dict], tags: list[str]) -> None:
    rows = [["scenario", "binary", *[c[0] for c in COLUMNS], "bad"]]
    for scenario in SCENARIOS:
        for tag in tags:
            runs = [r for r in results if r["tag"] == tag and r["scenario"] == scenario]
            bad = sum(r["non_2xx"] + r["error_count"] + r["graphql_errors"] for r in runs)
            rows.append([scenario, tag, *[fmt(median_of(results, tag, scenario, k), spec)
                                          for _, k, spec in COLUMNS], str(bad)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    rounds = max(r["round"] for r in results)
    print(f"medians of {rounds} round(s); each run on a fresh server; 'hit %' is the item cache's")
    if len(tags) == 2:
        a, b = tags
        for scenario in SCENARIOS:
            key = "rps" if scenario.startswith("mix") else "mutations_per_s"
            x, y = median_of(results, a, scenario, key), median_of(results, b, scenario, key)
            if x and y:
                each = ", ".join(f"{r['tag']} {r[key]:,.0f}" for r in results if r["scenario"] == scenario)
                print(f"{scenario}: {a} / {b} = {x / y:.2f}x ({key}; runs: {each})")

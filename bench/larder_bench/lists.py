"""The list mix: its pages, the two stock streams, and its report."""
from __future__ import annotations

from typing import TYPE_CHECKING

import json
import os
import random

from .consts import LIST_MIX_RATE, MUTATION, RESTOCK_SHARE, STOCK_STREAMS
from .output import fmt
from .server import Server
from .tools import log, psql

if TYPE_CHECKING:
    from .scenarios import Bench


def list_mix_rounds(bench: "Bench", server: Server, db: str) -> list[dict]:
    """Two rounds of the list mix for each stock stream."""
    results = []
    for stream in STOCK_STREAMS:
        for rnd in (1, 2):
            log(f"list mix, {stream} stock, round {rnd}: pages and 10% stock updates at "
                f"{LIST_MIX_RATE} req/s ({bench.s['duration']} s)")
            results.append(bench.list_mix(server, stream, rnd, db))
    return results


def print_list_mix(results: list[dict]) -> None:
    for lm in (r for r in results if r["kind"] == "list-mix"):
        print(f"{lm['name']}: writes were "
              f"{fmt(lm['write_fraction'] * 100 if lm['write_fraction'] is not None else None)} % "
              f"of {lm['requests']} requests, {fmt(lm['instock_flips'], '.0f')} of them flipped inStock "
              f"({fmt(lm['flip_fraction'] * 100 if lm['flip_fraction'] is not None else None, '.1f')} %); "
              f"list hit rate "
              f"{fmt(lm['list_hit_rate'] * 100 if lm['list_hit_rate'] is not None else None, '.2f')} % "
              f"({lm['list_misses']} list misses, "
              f"{fmt(lm['list_misses_per_flip'], '.2f')} per flip)")
        # The flips are counted from delivered counter bumps: exact only while every
        # invalidation is delivered at once (an outbox replay merges or repeats them).
        if lm["cache_errors"] or lm["list_counters_bumped"] % 2:
            print(f"warning: {lm['name']}: {lm['cache_errors']} cache errors, "
                  f"{lm['list_counters_bumped']} list counters bumped: the flip count is approximate")
        if (lm["rps"] or 0) < 0.95 * lm["target_rps"]:
            print(f"warning: {lm['name']}: {fmt(lm['rps'], ',.0f')} of {lm['target_rps']} req/s")


def stock_levels(db: str) -> dict[int, int]:
    """Every product's stock now, by id."""
    rows = psql("select id, stock_quantity from products", db=db).splitlines()
    return {int(i): int(q) for i, q in (row.split("|") for row in rows)}


def stock_bodies(path: str, stream: str, stock: dict[int, int], n: int = 50_000) -> str:
    """`n` stock updates of random products, one body per line (oha picks a line per
    request), with levels from the stock at the start of the round (`stock`):
    - "shop": as a shop's stock moves. A write is a sale of a random *in-stock* product
      (1 to 3 units off, so one with 3 or fewer left can sell out), or, with
      RESTOCK_SHARE, a restock of a random sold-out product to 20..500: about
      RESTOCK_SHARE + 0.4% of the writes flip `inStock`.
    - "levels": a random level 0..499 for a random product, whatever its stock: with
      the seed's 10% of products sold out, about one write in ten restocks one at
      first (a restock wave), and the share falls as they are restocked.
    Seeded from the file name: the same bodies for each round on every run (given the
    same stock); oha picks among them at random, so which it sends differs. Levels are
    absolute, so a product picked twice in a round may go 3 -> 0 -> 2 (rare at 10 s)."""
    rng = random.Random(os.path.basename(path))
    ids = sorted(stock)
    in_stock = [i for i in ids if stock[i] > 0]
    sold_out = [i for i in ids if stock[i] == 0]
    with open(path, "w") as f:
        for _ in range(n):
            if stream == "levels":
                pid, level = rng.choice(ids), rng.randrange(500)
            elif sold_out and (rng.random() < RESTOCK_SHARE or not in_stock):
                pid = rng.choice(sold_out)
                level = rng.randrange(20, 501)
            else:
                pid = rng.choice(in_stock)
                level = max(0, stock[pid] - rng.randrange(1, 4))
            f.write(json.dumps({"query": MUTATION.format(id=pid, stock=level)}) + "\n")
    return path


def list_mix_bodies(server: Server, path: str) -> str:
    """The list mix's pages, one JSON body per line: for each demo category and for all
    products, a plain page, an `inStock` page, a price range, name order, and the second
    page by cursor (its cursor read from the first page now)."""
    shape = "{ totalCount nodes { id name price stockQuantity } pageInfo { hasNextPage endCursor } }"
    scopes = [""] + [f'categoryId: "{c}"' for c in range(1, 11)]
    queries = []
    for scope in scopes:
        sep = ", " if scope else ""
        first = f"products(first: 20, filter: {{ {scope} }}) {shape}"
        queries += [
            f"{{ {first} }}",
            f"{{ products(first: 20, filter: {{ {scope}{sep}inStock: true }}) {shape} }}",
            f'{{ products(first: 20, filter: {{ {scope}{sep}minPrice: "10", maxPrice: "50" }}) {shape} }}',
            f"{{ products(first: 20, filter: {{ {scope} }}, orderBy: {{ field: NAME }}) {shape} }}",
        ]
        cursor = server.graphql(f"{{ {first} }}")["products"]["pageInfo"]["endCursor"]
        queries.append(f'{{ products(first: 20, after: "{cursor}", filter: {{ {scope} }}) {shape} }}')
    with open(path, "w") as f:
        for q in queries:
            f.write(json.dumps({"query": q}) + "\n")
    return path

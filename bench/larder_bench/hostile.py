"""The hostile run: a normal client alone, then beside an anonymous abusive mix and slow connections (see bench/README.md)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import hashlib
import json
import os
import random
import select
import socket
import threading
import time

from .checks import prewarm_products
from .oha import oha_cmd, oha_read_args, summarize_oha
from .output import fmt
from .server import Server, server_figures
from .tools import log, redis_cli

if TYPE_CHECKING:
    from .scenarios import Bench


# The hostile run: the normal client's fixed rate (cached product(id) by GET), the abusive
# mix's fixed rate (anonymous POSTs, one line of `hostile_bodies` each), and how many slow
# connections (half a request header, then nothing) are held open beside them.
HOSTILE_NORMAL_RATE = int(os.environ.get("HOSTILE_NORMAL_RATE", 500))


HOSTILE_ABUSE_RATE = int(os.environ.get("HOSTILE_ABUSE_RATE", 5))


HOSTILE_SLOW_CONNECTIONS = int(os.environ.get("HOSTILE_SLOW_CONNECTIONS", 1500))


HOSTILE_MAX_CONNECTIONS = 1000


# The server's fill budget during the run (CACHE_FILL_BUDGET_PER_SEC, its default).
HOSTILE_FILL_BUDGET = 50


def hostile_bodies(path: str, n: int = 20_000) -> str:
    """Anonymous abusive requests, each line distinct (seeded: repeatable): many aliased
    lists of random searches and price ranges, categories and product ids that do not
    exist, cacheStats aliased a thousand times, huge decimals, a document past the
    complexity bound, the admin-only comparison, and persisted query registrations."""
    rng = random.Random(7)
    word = lambda: "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8))
    kinds = [
        lambda: " ".join(f'a{i}: products(first: 0, filter: {{search: "{word()}"}}) {{ totalCount }}'
                         for i in range(25)),
        lambda: " ".join(f'a{i}: products(first: 5, filter: {{minPrice: "{rng.randrange(1, 500)}.{rng.randrange(100):02}"}}) {{ totalCount nodes {{ id }} }}'
                         for i in range(20)),
        lambda: " ".join(f'a{i}: products(first: 1, filter: {{categoryId: "{rng.randrange(10**6, 10**9)}", inStock: true}}) {{ totalCount }}'
                         for i in range(40)),
        lambda: "ids: productsByIds(ids: [" + ",".join(f'"{rng.randrange(10**6, 2 * 10**9)}"' for _ in range(100)) + "]) { id }",
        lambda: " ".join(f"s{i}: cacheStats {{ hitRate }}" for i in range(1000)),
        lambda: 'products(filter: {minPrice: "1000000000000000000000000000"}) { totalCount }',
        lambda: " ".join(f'a{i}: products(first: 100, filter: {{search: "{word()}"}}) {{ totalCount }}'
                         for i in range(700)),
        lambda: "cachePerformance(scenario: LIST_PAGE, iterations: 200) { speedup }",
    ]
    with open(path, "w") as f:
        for i in range(n):
            k = i % (len(kinds) + 1)
            if k == len(kinds):
                # A persisted query registration of a fresh document.
                doc = f"{{ {word()}: __typename }}"
                digest = hashlib.sha256(doc.encode()).hexdigest()
                body = {"query": doc, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}}}
            else:
                body = {"query": "{ " + kinds[k]() + " }"}
            f.write(json.dumps(body) + "\n")
    return path


def redis_keys(prefix: str) -> int:
    return len(redis_cli("--scan", "--pattern", f"*{prefix}*").split())


def redis_used_memory() -> int:
    info = redis_cli("info", "memory")
    return int(next(l.split(":", 1)[1] for l in info.splitlines() if l.startswith("used_memory:")))


class SlowClients:
    """Holds `n` connections that sent half a request header, opening a new one whenever
    the server closes one, until stopped; counts what the server closed."""

    def __init__(self, port: int, n: int):
        self.port, self.n = port, n
        self.closed_by_server = 0
        self.opened = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _open(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        s.sendall(b"GET /graphql?query=%7B__typename%7D HTTP/1.1\r\nHost: x\r\n")
        s.setblocking(False)
        self.opened += 1
        return s

    def _run(self) -> None:
        sockets = []
        try:
            while not self._stop:
                while len(sockets) < self.n and not self._stop:
                    try:
                        sockets.append(self._open())
                    except OSError:
                        time.sleep(0.05)
                        break
                ready, _, _ = select.select(sockets[:1000], [], [], 0.2) if sockets else ([], [], [])
                for s in ready:
                    try:
                        data = s.recv(4096)
                    except OSError:
                        data = b""
                    if not data:
                        self.closed_by_server += 1
                        sockets.remove(s)
                        s.close()
        finally:
            for s in sockets:
                s.close()

    def stop(self) -> None:
        self._stop = True
        self._thread.join(timeout=10)


def hostile_runs(bench: "Bench", binary: str, base_env: dict, tmp: str, prefix: str) -> dict:
    """The normal client alone, then beside the abusive mix and the slow connections, on a
    server of its own (MAX_CONNECTIONS below the slow connections held)."""
    env = dict(base_env, CACHE_BACKEND="redis", MAX_CONNECTIONS=str(HOSTILE_MAX_CONNECTIONS),
               CACHE_FILL_BUDGET_PER_SEC=str(HOSTILE_FILL_BUDGET))
    server = Server(binary, env, tmp, "hostile")
    server.start()
    try:
        prewarm_products(server)
        d = bench.s["duration"]
        normal_load = ["-q", str(HOSTILE_NORMAL_RATE), "-z", f"{d}s", "-c", "16", "--latency-correction"]
        normal_cmd = oha_cmd(bench.oha, normal_load, oha_read_args(server.base, "product"))
        log(f"hostile: the normal client alone, {HOSTILE_NORMAL_RATE} req/s ({d} s)")
        before = server.snapshot()
        alone = summarize_oha(bench._run(normal_cmd, "hostile-alone", d))
        alone_server = server_figures(before, server.snapshot())

        bodies = hostile_bodies(os.path.join(tmp, "hostile.jsonl"))
        abuse_cmd = oha_cmd(bench.oha, ["-q", str(HOSTILE_ABUSE_RATE), "-z", f"{d}s", "-c", "8"],
                            ["-m", "POST", "-H", "content-type: application/json", "-Z", bodies,
                             server.base + "/graphql"])
        keys_before, memory_before = redis_keys(prefix), redis_used_memory()
        slow = SlowClients(server.port, HOSTILE_SLOW_CONNECTIONS)
        log(f"hostile: the normal client beside {HOSTILE_ABUSE_RATE} abusive req/s and "
            f"{HOSTILE_SLOW_CONNECTIONS} slow connections (cap {HOSTILE_MAX_CONNECTIONS}) ({d} s)")
        slow.start()
        time.sleep(1.0)
        started = time.monotonic()
        before, normal, abuse, after = bench._together(server, normal_cmd, abuse_cmd, "hostile")
        seconds = time.monotonic() - started
        slow.stop()
        keys_after, memory_after = redis_keys(prefix), redis_used_memory()
        n, a = summarize_oha(normal), summarize_oha(abuse)
        figures = server_figures(before, after)
        bound = keys_before + HOSTILE_FILL_BUDGET * (seconds + 1) + HOSTILE_FILL_BUDGET
        normal_errors = n["non_2xx"] + n["error_count"]
        result = {
            "id": "hostile/redis", "name": "hostile mix", "kind": "hostile", "cache": "redis",
            "normal_rate": HOSTILE_NORMAL_RATE, "abuse_rate": HOSTILE_ABUSE_RATE,
            "slow_connections": HOSTILE_SLOW_CONNECTIONS, "max_connections": HOSTILE_MAX_CONNECTIONS,
            "alone": alone, "alone_server": alone_server, "normal": n, "abuse": a,
            "abuse_status_codes": a["status_codes"],
            "slow_opened": slow.opened, "slow_closed_by_server": slow.closed_by_server,
            "redis_keys_before": keys_before, "redis_keys_after": keys_after,
            "redis_key_bound": int(bound),
            "redis_used_memory_before": memory_before, "redis_used_memory_after": memory_after,
            "sql_per_abusive_request": (figures["sql_reads_per_req"] or 0)
            * figures["server_requests"] / max(a["requests"], 1),
            "p99_limit_ms": 2 * (alone["p99_ms"] or 0),
            "normal_errors": normal_errors,
            "passed": (n["p99_ms"] or 1e9) <= 2 * (alone["p99_ms"] or 0) and normal_errors == 0
            and keys_after <= bound,
            # The table's columns, for the normal client under attack.
            "rps": n["rps"], "p50_ms": n["p50_ms"], "p99_ms": n["p99_ms"], "p99_9_ms": n["p99_9_ms"],
            "non_2xx": n["non_2xx"], "error_count": n["error_count"],
            **figures,
        }
        return result
    finally:
        server.stop()


def print_hostile(r: dict) -> None:
    a, n = r["alone"], r["normal"]
    print(f"hostile: normal client {r['normal_rate']} req/s: alone p50 {fmt(a['p50_ms'], '.2f')} ms, "
          f"p99 {fmt(a['p99_ms'], '.2f')} ms; beside the abuse p50 {fmt(n['p50_ms'], '.2f')} ms, "
          f"p99 {fmt(n['p99_ms'], '.2f')} ms (limit {fmt(r['p99_limit_ms'], '.2f')}), "
          f"{r['normal_errors']} errors")
    print(f"hostile: abuse {fmt(r['abuse']['rps'], ',.0f')} req/s, answers {r['abuse_status_codes']}; "
          f"{fmt(r['sql_per_abusive_request'], '.1f')} SQL statements per abusive request; "
          f"slow connections opened {r['slow_opened']}, closed by the server {r['slow_closed_by_server']}")
    print(f"hostile: Redis keys {r['redis_keys_before']} -> {r['redis_keys_after']} (bound "
          f"{r['redis_key_bound']}), used memory {r['redis_used_memory_before'] / 1e6:.1f} -> "
          f"{r['redis_used_memory_after'] / 1e6:.1f} MB; "
          f"{'PASSED' if r['passed'] else 'FAILED'}")

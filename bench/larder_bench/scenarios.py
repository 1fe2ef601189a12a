"""The measured runs: closed loop, lone client, a crowd of connections, fixed rate, the read/write mix and the list mix."""
from __future__ import annotations

import json
import os
import re
import time

from .consts import LIST_MIX_RATE, MUTATION, READS
from .lists import list_mix_bodies, stock_bodies, stock_levels
from .oha import mutation_bodies, oha_cmd, oha_finish, oha_mutation_args, oha_read_args, oha_start, summarize_oha
from .server import Server, server_figures
from .tools import psql


class Bench:
    def __init__(self, oha: str, settings: dict, tmp: str):
        self.oha, self.s, self.tmp = oha, settings, tmp
        self.n = 0

    def _path(self, name: str) -> str:
        self.n += 1
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
        return os.path.join(self.tmp, f"oha-{self.n:02d}-{safe}.json")

    def _run(self, cmd: list[str], name: str, seconds: float) -> dict:
        proc, out = oha_start(cmd, path := self._path(name))
        return oha_finish(proc, out, path, cmd, timeout=seconds + 60)

    def warm(self, server: Server, scenario: str, method: str = "GET") -> None:
        if self.s["warmup"] > 0:
            cmd = oha_cmd(self.oha, ["-z", f"{self.s['warmup']}s", "-c", str(self.s["connections"])],
                          oha_read_args(server.base, scenario, method, self.tmp))
            self._run(cmd, f"warmup-{scenario}", self.s["warmup"])

    def closed(self, server: Server, scenario: str, label: str, method: str = "GET",
               lone: bool = False, warm: bool = True) -> dict:
        """A closed-loop run; `lone`: one connection, LONE_REQUESTS sequential requests
        (the latency a single client sees), after the usual warm-up (unless `warm` is
        false: the caller warmed)."""
        if warm:
            self.warm(server, scenario, method)
        if lone:
            load = ["-n", str(self.s["lone_requests"]), "-c", "1"]
        else:
            load = ["-z", f"{self.s['duration']}s", "-c", str(self.s["connections"])]
        cmd = oha_cmd(self.oha, load, oha_read_args(server.base, scenario, method, self.tmp))
        time.sleep(0.2)
        before = server.snapshot()
        result = self._run(cmd, label, self.s["duration"] + 30)
        time.sleep(0.3)  # let the server finish what oha abandoned, so counters settle
        after = server.snapshot()
        cache = server.env["CACHE_BACKEND"]
        figures = server_figures(before, after)
        oha_figures = summarize_oha(result)
        if scenario == "health":  # not a GraphQL request: per request of oha's count
            n = oha_figures["requests"]
            figures["cpu_us_per_req"] = figures["server_cpu_s"] * 1e6 / n if n else None
        kind = "lone" if lone else "closed"
        return {"id": f"{scenario}-{method.lower()}-{kind}/{cache}", "name": label, "kind": kind,
                "cache": cache, "method": method, "scenario": scenario,
                "query": READS.get(scenario, "GET /health"), "command": cmd,
                **oha_figures, **figures}

    def crowd(self, server: Server, connections: int) -> dict:
        """Cached `product(id)` from `connections` connections (closed loop, 5 s request
        timeout, as wrk's --timeout 5s): errors, shed requests, hit rate, SQL/request."""
        load = ["-z", f"{self.s['duration']}s", "-c", str(connections), "-t", "5s"]
        cmd = oha_cmd(self.oha, load, oha_read_args(server.base, "product"))
        time.sleep(0.5)
        before = server.snapshot()
        result = self._run(cmd, f"crowd-{connections}", self.s["duration"] + 60)
        time.sleep(1.0)
        after = server.snapshot()
        cache = server.env["CACHE_BACKEND"]
        return {"id": f"product-crowd-{connections}/{cache}", "name": f"product at {connections} conns",
                "kind": "crowd", "cache": cache, "scenario": "product", "connections": connections,
                "query": READS["product"], "command": cmd,
                **summarize_oha(result), **server_figures(before, after)}

    def fixed_rate(self, server: Server, scenario: str, label: str) -> dict:
        load = ["-q", str(self.s["rate"]), "-z", f"{self.s['rate_duration']}s",
                "-c", str(self.s["rate_connections"]), "--latency-correction"]
        cmd = oha_cmd(self.oha, load, oha_read_args(server.base, scenario))
        time.sleep(0.2)
        before = server.snapshot()
        result = self._run(cmd, label, self.s["rate_duration"])
        time.sleep(0.3)
        after = server.snapshot()
        cache = server.env["CACHE_BACKEND"]
        return {"id": f"{scenario}-fixed-rate/{cache}", "name": label, "kind": "fixed-rate",
                "cache": cache,
                "query": READS[scenario], "command": cmd, "target_rps": self.s["rate"],
                **summarize_oha(result), **server_figures(before, after)}

    def _together(self, server: Server, read_cmd: list[str], write_cmd: list[str],
                  label: str) -> tuple[dict, dict, dict, dict]:
        """Runs a read and a write oha at once; server snapshots around both."""
        time.sleep(0.2)
        before = server.snapshot()
        rp, ro = oha_start(read_cmd, read_path := self._path(label + "-reads"))
        wp, wo = oha_start(write_cmd, write_path := self._path(label + "-writes"))
        try:
            reads = oha_finish(rp, ro, read_path, read_cmd, self.s["duration"] + 60)
            writes = oha_finish(wp, wo, write_path, write_cmd, self.s["duration"] + 60)
        finally:
            for p in (rp, wp):
                if p.poll() is None:
                    p.kill()
                    p.wait()
        time.sleep(0.3)
        return before, reads, writes, server.snapshot()

    def mix(self, server: Server, label: str, db: str) -> dict:
        c = self.s["connections"]
        writers = max(1, round(c / 10))
        readers = 9 * writers
        z = ["-z", f"{self.s['duration']}s"]
        read_cmd = oha_cmd(self.oha, [*z, "-c", str(readers)], oha_read_args(server.base, "product"))
        bodies = mutation_bodies(os.path.join(self.tmp, "mutations.jsonl"))
        write_cmd = oha_cmd(self.oha, [*z, "-c", str(writers)], oha_mutation_args(server.base, bodies))
        versions_before = int(psql("select sum(version) from products", db=db))
        before, reads, writes, after = self._together(server, read_cmd, write_cmd, label)
        versions_bumped = int(psql("select sum(version) from products", db=db)) - versions_before
        r, w = summarize_oha(reads), summarize_oha(writes)
        total = r["requests"] + w["requests"]
        cache = server.env["CACHE_BACKEND"]
        return {"id": f"mix/{cache}", "name": label, "kind": "mix", "cache": cache,
                "query": READS["product"], "mutation": MUTATION,
                "command": read_cmd, "write_command": write_cmd,
                "read_connections": readers, "write_connections": writers,
                "requests": total,
                "rps": (r["rps"] or 0) + (w["rps"] or 0),
                "write_fraction": (w["requests"] / total) if total else None,
                # Committed updates (sum of product versions): should equal the writes' 200s.
                "versions_bumped": versions_bumped,
                "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "p99_9_ms": r["p99_9_ms"],
                "non_2xx": r["non_2xx"] + w["non_2xx"],
                "error_count": r["error_count"] + w["error_count"],
                "reads": r, "writes": w,
                **server_figures(before, after)}


    def list_mix(self, server: Server, stream: str, rnd: int, db: str) -> dict:
        """Mixed list pages by POST (random page per request) at a fixed rate, with
        `updateProduct(stockQuantity)` of random products as 10% of the requests (two
        fixed-rate oha processes, 9:1 by requests), the stock levels from `stream`.
        Precise list invalidation keeps the pages hits: only a stock change that flips
        `inStock` retires a page (its category's and the all-products `inStock` page),
        so the round also counts the flips (list counters bumped, two per flip)."""
        rate = LIST_MIX_RATE
        z = ["-z", f"{self.s['duration']}s"]
        pages = list_mix_bodies(server, os.path.join(self.tmp, "list-mix.jsonl"))
        # Warm every page once, as every other scenario warms its reads.
        with open(pages) as f:
            for line in f:
                server.graphql(json.loads(line)["query"])
        read_cmd = oha_cmd(self.oha, [*z, "-q", str(rate * 9 // 10), "-c", "16"],
                           ["-m", "POST", "-H", "content-type: application/json", "-Z", pages,
                            server.base + "/graphql"])
        label = f"list mix, {stream} stock #{rnd}"
        bodies = stock_bodies(os.path.join(self.tmp, f"stock-{stream}-{rnd}.jsonl"), stream,
                              stock_levels(db))
        write_cmd = oha_cmd(self.oha, [*z, "-q", str(rate // 10), "-c", "4"],
                            oha_mutation_args(server.base, bodies))
        before, reads, writes, after = self._together(server, read_cmd, write_cmd, label)
        r, w = summarize_oha(reads), summarize_oha(writes)
        total = r["requests"] + w["requests"]
        cache = server.env["CACHE_BACKEND"]
        figures = server_figures(before, after)
        flips = figures["list_counters_bumped"] / 2
        return {"id": f"list-mix/{cache}/{stream}/{rnd}", "name": label, "kind": "list-mix",
                "cache": cache, "stream": stream,
                "query": f"{pages} (one page per line)", "mutation": MUTATION,
                "command": read_cmd, "write_command": write_cmd, "target_rps": rate,
                "requests": total, "rps": (r["rps"] or 0) + (w["rps"] or 0),
                "write_fraction": (w["requests"] / total) if total else None,
                # A stock write bumps two list counters when it flips `inStock` (its
                # category's and all products'), none otherwise; counted when delivered,
                # so exact while no invalidation waits for an outbox replay (0 cache errors).
                "instock_flips": flips,
                "flip_fraction": (flips / w["requests"]) if w["requests"] else None,
                "list_misses_per_flip": (figures["list_misses"] / flips) if flips else None,
                "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "p99_9_ms": r["p99_9_ms"],
                "non_2xx": r["non_2xx"] + w["non_2xx"],
                "error_count": r["error_count"] + w["error_count"],
                "reads": r, "writes": w,
                **figures}

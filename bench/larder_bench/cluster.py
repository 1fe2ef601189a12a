"""A local Redis Cluster of our own (3 masters, 3 replicas), per-node Redis figures, the cached reads on it, and Redis killed mid-run."""
from __future__ import annotations

from typing import TYPE_CHECKING

import os
import random
import socket
import subprocess
import threading
import time

from .checks import check_reads, prewarm_products
from .consts import READS, REDIS_PORT
from .output import fmt
from .server import Server
from .tools import free_port, log, out_of, run

if TYPE_CHECKING:
    from .scenarios import Bench


def node_info(port: int) -> dict:
    """INFO of one local Redis node: role, commands processed, CPU seconds."""
    text = out_of(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "info"])
    f = dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))
    return {"role": f.get("role", "?").strip(),
            "commands": int(f.get("total_commands_processed", 0)),
            "cpu": float(f.get("used_cpu_user", 0)) + float(f.get("used_cpu_sys", 0))}


class Nodes:
    """The Redis nodes a server uses, measured around a run: commands and CPU per
    request on each node (INFO deltas; each snapshot's own INFO is one command)."""

    def __init__(self, ports: list[int]):
        self.ports = ports

    def snapshot(self) -> dict:
        return {p: node_info(p) for p in self.ports}

    @staticmethod
    def figures(before: dict, after: dict, requests: int) -> dict:
        nodes = []
        for p in before:
            b, a = before[p], after[p]
            nodes.append({"port": p, "role": a["role"],
                          "commands_per_req": (a["commands"] - b["commands"] - 1) / requests if requests else None,
                          "cpu_us_per_req": (a["cpu"] - b["cpu"]) * 1e6 / requests if requests else None})
        masters = [n for n in nodes if n["role"] == "master"]
        total = lambda k: sum(n[k] or 0 for n in masters)
        return {"redis_nodes": nodes, "redis_commands_per_req": total("commands_per_req"),
                "redis_cpu_us_per_req": total("cpu_us_per_req"),
                "redis_busiest_cpu_us_per_req": max((n["cpu_us_per_req"] or 0 for n in masters), default=None)}


class LocalCluster:
    """3 masters + 3 replicas of redis-server --cluster-enabled on free loopback ports
    below 55535 (each node's bus is port + 10000), stopped by PID."""

    def __init__(self, tmp: str):
        self.dir = os.path.join(tmp, "cluster")
        os.makedirs(self.dir, exist_ok=True)
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        def free(p):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                    return True
                except OSError:
                    return False
        while len(self.ports) < 6:
            p = random.randrange(20_000, 22_000)  # bus ports 30000-31999: below the ephemeral range
            if p not in self.ports and free(p) and free(p + 10_000):
                self.ports.append(p)
        for p in self.ports:
            self.procs.append(subprocess.Popen(
                ["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--cluster-enabled", "yes",
                 "--cluster-config-file", f"nodes-{p}.conf", "--cluster-node-timeout", "1500",
                 "--dir", self.dir, "--dbfilename", f"dump-{p}.rdb", "--repl-diskless-sync-delay", "0"],
                stdout=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + 10
        while any(not self._answers(p) for p in self.ports):
            if time.monotonic() > deadline:
                raise RuntimeError("cluster nodes did not start")
            time.sleep(0.1)
        run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
             "--cluster-replicas", "1", "--cluster-yes"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not all("cluster_state:ok" in out_of(["redis-cli", "-p", str(p), "cluster", "info"])
                      for p in self.ports) or len(self.masters()) != 3:
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not settle")
            time.sleep(0.2)

    @staticmethod
    def _answers(p: int) -> bool:
        try:
            return out_of(["redis-cli", "-p", str(p), "ping"]) == "PONG"
        except subprocess.CalledProcessError:
            return False

    def masters(self) -> list[int]:
        return [p for p in self.ports if node_info(p)["role"] == "master"]

    def url(self) -> str:
        rest = "&".join(f"node=127.0.0.1:{p}" for p in self.ports[1:])
        return f"redis-cluster://127.0.0.1:{self.ports[0]}?{rest}"

    def keys_per_master(self) -> dict:
        return {p: int(out_of(["redis-cli", "-p", str(p), "dbsize"])) for p in self.masters()}

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.procs = []


def redis_killed_runs(bench: "Bench", binary: str, base_env: dict, tmp: str) -> list[dict]:
    """Cached product(id) at 256 connections on a redis-server of the bench's own: once as
    the baseline, once with that Redis killed (SIGKILL) halfway through. Every read must
    still answer (from Postgres), with p99 within 2x the baseline + 10 ms."""
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL, start_new_session=True)
    server = None
    results = []
    try:
        deadline = time.monotonic() + 10
        while not LocalCluster._answers(port):
            if time.monotonic() > deadline:
                raise RuntimeError("own redis-server did not start")
            time.sleep(0.1)
        server = Server(binary, dict(base_env, CACHE_BACKEND="redis", REDIS_URL=f"redis://127.0.0.1:{port}/"),
                        tmp, "redis-own")
        server.start()
        log(f"larder on its own Redis :{port} at {server.base}, pid {server.proc.pid}")
        prewarm_products(server)
        bench.warm(server, "product")
        log(f"crowd: product at 256 connections, baseline ({bench.s['duration']} s)")
        base = bench.crowd(server, 256)
        base.update(id="product-crowd-256-baseline/redis-own", name="product at 256 conns, own Redis")
        results.append(base)
        half = bench.s["duration"] / 2
        log(f"crowd: product at 256 connections, Redis killed after {half:.1f} s")
        killer = threading.Timer(half, redis.kill)
        killer.start()
        killed = bench.crowd(server, 256)
        killer.join()
        killed.update(id="product-crowd-256-redis-killed/redis-own",
                      name="product at 256 conns, Redis killed mid-run", killed_after_s=half,
                      p99_limit_ms=2 * (base["p99_ms"] or 0) + 10)
        results.append(killed)
    finally:
        if server:
            server.stop()
        if redis.poll() is None:
            redis.kill()
        redis.wait()
    return results


def cluster_table(results: list[dict]) -> str:
    head = ["scenario", "redis", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "RT/req",
            "cmds/req", "redis CPU µs/req", "busiest master", "hit %", "bad"]
    rows = []
    for r in results:
        rows.append([r["name"], r["redis"], fmt(r["rps"], ",.0f"), fmt(r["p50_ms"], ".2f"),
                     fmt(r["p99_ms"], ".2f"), fmt(r["cpu_us_per_req"], ",.0f"),
                     fmt(r["round_trips_per_req"], ".2f"), fmt(r["redis_commands_per_req"], ".2f"),
                     fmt(r["redis_cpu_us_per_req"], ".1f"), fmt(r["redis_busiest_cpu_us_per_req"], ".1f"),
                     fmt(None if r["cache_hit_rate"] is None else r["cache_hit_rate"] * 100, ".1f"),
                     str(r["non_2xx"] + r["error_count"] + r["graphql_errors"])])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(
        c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def cluster_runs(bench: "Bench", binary: str, base_env: dict, tmp: str, doc: dict) -> list[dict]:
    """The cached read scenarios on single Redis, then on a local cluster: larder's
    figures plus each Redis node's commands and CPU per request."""
    results = []
    cluster = LocalCluster(tmp)
    server = None
    try:
        log("starting a local Redis Cluster (3 masters + 3 replicas)")
        cluster.start()
        setups = [("single", base_env["REDIS_URL"], Nodes([int(REDIS_PORT)])),
                  ("cluster", cluster.url(), Nodes(cluster.ports))]
        for name, url, nodes in setups:
            server = Server(binary, dict(base_env, CACHE_BACKEND="redis", REDIS_URL=url), tmp, f"redis-{name}")
            server.start()
            log(f"larder on {name} Redis ({url}) at {server.base}, pid {server.proc.pid}")
            check_reads(server)
            prewarm_products(server)
            for scenario in READS:
                bench.warm(server, scenario)
                log(f"closed loop: {scenario} on {name} Redis ({bench.s['duration']} s)")
                before = nodes.snapshot()
                r = bench.closed(server, scenario, f"{scenario}", warm=False)
                after = nodes.snapshot()
                r.update(redis=name, **Nodes.figures(before, after, r["server_requests"]))
                r["id"] = f"{scenario}-get-closed/{name}"
                results.append(r)
            if name == "cluster":
                doc["cluster_keys_per_master"] = cluster.keys_per_master()
            server.stop()
            server = None
    finally:
        if server:
            server.stop()
        cluster.stop()
    return results

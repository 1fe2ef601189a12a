"""A larder process under test: starting and stopping it, its CPU time, and the counters /metrics reports, as figures per request."""
from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

from .consts import CLK_TCK
from .tools import free_port


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    # rest[0] is field 3 (state); utime is field 14, stime field 15.
    return int(rest[11]) + int(rest[12])


METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")


LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_LINE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        samples.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), value))
    return samples


def metric_sum(samples, name: str, **labels) -> float:
    return sum(v for n, l, v in samples
               if n == name and all(l.get(k) == want for k, want in labels.items()))


class Server:
    def __init__(self, binary: str, env: dict, workdir: str, name: str):
        self.binary, self.env, self.workdir, self.name = binary, env, workdir, name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(workdir, f"server-{name}.log")

    def start(self, timeout: float = 60) -> None:
        env = dict(self.env, BIND_ADDR=f"127.0.0.1:{self.port}")
        self.log_file = open(self.log_path, "w")
        # Own session: a Ctrl-C reaches only this script, which then stops the server
        # before dropping the database. cwd is a temp dir, so no stray .env is read.
        self.proc = subprocess.Popen([self.binary, "serve"], env=env, cwd=self.workdir,
                                     stdout=self.log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"larder exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"larder did not answer /health within {timeout} s:\n{self.log_tail()}")
        # /health answers before the Redis connection is up; give the cache a moment.
        want = self.env["CACHE_BACKEND"]
        deadline = time.monotonic() + 10
        while True:
            ready = json.loads(self.get("/ready"))
            if ready.get("cache", {}).get("connected") or want == "none":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"cache backend {want} not connected: {ready}")
            time.sleep(0.1)
        if ready.get("cache", {}).get("backend") != want:
            raise RuntimeError(f"server runs cache backend {ready.get('cache')}, wanted {want}")

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "log_file", None):
            self.log_file.close()

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.base + path, timeout=10) as r:
            return r.read().decode()

    def graphql(self, query: str, token: str | None = None) -> dict:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + "/graphql", method="POST", headers=headers,
                                     data=json.dumps({"query": query}).encode())
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"HTTP {e.code} for {query!r}: {e.read()[:500]!r}") from None
        if body.get("errors") or not body.get("data"):
            raise RuntimeError(f"GraphQL errors for {query!r}: {json.dumps(body)[:500]}")
        return body["data"]

    def rss_mb(self) -> float | None:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def snapshot(self) -> dict:
        samples = parse_metrics(self.get("/metrics"))
        return {
            "ticks": cpu_ticks(self.proc.pid),
            "graphql_requests": metric_sum(samples, "http_requests_total", route="/graphql"),
            "sql_read": metric_sum(samples, "db_statements_total", kind="read"),
            "sql_write": metric_sum(samples, "db_statements_total", kind="write"),
            "round_trips": metric_sum(samples, "cache_round_trips_total"),
            "cache_hits": metric_sum(samples, "cache_events_total", event="hit"),
            "cache_misses": metric_sum(samples, "cache_events_total", event="miss"),
            "cache_errors": metric_sum(samples, "cache_events_total", event="error"),
            "shed": metric_sum(samples, "http_requests_shed_total"),
            "db_refused": metric_sum(samples, "db_reads_refused_total"),
            "list_hits": metric_sum(samples, "cache_events_total", event="hit", kind="list"),
            "list_misses": metric_sum(samples, "cache_events_total", event="miss", kind="list"),
            "list_bumps": metric_sum(samples, "cache_events_total", event="invalidation", kind="list"),
            "graphql_errors": metric_sum(samples, "graphql_operations_total", outcome="error"),
            "client_cpu": client_cpu(),
            "time": time.monotonic(),
        }


def client_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def server_figures(before: dict, after: dict) -> dict:
    d = {k: after[k] - before[k] for k in before}
    n = d["graphql_requests"]
    per = lambda v: (v / n) if n else None
    looked_up = d["cache_hits"] + d["cache_misses"]
    return {
        "server_requests": int(n),
        "server_cpu_s": d["ticks"] / CLK_TCK,
        "cpu_us_per_req": per(d["ticks"] / CLK_TCK * 1e6),
        "sql_reads_per_req": per(d["sql_read"]),
        "sql_writes_per_req": per(d["sql_write"]),
        "round_trips_per_req": per(d["round_trips"]),
        "cache_hit_rate": (d["cache_hits"] / looked_up) if looked_up else None,
        "list_hit_rate": (d["list_hits"] / (d["list_hits"] + d["list_misses"]))
        if d["list_hits"] + d["list_misses"] else None,
        "list_misses": int(d["list_misses"]),
        # List counters bumped by writes (`catalog::lists::write_counters`).
        "list_counters_bumped": int(d["list_bumps"]),
        # Requests refused at MAX_IN_FLIGHT (503 OVERLOADED), database reads refused by
        # the read bound (OVERLOADED): both should be 0 at the loads the bench drives.
        "shed": int(d["shed"]),
        "db_refused": int(d["db_refused"]),
        # Cache commands that failed or timed out (CACHE_TIMEOUT_MS): served from the database.
        "cache_errors": int(d["cache_errors"]),
        # Operations answered with GraphQL errors (HTTP 200 or not): should be 0.
        "graphql_errors": int(d["graphql_errors"]),
        "client_cpu_s": d["client_cpu"],
        "wall_s": d["time"],
    }

#!/usr/bin/env python3
"""larder benchmark: one command, bounded time, fresh database, JSON + table out.

    python3 bench/run.py            # release build, full run (about 3 minutes plus the build)
    python3 bench/run.py --quick    # about 1 minute smoke run, short durations
    python3 bench/run.py --cluster  # the cached scenarios on single Redis and on a local
                                    # Redis Cluster (3 masters + 3 replicas), side by side
    python3 bench/run.py --list-mix # only the list mix rounds (pages + stock updates)
    python3 bench/run.py --hostile  # a normal client alone, then beside an anonymous
                                    # abusive mix (aliases, random filters, slow connections)

What it does (see bench/README.md for what each figure means):

1. `cargo build --release --bin larder` (skipped when LARDER_BIN names a binary).
2. Creates the database `larder_bench_<ts>` on the local Postgres, seeds 10,000
   products with `larder seed --products 10000`.
3. Starts larder with the Redis cache (unique CACHE_PREFIX), runs the cached scenarios,
   the fixed-rate run and the mutation mix with `oha`; restarts it with
   CACHE_BACKEND=none and runs the uncached scenarios.
4. For each scenario: throughput and latency from oha, and from the server's side CPU
   time (/proc/<pid>/stat), SQL statements and cache round trips (/metrics), per request.
5. Prints a table, writes <out>/<date>-<sha>.json and <out>/latest.json.
6. Always (also on Ctrl-C): stops the server, drops the database, deletes its Redis keys.

Python 3.11 standard library only. Environment overrides:
    LARDER_BIN   use this binary and skip the build (e.g. target/debug/larder)
    PGHOST, PGPORT, PGUSER (default 127.0.0.1, 5432, postgres), REDIS_HOST, REDIS_PORT
    OHA          path of the oha binary
    CACHE_GROUPS passed to the server (the cluster layout's hash-tag groups; see README)
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import random
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import traceback
import urllib.error
import urllib.parse
import urllib.request

# The checkout to build and describe; --repo changes it (to benchmark an older commit
# with this script, see bench/README.md).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "bench", "results")
OHA_VERSION = "1.16.0"
ADMIN_TOKEN = "bench-token"
PRODUCTS = 10_000
CLK_TCK = os.sysconf("SC_CLK_TCK")

PG_HOST = os.environ.get("PGHOST", "127.0.0.1")
PG_PORT = os.environ.get("PGPORT", "5432")
PG_USER = os.environ.get("PGUSER", "postgres")
REDIS_HOST = os.environ.get("REDIS_HOST", "127.0.0.1")
REDIS_PORT = os.environ.get("REDIS_PORT", "6379")

# The three read scenarios. Product ids 1000..9999 (uniform; all exist after seeding
# 10,000 products into an empty database). `{ID}` is replaced by a regex for oha's
# --rand-regex-url, or by a fixed id for the sanity check.
RANDOM_ID_REGEX = "[1-9][0-9]{3}"
READS = {
    "product": '{ product(id: "{ID}") { id name price } }',
    "list": "{ products(first: 20) { totalCount nodes { id name price stockQuantity category { id name } } } }",
    "category": '{ category(id: "1") { name productCount products(first: 20) { nodes { id name price } } } }',
}
# The mutation mix sends this with ids 1..10,000 and stock 0..499, one line per body,
# which oha picks at random for each request (-Z).
MUTATION = 'mutation {{ updateProduct(id: "{id}", input: {{ stockQuantity: {stock} }}) {{ version }} }}'
# Connection counts of the high-concurrency runs (cached product(id), closed loop).
CROWDS = (256, 2000, 5000)
# Requests/s of the list mix (pages 90%, stock updates 10%, by requests).
LIST_MIX_RATE = 2000
# The list mix's stock streams, both `updateProduct(stockQuantity)` of random products
# (`stock_bodies`), each run for two rounds: "shop" as a shop writes stock (sales, and
# now and then a restock), then "levels" (random levels, a restock wave at first).
STOCK_STREAMS = ("shop", "levels")
# Of the shop stream's writes, the share that restocks a sold-out product.
RESTOCK_SHARE = 0.01

FULL = dict(duration=15, warmup=3, connections=32, rate=3000, rate_duration=30, rate_connections=64,
            lone_requests=1000)
QUICK = dict(duration=3, warmup=1, connections=32, rate=3000, rate_duration=5, rate_connections=64,
             lone_requests=300)


class Interrupted(Exception):
    pass


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, **kw)


def out_of(cmd: list[str], **kw) -> str:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout.strip()


# ---------------------------------------------------------------------------- tools


def find_oha(install: bool) -> str:
    candidates = [os.environ.get("OHA"), shutil.which("oha"), os.path.expanduser("~/.cargo/bin/oha")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    if not install:
        sys.exit("bench: oha not found (set OHA, or drop --no-install)")
    log(f"oha not found: cargo install oha --locked --version {OHA_VERSION} (a few minutes, once)")
    run(["cargo", "install", "oha", "--locked", "--version", OHA_VERSION])
    path = os.path.expanduser("~/.cargo/bin/oha")
    if not os.path.isfile(path):
        sys.exit("bench: cargo install oha finished but ~/.cargo/bin/oha is missing")
    return path


def psql(sql: str, db: str = "postgres") -> str:
    return out_of(["psql", "-h", PG_HOST, "-p", PG_PORT, "-U", PG_USER, "-d", db,
                   "-v", "ON_ERROR_STOP=1", "-Atqc", sql])


def redis_cli(*args: str) -> str:
    return out_of(["redis-cli", "-h", REDIS_HOST, "-p", REDIS_PORT, *args])


def preflight() -> None:
    for tool in ("psql", "redis-cli", "git"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is not on PATH")
    try:
        psql("select 1")
    except subprocess.CalledProcessError as e:
        sys.exit(f"bench: cannot reach Postgres at {PG_HOST}:{PG_PORT} as {PG_USER}: {e.stderr.strip()}")
    try:
        if redis_cli("ping") != "PONG":
            raise subprocess.CalledProcessError(1, "redis-cli ping")
    except subprocess.CalledProcessError:
        sys.exit(f"bench: cannot reach Redis at {REDIS_HOST}:{REDIS_PORT}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- facts


def machine_facts() -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = None
    try:
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1) if mem_kb else None,
        "kernel": platform.release(),
        "hostname": socket.gethostname(),
    }


def git_facts() -> dict:
    def git(*a):
        try:
            return out_of(["git", *a], cwd=REPO)
        except subprocess.CalledProcessError:
            return ""
    return {
        "sha": git("rev-parse", "HEAD"),
        "short_sha": git("rev-parse", "--short", "HEAD") or "nogit",
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "subject": git("log", "-1", "--format=%s"),
    }


def versions(oha: str) -> dict:
    with open(os.path.join(REPO, "Cargo.toml"), "rb") as f:
        larder = tomllib.load(f)["package"]["version"]
    info = redis_cli("info", "server")
    redis = next((l.split(":", 1)[1].strip() for l in info.splitlines()
                  if l.startswith("redis_version:")), "unknown")
    try:
        rustc = out_of(["rustc", "--version"], cwd=REPO)
    except (OSError, subprocess.CalledProcessError):
        rustc = "unknown"
    return {
        "larder": larder,
        "oha": out_of([oha, "--version"]),
        "postgres": psql("select version()"),
        "redis": redis,
        "rustc": rustc,
        "python": platform.python_version(),
    }


# ---------------------------------------------------------------------------- server


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


# ---------------------------------------------------------------------------- oha


def read_url(base: str, query: str) -> str:
    return base + "/graphql?query=" + urllib.parse.quote(query, safe="")


def read_url_regex(base: str, query: str) -> str:
    """A --rand-regex-url pattern: the fixed parts escaped, `{ID}` a random id."""
    before, after = query.split("{ID}")
    return (regex_escape(base + "/graphql?query=" + urllib.parse.quote(before, safe=""))
            + RANDOM_ID_REGEX + regex_escape(urllib.parse.quote(after, safe="")))


def regex_escape(text: str) -> str:
    """Escapes regex syntax except `.`: oha escapes every dot of the pattern itself."""
    return re.sub(r"([\\^$*+?{}\[\]|()])", r"\\\1", text)


def oha_read_args(base: str, scenario: str, method: str = "GET", tmp: str = "") -> list[str]:
    """oha's target for a scenario: `health` is GET /health (the HTTP floor); reads go by
    GET (the query in the URL) or by POST (a JSON body; random ids through -Z)."""
    if scenario == "health":
        return [base + "/health"]
    query = READS[scenario]
    if method == "POST":
        post = ["-m", "POST", "-H", "content-type: application/json"]
        if "{ID}" in query:
            return [*post, "-Z", post_bodies(os.path.join(tmp, f"post-{scenario}.jsonl"), query),
                    base + "/graphql"]
        return [*post, "-d", json.dumps({"query": query}), base + "/graphql"]
    if "{ID}" in query:
        return ["--rand-regex-url", read_url_regex(base, query)]
    return [read_url(base, query)]


def post_bodies(path: str, query: str) -> str:
    """One JSON body per line, one per id the GET scenario draws from (1000..9999)."""
    with open(path, "w") as f:
        for i in range(1000, 10_000):
            f.write(json.dumps({"query": query.replace("{ID}", str(i))}) + "\n")
    return path


def mutation_bodies(path: str) -> str:
    """One JSON body per line, a random stock for each product id (seeded: repeatable)."""
    rng = random.Random(42)
    with open(path, "w") as f:
        for i in range(1, PRODUCTS + 1):
            query = MUTATION.format(id=i, stock=rng.randrange(500))
            f.write(json.dumps({"query": query}) + "\n")
    return path


def oha_mutation_args(base: str, bodies: str) -> list[str]:
    return ["-m", "POST", "-H", f"authorization: Bearer {ADMIN_TOKEN}",
            "-H", "content-type: application/json", "-Z", bodies, base + "/graphql"]


def oha_cmd(oha: str, load: list[str], target: list[str]) -> list[str]:
    return [oha, "--no-tui", "--output-format", "json", "--wait-ongoing-requests-after-deadline",
            "-H", "accept: application/json", *load, *target]


def oha_start(cmd: list[str], out_path: str) -> tuple[subprocess.Popen, object]:
    out = open(out_path, "w")
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, text=True), out


def oha_finish(proc: subprocess.Popen, out, out_path: str, cmd: list[str], timeout: float) -> dict:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"oha ran past {timeout:.0f} s: {' '.join(cmd)}")
    except BaseException:  # Ctrl-C, SIGTERM: never leave a load generator behind
        proc.kill()
        proc.wait()
        raise
    finally:
        out.close()
    if proc.returncode != 0:
        raise RuntimeError(f"oha failed ({proc.returncode}): {err.strip()}\n{' '.join(cmd)}")
    with open(out_path) as f:
        return json.load(f)


def summarize_oha(r: dict) -> dict:
    s = r.get("summary", {})
    p = r.get("latencyPercentiles", {}) or {}
    codes = {str(k): v for k, v in (r.get("statusCodeDistribution") or {}).items()}
    errors = r.get("errorDistribution") or {}
    ms = lambda v: None if v is None else v * 1000
    return {
        "requests": sum(codes.values()),
        "rps": s.get("requestsPerSec"),
        "success_rate": s.get("successRate"),
        "mean_ms": ms(s.get("average")),
        "p50_ms": ms(p.get("p50")),
        "p90_ms": ms(p.get("p90")),
        "p99_ms": ms(p.get("p99")),
        "p99_9_ms": ms(p.get("p99.9")),
        "max_ms": ms(s.get("slowest")),
        "status_codes": codes,
        "non_2xx": sum(v for k, v in codes.items() if not k.startswith("2")),
        "errors": errors,
        "error_count": sum(errors.values()),
    }


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


def list_mix_rounds(bench: "Bench", server: Server, db: str) -> list[dict]:
    """Two rounds of the list mix for each stock stream."""
    results = []
    for stream in STOCK_STREAMS:
        for rnd in (1, 2):
            log(f"list mix, {stream} stock, round {rnd}: pages and 10% stock updates at "
                f"{LIST_MIX_RATE} req/s ({bench.s['duration']} s)")
            results.append(bench.list_mix(server, stream, rnd, db))
    return results


def warn_bad(results: list[dict]) -> None:
    bad = [r["name"] for r in results if r["non_2xx"] or r["error_count"] or r["graphql_errors"]]
    if bad:
        print(f"warning: non-2xx answers, connection errors or GraphQL errors in: "
              f"{', '.join(bad)} (see status_codes, errors, graphql_errors in the JSON)")


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


# ---------------------------------------------------------------------------- checks


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



def prewarm_products(server: Server) -> None:
    """Fill the item cache for every seeded product, 100 ids per request."""
    for start in range(1, PRODUCTS + 1, 100):
        ids = ", ".join(f'"{i}"' for i in range(start, min(start + 100, PRODUCTS + 1)))
        data = server.graphql(f"{{ productsByIds(ids: [{ids}]) {{ id name price }} }}")
        if any(p is None for p in data["productsByIds"]):
            raise RuntimeError(f"products {start}..{start + 99} are not all there after seeding")


def check_reads(server: Server) -> None:
    """Each scenario's query answers with data and no errors, over GET like oha sends it."""
    for name, query in READS.items():
        url = read_url(server.base, query.replace("{ID}", "1234"))
        req = urllib.request.Request(url, headers={"accept": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = json.loads(r.read())
        if body.get("errors") or not body.get("data") or None in body["data"].values():
            raise RuntimeError(f"scenario {name}: unexpected answer {json.dumps(body)[:400]}")



def check_random_urls(oha: str, server: Server) -> None:
    """oha's own expansions of the --rand-regex-url pattern answer with existing products."""
    pattern = read_url_regex(server.base, READS["product"])
    urls = out_of([oha, "--rand-regex-url", "--dump-urls", "20", pattern]).split()
    if len(urls) != 20:
        raise RuntimeError(f"oha --dump-urls gave {len(urls)} URLs for {pattern}")
    for url in urls:
        if not url.startswith(server.base + "/graphql?query="):
            raise RuntimeError(f"oha expanded {pattern} to {url}")
        req = urllib.request.Request(url, headers={"accept": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = json.loads(r.read())
        if body.get("errors") or not (body.get("data") or {}).get("product"):
            raise RuntimeError(f"{url}: unexpected answer {json.dumps(body)[:400]}")


def check_mutation(server: Server) -> int:
    query = MUTATION.format(id=7, stock=5)
    return server.graphql(query, token=ADMIN_TOKEN)["updateProduct"]["version"]


# ---------------------------------------------------------------------------- output


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


# ---------------------------------------------------------------------------- Redis nodes


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
    import threading
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



# ---------------------------------------------------------------------------- hostile

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

# ---------------------------------------------------------------------------- main


def build() -> tuple[str, float]:
    log("cargo build --release --bin larder")
    log("note: a clean release build takes about 10 minutes on a 2-core machine; "
        "an incremental one after a small change takes well under a minute")
    started = time.monotonic()
    run(["cargo", "build", "--release", "--bin", "larder"], cwd=REPO)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    return os.path.join(target, "release", "larder"), time.monotonic() - started


def main() -> int:
    global REPO
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 3 s per scenario, 5 s fixed rate (about 1 minute)")
    ap.add_argument("--out", default=RESULTS,
                    help="directory for the JSON results (default: bench/results next to this script)")
    ap.add_argument("--repo", default=REPO,
                    help="larder checkout to build and benchmark (default: the one holding this script)")
    ap.add_argument("--duration", type=int, help="seconds per closed-loop scenario (15; quick 3)")
    ap.add_argument("--warmup", type=int, help="untimed seconds before each closed-loop scenario")
    ap.add_argument("--connections", type=int, help="oha connections, closed loop (32)")
    ap.add_argument("--rate", type=int, help="requests/s of the fixed-rate run (3000)")
    ap.add_argument("--rate-duration", type=int, help="seconds of the fixed-rate run (30; quick 5)")
    ap.add_argument("--no-install", action="store_true", help="fail instead of installing oha")
    ap.add_argument("--list-mix", action="store_true",
                    help="only the list mix rounds (cache on, both stock streams): about a minute")
    ap.add_argument("--hostile", action="store_true",
                    help="only the hostile run: a normal client alone, then beside an abusive mix")
    ap.add_argument("--cluster", action="store_true",
                    help="only the cached read scenarios, on single Redis and on a local Redis Cluster")
    args = ap.parse_args()
    REPO = os.path.abspath(args.repo)
    if not os.path.isfile(os.path.join(REPO, "Cargo.toml")):
        sys.exit(f"bench: {REPO} has no Cargo.toml")

    settings = dict(QUICK if args.quick else FULL)
    for k in ("duration", "warmup", "connections", "rate", "rate_duration"):
        if getattr(args, k) is not None:
            settings[k] = getattr(args, k)
    settings.update(quick=args.quick, products=PRODUCTS, db_max_connections=10,
                    random_ids=RANDOM_ID_REGEX, rate_latency_correction=True,
                    mix="product(id) reads and updateProduct writes (random ids, -Z) from two "
                        "concurrent oha processes, 9 read connections per write connection")

    def on_term(signum, frame):
        raise Interrupted(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    # Ctrl-C must reach the cleanup even when started from a shell that ignores SIGINT
    # in background jobs (Python then leaves SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    preflight()
    # oha at 5,000 connections needs as many descriptors (children inherit the limit).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    oha = find_oha(install=not args.no_install)
    oha_version = out_of([oha, "--version"])
    if not oha_version.startswith("oha " + OHA_VERSION.rsplit(".", 1)[0] + "."):
        log(f"warning: {oha_version} at {oha}; the flags used here were checked against "
            f"oha {OHA_VERSION} (cargo install oha --locked --version {OHA_VERSION})")
    binary = os.environ.get("LARDER_BIN")
    build_s = None
    if binary:
        binary = os.path.abspath(binary)
        log(f"LARDER_BIN={binary}: skipping the release build")
        if "/release/" not in binary:
            log("warning: not a release binary; the figures are for checking the plumbing only")
    else:
        binary, build_s = build()
    if not os.access(binary, os.X_OK):
        sys.exit(f"bench: {binary} is not an executable")

    ts = time.strftime("%Y%m%d%H%M%S") + f"_{os.getpid()}"
    db = f"larder_bench_{ts}"
    prefix = f"larder-bench-{ts}:"
    tmp = tempfile.mkdtemp(prefix="larder-bench-")
    base_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "DATABASE_URL": f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}",
        "REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/",
        "CACHE_PREFIX": prefix,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "SEED_DEMO": "false",
        "RUST_LOG": "warn",
        "DB_MAX_CONNECTIONS": str(settings["db_max_connections"]),
    }
    # Layout settings to compare (e.g. CACHE_GROUPS=4 python3 bench/run.py --cluster).
    for k in ("CACHE_GROUPS",):
        if os.environ.get(k):
            base_env[k] = os.environ[k]
    settings["server_env"] = {k: v for k, v in base_env.items() if k not in ("PATH", "HOME")}
    server: Server | None = None
    db_created = False
    results: list[dict] = []
    started = time.monotonic()
    try:
        doc = {
            "schema": 1,
            "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_facts(),
            "git": git_facts(),
            "versions": versions(oha),
            "binary": binary,
            "build_seconds": build_s,
            "settings": settings,
        }
        log(f"creating database {db}")
        psql(f'create database "{db}"')
        db_created = True
        log(f"seeding {PRODUCTS:,} products")
        seed_env = dict(base_env, CACHE_BACKEND="redis")
        t = time.monotonic()
        run([binary, "seed", "--products", str(PRODUCTS)], env=seed_env, cwd=tmp,
            stdout=subprocess.DEVNULL)
        doc["seed_seconds"] = round(time.monotonic() - t, 2)
        count = int(psql("select count(*) from products", db=db))
        if count != PRODUCTS:
            raise RuntimeError(f"expected {PRODUCTS} products after seeding, found {count}")
        bench = Bench(oha, settings, tmp)
        if args.cluster:
            results = cluster_runs(bench, binary, base_env, tmp, doc)
            doc["total_seconds"] = round(time.monotonic() - started, 1)
            doc["results"] = results
            settings["cluster"] = True
            print()
            print(f"larder {doc['versions']['larder']} @ {doc['git']['short_sha']}"
                  f"{' (dirty)' if doc['git']['dirty'] else ''}, {doc['machine']['cores']} cores "
                  f"{doc['machine']['cpu_model']}; {settings['duration']} s closed loop at "
                  f"-c {settings['connections']}, GET, single Redis vs a local cluster")
            print(cluster_table(results))
            print(f"cluster keys per master: {doc['cluster_keys_per_master']}; 'cmds/req' and "
                  "'redis CPU' sum the masters, 'busiest master' is the highest one's CPU")
            path = write_results(doc, args.out)
            print(f"\nwrote {path} and {os.path.join(args.out, 'latest.json')} "
                  f"({doc['total_seconds']} s in all)")
            return 0

        if args.hostile:
            result = hostile_runs(bench, binary, base_env, tmp, prefix)
            settings["hostile"] = True
            doc["total_seconds"] = round(time.monotonic() - started, 1)
            doc["results"] = [result]
            print()
            print(f"larder {doc['versions']['larder']} @ {doc['git']['short_sha']}"
                  f"{' (dirty)' if doc['git']['dirty'] else ''}, {doc['machine']['cores']} cores "
                  f"{doc['machine']['cpu_model']}; hostile run, {settings['duration']} s phases")
            print_hostile(result)
            path = write_results(doc, args.out)
            print(f"\nwrote {path} and {os.path.join(args.out, 'latest.json')} "
                  f"({doc['total_seconds']} s in all)")
            return 0 if result["passed"] else 1

        # --- cache on ---------------------------------------------------------------
        server = Server(binary, dict(base_env, CACHE_BACKEND="redis"), tmp, "redis")
        server.start()
        log(f"larder (cache redis) on {server.base}, pid {server.proc.pid}")
        check_reads(server)
        check_random_urls(oha, server)
        prewarm_products(server)
        if args.list_mix:
            results = list_mix_rounds(bench, server, db)
            server.stop()
            server = None
            settings["list_mix"] = True
            doc["total_seconds"] = round(time.monotonic() - started, 1)
            doc["results"] = results
            print()
            print(f"larder {doc['versions']['larder']} @ {doc['git']['short_sha']}"
                  f"{' (dirty)' if doc['git']['dirty'] else ''}, {doc['machine']['cores']} cores "
                  f"{doc['machine']['cpu_model']}; list mix only, {settings['duration']} s rounds")
            print(table(results))
            print_list_mix(results)
            warn_bad(results)
            path = write_results(doc, args.out)
            print(f"\nwrote {path} and {os.path.join(args.out, 'latest.json')} "
                  f"({doc['total_seconds']} s in all)")
            return 0
        log(f"closed loop: GET /health, the HTTP floor ({settings['duration']} s)")
        results.append(bench.closed(server, "health", "GET /health (floor)"))
        for scenario in READS:
            log(f"closed loop: {scenario}, cache on ({settings['duration']} s)")
            results.append(bench.closed(server, scenario, f"{scenario}"))
        for scenario in READS:
            log(f"closed loop: {scenario} by POST, cache on ({settings['duration']} s)")
            results.append(bench.closed(server, scenario, f"{scenario} POST", method="POST"))
        for scenario in ("product", "list"):
            log(f"lone client: {scenario}, {settings['lone_requests']} sequential requests")
            results.append(bench.closed(server, scenario, f"{scenario} lone client", lone=True))
        log(f"fixed rate: product, {settings['rate']} req/s for {settings['rate_duration']} s")
        results.append(bench.fixed_rate(server, "product", "product @ fixed rate"))
        v = check_mutation(server)
        log(f"mutation mix ({settings['duration']} s; product 7 is at version {v})")
        results.append(bench.mix(server, "mix 9:1 conns", db))
        for conns in CROWDS:
            log(f"crowd: product at {conns} connections ({settings['duration']} s)")
            results.append(bench.crowd(server, conns))
        results.extend(redis_killed_runs(bench, binary, base_env, tmp))
        results.extend(list_mix_rounds(bench, server, db))
        doc["rss_mb_after_cached_runs"] = server.rss_mb()
        server.stop()
        server = None

        # --- cache off --------------------------------------------------------------
        server = Server(binary, dict(base_env, CACHE_BACKEND="none"), tmp, "none")
        server.start()
        log(f"larder (cache none) on {server.base}, pid {server.proc.pid}")
        check_reads(server)
        for scenario in READS:
            log(f"closed loop: {scenario}, cache off ({settings['duration']} s)")
            results.append(bench.closed(server, scenario, f"{scenario}"))
        server.stop()
        server = None

        doc["total_seconds"] = round(time.monotonic() - started, 1)
        doc["results"] = results
        print()
        print(f"larder {doc['versions']['larder']} @ {doc['git']['short_sha']}"
              f"{' (dirty)' if doc['git']['dirty'] else ''}, {doc['machine']['cores']} cores "
              f"{doc['machine']['cpu_model']}; {'QUICK ' if args.quick else ''}"
              f"{settings['duration']} s closed loop at -c {settings['connections']}, "
              f"fixed rate {settings['rate']} req/s for {settings['rate_duration']} s")
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
        path = write_results(doc, args.out)
        print(f"\nwrote {path} and {os.path.join(args.out, 'latest.json')} "
              f"({doc['total_seconds']} s in all)")
        return 0
    except (KeyboardInterrupt, Interrupted) as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}): cleaning up")
        return 130
    except Exception as e:
        detail = getattr(e, "stderr", None)
        log(f"failed: {e}{(': ' + detail.strip()) if isinstance(detail, str) else ''}")
        if not isinstance(e, (RuntimeError, subprocess.CalledProcessError)):
            traceback.print_exc()
        if server:
            log(f"server log tail:\n{server.log_tail()}")
        return 1
    finally:
        # Ignore further Ctrl-C while cleaning up, so the database is always dropped.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if server:
            server.stop()
        if db_created:
            try:
                psql(f'drop database if exists "{db}" with (force)')
                log(f"dropped database {db}")
            except subprocess.CalledProcessError as e:
                log(f"could not drop {db}: {e.stderr.strip()}")
        try:
            keys = redis_cli("--scan", "--pattern", f"*{prefix}*").split()
            for i in range(0, len(keys), 500):
                redis_cli("unlink", *keys[i:i + 500])
            if keys:
                log(f"deleted {len(keys)} Redis keys under {prefix}")
        except subprocess.CalledProcessError as e:
            log(f"could not delete Redis keys under {prefix}: {e}")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

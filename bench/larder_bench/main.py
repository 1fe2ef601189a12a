"""The command line: one run mode (full, quick, --list-mix, --cluster, --hostile, --writes) on a fresh
database, with cleanup always (also after an error, Ctrl-C or SIGTERM)."""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

from . import consts
from .checks import check_mutation, check_random_urls, check_reads, prewarm_products
from .cluster import cluster_runs, cluster_table, redis_killed_runs
from .consts import (ADMIN_TOKEN, CROWDS, FULL, OHA_VERSION, PG_HOST, PG_PORT, PG_USER, PRODUCTS,
                     QUICK, RANDOM_ID_REGEX, READS, REDIS_HOST, REDIS_PORT)
from .facts import git_facts, machine_facts, versions
from .hostile import hostile_runs, print_hostile
from .lists import list_mix_rounds, print_list_mix
from .output import print_full_summary, table, warn_bad, write_results
from .scenarios import Bench
from .server import Server
from .tools import Interrupted, find_oha, log, out_of, preflight, psql, redis_cli, run
from .writes import print_writes, write_runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    catch_signals()
    preflight()
    # oha at 5,000 connections needs as many descriptors (children inherit the limit).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    oha = oha_binary(install=not args.no_install)
    binary, build_s = larder_binary()
    w = Workspace(settings)
    started = time.monotonic()
    try:
        doc = w.prepare(oha, binary, build_s)
        bench = Bench(oha, settings, w.tmp)
        mode = (run_cluster if args.cluster else run_hostile if args.hostile
                else run_list_mix if args.list_mix else run_writes if args.writes else run_full)
        code = mode(w, bench, binary, doc)
        doc["total_seconds"] = round(time.monotonic() - started, 1)
        path = write_results(doc, args.out)
        print(f"\nwrote {path} and {os.path.join(args.out, 'latest.json')} "
              f"({doc['total_seconds']} s in all)")
        return code
    except (KeyboardInterrupt, Interrupted) as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}): cleaning up")
        return 130
    except Exception as e:
        detail = getattr(e, "stderr", None)
        log(f"failed: {e}{(': ' + detail.strip()) if isinstance(detail, str) else ''}")
        if not isinstance(e, (RuntimeError, subprocess.CalledProcessError)):
            traceback.print_exc()
        if w.server:
            log(f"server log tail:\n{w.server.log_tail()}")
        return 1
    finally:
        w.clean_up()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="larder benchmark",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 3 s per scenario, 5 s fixed rate (about 1 minute)")
    ap.add_argument("--out", default=consts.RESULTS,
                    help="directory for the JSON results (default: bench/results next to this script)")
    ap.add_argument("--repo", default=consts.REPO,
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
    ap.add_argument("--writes", action="store_true",
                    help="only the write runs: lone writer, updates, creates, the 9:1 mix")
    ap.add_argument("--against", metavar="BIN",
                    help="with --writes: another larder binary to interleave with, round by round")
    ap.add_argument("--rounds", type=int,
                    help="with --writes: rounds per binary (default 3 with --against, else 1)")
    args = ap.parse_args(argv)
    if (args.against or args.rounds) and not args.writes:
        ap.error("--against and --rounds go with --writes")
    consts.REPO = os.path.abspath(args.repo)
    if not os.path.isfile(os.path.join(consts.REPO, "Cargo.toml")):
        sys.exit(f"bench: {consts.REPO} has no Cargo.toml")
    return args


def settings_from(args: argparse.Namespace) -> dict:
    settings = dict(QUICK if args.quick else FULL)
    for k in ("duration", "warmup", "connections", "rate", "rate_duration"):
        if getattr(args, k) is not None:
            settings[k] = getattr(args, k)
    settings.update(quick=args.quick, products=PRODUCTS, db_max_connections=10,
                    random_ids=RANDOM_ID_REGEX, rate_latency_correction=True,
                    list_mix=args.list_mix, cluster=args.cluster, hostile=args.hostile,
                    writes=args.writes,
                    against=os.path.abspath(args.against) if args.against else None,
                    rounds=args.rounds or (3 if args.against else 1),
                    mix="product(id) reads and updateProduct writes (random ids, -Z) from two "
                        "concurrent oha processes, 9 read connections per write connection")
    return settings


def catch_signals() -> None:
    def on_term(signum, frame):
        raise Interrupted(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    # Ctrl-C must reach the cleanup even when started from a shell that ignores SIGINT
    # in background jobs (Python then leaves SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)


def oha_binary(install: bool) -> str:
    oha = find_oha(install=install)
    version = out_of([oha, "--version"])
    if not version.startswith("oha " + OHA_VERSION.rsplit(".", 1)[0] + "."):
        log(f"warning: {version} at {oha}; the flags used here were checked against "
            f"oha {OHA_VERSION} (cargo install oha --locked --version {OHA_VERSION})")
    return oha


def larder_binary() -> tuple[str, float | None]:
    """LARDER_BIN, or a release build of the checkout (and how long it took)."""
    binary, build_s = os.environ.get("LARDER_BIN"), None
    if binary:
        binary = os.path.abspath(binary)
        log(f"LARDER_BIN={binary}: skipping the release build")
        if "/release/" not in binary:
            log("warning: not a release binary; the figures are for checking the plumbing only")
    else:
        log("cargo build --release --bin larder")
        log("note: a clean release build takes about 10 minutes on a 2-core machine; "
            "an incremental one after a small change takes well under a minute")
        started = time.monotonic()
        run(["cargo", "build", "--release", "--bin", "larder"], cwd=consts.REPO)
        target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(consts.REPO, "target")
        binary, build_s = os.path.join(target, "release", "larder"), time.monotonic() - started
    if not os.access(binary, os.X_OK):
        sys.exit(f"bench: {binary} is not an executable")
    return binary, build_s


@dataclasses.dataclass
class Workspace:
    """A run's database, Redis key prefix and temporary directory, the server settings
    every scenario starts from, and the cleanup of all of them."""
    settings: dict
    server: Server | None = None
    db_created: bool = False
    other_dbs: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        ts = time.strftime("%Y%m%d%H%M%S") + f"_{os.getpid()}"
        self.db, self.prefix = f"larder_bench_{ts}", f"larder-bench-{ts}:"
        self.tmp = tempfile.mkdtemp(prefix="larder-bench-")
        self.base_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "DATABASE_URL": f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.db}",
            "REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/",
            "CACHE_PREFIX": self.prefix,
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "SEED_DEMO": "false",
            "RUST_LOG": "warn",
            "DB_MAX_CONNECTIONS": str(self.settings["db_max_connections"]),
        }
        # Layout settings to compare (e.g. CACHE_GROUPS=4 python3 bench/run.py --cluster).
        for k in ("CACHE_GROUPS",):
            if os.environ.get(k):
                self.base_env[k] = os.environ[k]
        self.settings["server_env"] = {k: v for k, v in self.base_env.items()
                                       if k not in ("PATH", "HOME")}

    def prepare(self, oha: str, binary: str, build_s: float | None) -> dict:
        """The result document's facts; then the database, seeded with PRODUCTS products."""
        doc = {
            "schema": 1,
            "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_facts(), "git": git_facts(), "versions": versions(oha),
            "binary": binary, "build_seconds": build_s, "settings": self.settings,
        }
        log(f"creating database {self.db}")
        psql(f'create database "{self.db}"')
        self.db_created = True
        log(f"seeding {PRODUCTS:,} products")
        t = time.monotonic()
        run([binary, "seed", "--products", str(PRODUCTS)], env=dict(self.base_env, CACHE_BACKEND="redis"),
            cwd=self.tmp, stdout=subprocess.DEVNULL)
        doc["seed_seconds"] = round(time.monotonic() - t, 2)
        count = int(psql("select count(*) from products", db=self.db))
        if count != PRODUCTS:
            raise RuntimeError(f"expected {PRODUCTS} products after seeding, found {count}")
        return doc

    def start(self, binary: str, cache: str, oha: str | None = None) -> Server:
        """A server with `cache` on, checked to answer every scenario (and warmed)."""
        self.server = Server(binary, dict(self.base_env, CACHE_BACKEND=cache), self.tmp, cache)
        self.server.start()
        log(f"larder (cache {cache}) on {self.server.base}, pid {self.server.proc.pid}")
        check_reads(self.server)
        if cache != "none":
            check_random_urls(oha, self.server)
            prewarm_products(self.server)
        return self.server

    def stop(self) -> None:
        if self.server:
            self.server.stop()
            self.server = None

    def clean_up(self) -> None:
        # Ignore further Ctrl-C while cleaning up, so the database is always dropped.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.stop()
        for db in ([self.db] if self.db_created else []) + self.other_dbs:
            try:
                psql(f'drop database if exists "{db}" with (force)')
                log(f"dropped database {db}")
            except subprocess.CalledProcessError as e:
                log(f"could not drop {db}: {e.stderr.strip()}")
        try:
            keys = redis_cli("--scan", "--pattern", f"*{self.prefix}*").split()
            for i in range(0, len(keys), 500):
                redis_cli("unlink", *keys[i:i + 500])
            if keys:
                log(f"deleted {len(keys)} Redis keys under {self.prefix}")
        except subprocess.CalledProcessError as e:
            log(f"could not delete Redis keys under {self.prefix}: {e}")
        shutil.rmtree(self.tmp, ignore_errors=True)


def headline(doc: dict, what: str) -> None:
    print()
    print(f"larder {doc['versions']['larder']} @ {doc['git']['short_sha']}"
          f"{' (dirty)' if doc['git']['dirty'] else ''}, {doc['machine']['cores']} cores "
          f"{doc['machine']['cpu_model']}; {what}")


def run_full(w: Workspace, bench: Bench, binary: str, doc: dict) -> int:
    """Every scenario with the cache on, then the reads with it off."""
    s, results = w.settings, []
    server = w.start(binary, "redis", bench.oha)
    log(f"closed loop: GET /health, the HTTP floor ({s['duration']} s)")
    results.append(bench.closed(server, "health", "GET /health (floor)"))
    for method, suffix in (("GET", ""), ("POST", " POST")):
        for scenario in READS:
            log(f"closed loop: {scenario}{suffix}, cache on ({s['duration']} s)")
            results.append(bench.closed(server, scenario, f"{scenario}{suffix}", method=method))
    for scenario in ("product", "list"):
        log(f"lone client: {scenario}, {s['lone_requests']} sequential requests")
        results.append(bench.closed(server, scenario, f"{scenario} lone client", lone=True))
    log(f"fixed rate: product, {s['rate']} req/s for {s['rate_duration']} s")
    results.append(bench.fixed_rate(server, "product", "product @ fixed rate"))
    v = check_mutation(server)
    log(f"mutation mix ({s['duration']} s; product 7 is at version {v})")
    results.append(bench.mix(server, "mix 9:1 conns", w.db))
    for conns in CROWDS:
        log(f"crowd: product at {conns} connections ({s['duration']} s)")
        results.append(bench.crowd(server, conns))
    results.extend(redis_killed_runs(bench, binary, w.base_env, w.tmp))
    results.extend(list_mix_rounds(bench, server, w.db))
    doc["rss_mb_after_cached_runs"] = server.rss_mb()
    w.stop()
    server = w.start(binary, "none")
    for scenario in READS:
        log(f"closed loop: {scenario}, cache off ({s['duration']} s)")
        results.append(bench.closed(server, scenario, f"{scenario}"))
    w.stop()
    doc["results"] = results
    headline(doc, f"{'QUICK ' if s['quick'] else ''}{s['duration']} s closed loop at "
                  f"-c {s['connections']}, fixed rate {s['rate']} req/s for {s['rate_duration']} s")
    print_full_summary(results, s, doc)
    return 0


def run_list_mix(w: Workspace, bench: Bench, binary: str, doc: dict) -> int:
    server = w.start(binary, "redis", bench.oha)
    doc["results"] = results = list_mix_rounds(bench, server, w.db)
    w.stop()
    headline(doc, f"list mix only, {w.settings['duration']} s rounds")
    print(table(results))
    print_list_mix(results)
    warn_bad(results)
    return 0


def run_cluster(w: Workspace, bench: Bench, binary: str, doc: dict) -> int:
    doc["results"] = results = cluster_runs(bench, binary, w.base_env, w.tmp, doc)
    s = w.settings
    headline(doc, f"{s['duration']} s closed loop at -c {s['connections']}, GET, single Redis "
                  "vs a local cluster")
    print(cluster_table(results))
    print(f"cluster keys per master: {doc['cluster_keys_per_master']}; 'cmds/req' and "
          "'redis CPU' sum the masters, 'busiest master' is the highest one's CPU")
    return 0


def run_hostile(w: Workspace, bench: Bench, binary: str, doc: dict) -> int:
    result = hostile_runs(bench, binary, w.base_env, w.tmp, w.prefix)
    doc["results"] = [result]
    headline(doc, f"hostile run, {w.settings['duration']} s phases")
    print_hostile(result)
    return 0 if result["passed"] else 1


def run_writes(w: Workspace, bench: Bench, binary: str, doc: dict) -> int:
    """The write runs on this build and, with --against, interleaved with another."""
    s = w.settings
    binaries = [("this", binary, dict(w.base_env, CACHE_BACKEND="redis"), w.db)]
    if s["against"]:
        db = w.db + "_against"
        w.other_dbs.append(db)
        psql(f'create database "{db}"')
        env = dict(w.base_env, CACHE_BACKEND="redis", CACHE_PREFIX=w.prefix + "against:",
                   DATABASE_URL=w.base_env["DATABASE_URL"].rsplit("/", 1)[0] + "/" + db)
        log(f"seeding {PRODUCTS:,} products with {s['against']}")
        run([s["against"], "seed", "--products", str(PRODUCTS)], env=env, cwd=w.tmp,
            stdout=subprocess.DEVNULL)
        binaries.append(("against", s["against"], env, db))
    doc["results"] = results = write_runs(bench, binaries, s["rounds"])
    headline(doc, f"write runs, {s['duration']} s at -c {s['connections']}, {s['rounds']} round(s)")
    print_writes(results, [b[0] for b in binaries])
    warn_bad(results)
    return 0

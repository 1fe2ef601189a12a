#!/usr/bin/env python3
"""larder benchmark: one command, bounded time, fresh database, JSON + table out.

    python3 bench/run.py            # release build, full run (about 3 minutes plus the build)
    python3 bench/run.py --quick    # about 1 minute smoke run, short durations
    python3 bench/run.py --cluster  # the cached scenarios on single Redis and on a local
                                    # Redis Cluster (3 masters + 3 replicas), side by side
    python3 bench/run.py --list-mix # only the list mix rounds (pages + stock updates)
    python3 bench/run.py --hostile  # a normal client alone, then beside an anonymous
                                    # abusive mix (aliases, random filters, slow connections)

The code is the package `larder_bench/` next to this file (`main.py` reads the command
line and runs one mode; see its header for the rest). What it does (see bench/README.md
for what each figure means):

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
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from larder_bench.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

"""Small helpers: logging, running commands, oha (installed once), psql and redis-cli, the preflight check."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

from .consts import OHA_VERSION, PG_HOST, PG_PORT, PG_USER, REDIS_HOST, REDIS_PORT


class Interrupted(Exception):
    pass


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, **kw)


def out_of(cmd: list[str], **kw) -> str:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout.strip()


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

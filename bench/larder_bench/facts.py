"""Facts about the machine, the commit and the versions, recorded with every result."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import tomllib

from . import consts
from .tools import out_of, psql, redis_cli


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
            return out_of(["git", *a], cwd=consts.REPO)
        except subprocess.CalledProcessError:
            return ""
    return {
        "sha": git("rev-parse", "HEAD"),
        "short_sha": git("rev-parse", "--short", "HEAD") or "nogit",
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "subject": git("log", "-1", "--format=%s"),
    }


def versions(oha: str) -> dict:
    with open(os.path.join(consts.REPO, "Cargo.toml"), "rb") as f:
        larder = tomllib.load(f)["package"]["version"]
    info = redis_cli("info", "server")
    redis = next((l.split(":", 1)[1].strip() for l in info.splitlines()
                  if l.startswith("redis_version:")), "unknown")
    try:
        rustc = out_of(["rustc", "--version"], cwd=consts.REPO)
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

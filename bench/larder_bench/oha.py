"""Driving oha: the targets of each scenario (GET or POST, random ids), the request bodies, running it and reading its JSON."""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request

from .consts import ADMIN_TOKEN, MUTATION, PRODUCTS, RANDOM_ID_REGEX, READS


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

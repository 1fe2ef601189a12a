"""Sanity checks before measuring: every scenario answers with data, oha's random URLs name existing products, the cache is warm."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from .consts import ADMIN_TOKEN, MUTATION, PRODUCTS, READS
from .oha import read_url, read_url_regex
from .server import Server
from .tools import out_of


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

"""What the benchmark drives and where: the checkout, the services, the scenarios' queries, and
the durations of a full and a quick run."""
from __future__ import annotations

import os

# The checkout to build and describe; --repo changes it (to benchmark an older commit
# with this script, see bench/README.md).
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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

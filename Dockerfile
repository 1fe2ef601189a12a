# syntax=docker/dockerfile:1
#
# larder: the GraphQL catalog server, as a small non-root image.
#
#   docker build -t larder .
#   docker run --rm -p 8000:8000 larder            # embedded SQLite, in-process cache
#   docker compose up --build                      # with Postgres and Valkey (docker-compose.yml)
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts below.

ARG RUST_VERSION=1.95

# ---------------------------------------------------------------------------------------
# Builder: compiles the `larder` binary.
# ---------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /app

# The whole context (filtered by .dockerignore): Cargo.toml + Cargo.lock, the `migration`
# workspace member, src/, and tests/ (Cargo.toml declares the `api` test target, and cargo
# refuses a manifest whose target files are missing), plus frontend/ once it exists,
# since its files are embedded into the binary.
COPY . .

# The registry and target/ live in cache mounts, so a rebuild recompiles only what
# changed. A cache mount is not part of the image, so the binary is copied out of it.
# gcc (in the -slim image) is all the C that ring and the bundled SQLite need.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/app/target,sharing=locked \
    cargo build --release --locked --bin larder \
    && install -D -m 0755 target/release/larder /out/larder

# ---------------------------------------------------------------------------------------
# Runtime: Debian of the same release as the builder (same glibc), no toolchain.
# ---------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates for TLS connections to a managed database; curl for the health check
# in docker-compose.yml. Not version-pinned: bookworm's archive keeps only the current
# (security-patched) versions, so a pin would break the build at the next update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 10001 larder \
    && useradd --uid 10001 --gid larder --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin larder \
    && install -d -o larder -g larder -m 0755 /app

COPY --from=builder /out/larder /usr/local/bin/larder

# /app is the working directory, writable by larder: the default SQLite database
# (DATABASE_URL=sqlite://larder.db?mode=rwc) is created here when no DATABASE_URL is given.
WORKDIR /app
ENV BIND_ADDR=0.0.0.0:8000
EXPOSE 8000

# Numeric, so that Kubernetes' runAsNonRoot can verify it; 10001 is `larder`.
USER 10001:10001
# The binary is PID 1 and handles SIGTERM itself (graceful shutdown).
ENTRYPOINT ["/usr/local/bin/larder"]
# `docker run IMAGE schema` or `docker run IMAGE seed --products N` replace this.
CMD ["serve"]

#!/usr/bin/env bash
# Validates docker-compose.yml and checks the Dockerfile without a Docker engine:
#   bash .ci/check-compose.sh
# Installs Debian's docker-compose package (1.29.2 on Debian 12) when no docker-compose
# is on PATH, which needs root (or sudo) and Debian's package lists. Compose v2
# (`docker compose`), when present, checks the same file too.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() {
    echo "check-compose: FAIL: $*" >&2
    exit 1
}

[[ -f docker-compose.yml ]] || fail "docker-compose.yml not found in $PWD"
[[ -f Dockerfile ]] || fail "Dockerfile not found in $PWD"
[[ -f env.example ]] || fail "env.example not found in $PWD"

# --- docker-compose, installed from Debian when missing -------------------------------
if ! command -v docker-compose >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        fail "docker-compose is missing, and installing it needs root or sudo"
    fi
    log=$(mktemp)
    apt_install() {
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends docker-compose >>"$log" 2>&1
    }
    if ! apt_install; then
        # Stale or missing package lists: refresh once and retry.
        if ! { "${sudo[@]}" apt-get update -q >>"$log" 2>&1 && apt_install; }; then
            cat "$log" >&2
            rm -f "$log"
            fail "could not install Debian's docker-compose package"
        fi
    fi
    rm -f "$log"
fi

# --- the compose implementations to check with ----------------------------------------
composes=("docker-compose")
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    composes+=("docker compose")
fi

versions=()
for compose in "${composes[@]}"; do
    read -r -a cmd <<<"$compose"
    version=$("${cmd[@]}" version --short 2>/dev/null || "${cmd[@]}" version 2>/dev/null | head -n 1)
    versions+=("$compose $version")

    # 1. As a fresh checkout sees it: .env is optional (read if present, not required).
    "${cmd[@]}" -f docker-compose.yml config -q ||
        fail "$compose rejects docker-compose.yml"

    # 2. As after `cp env.example .env`: every value in env.example must interpolate, and
    #    the stack's own addresses must win over env.example's 127.0.0.1/SQLite ones.
    rendered=$("${cmd[@]}" --env-file "$PWD/env.example" -f docker-compose.yml config) ||
        fail "$compose rejects docker-compose.yml with env.example as .env"
    for expected in \
        'DATABASE_URL: ["'"'"']?postgres://larder:larder@db:5432/larder' \
        'REDIS_URL: ["'"'"']?redis://redis:6379/' \
        'BIND_ADDR: ["'"'"']?0\.0\.0\.0:8000' \
        'RUST_LOG: ["'"'"']?info,sqlx=warn,sea_orm=warn,fred=warn'; do
        grep -Eq "^[[:space:]]+$expected" <<<"$rendered" ||
            fail "$compose config with env.example: no line matching /$expected/"
    done
done

# --- every setting in env.example reaches the app container ---------------------------
for name in $(grep -oE '^#? ?[A-Z][A-Z0-9_]*=' env.example | tr -d '# ='); do
    grep -Eq "^      $name:" docker-compose.yml ||
        fail "docker-compose.yml does not pass $name (listed in env.example) to the app"
done

# --- Dockerfile: the runtime stage (after the last FROM) must end on a non-root USER ---
runtime_user=$(awk '
    toupper($1) == "FROM" { user = "" }
    toupper($1) == "USER" { user = $2 }
    END { print user }
' Dockerfile)
[[ -n $runtime_user ]] || fail "Dockerfile: the final stage sets no USER (it would run as root)"
case ${runtime_user%%:*} in
    root | 0) fail "Dockerfile: the final stage runs as root (USER $runtime_user)" ;;
esac

# --- .dockerignore: keep secrets and build output out of the build context ------------
for pattern in '.env' 'target/' '.git/'; do
    grep -qxF "$pattern" .dockerignore 2>/dev/null ||
        fail ".dockerignore does not exclude $pattern"
done

checked=$(printf '%s, ' "${versions[@]}")
printf 'check-compose: OK: docker-compose.yml is valid for %s (also with env.example as .env); Dockerfile runs as USER %s\n' \
    "${checked%, }" "$runtime_user"

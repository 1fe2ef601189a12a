#!/usr/bin/env bash
# Refreshes the vendored playground files in this folder from the npm registry and
# rewrites SOURCES.json (package, version, file, sha256, the tarball's integrity).
# Edit the versions below, run `bash frontend/vendor/graphiql/refresh.sh`, and commit
# the result; the browser test checks that the server serves exactly these bytes.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# package@version  file-in-package  name-here
files=(
  "graphiql@3.8.3 graphiql.min.js graphiql.min.js"
  "graphiql@3.8.3 graphiql.min.css graphiql.min.css"
  "graphiql@3.8.3 LICENSE LICENSE.graphiql"
  "react@18.3.1 umd/react.production.min.js react.production.min.js"
  "react@18.3.1 LICENSE LICENSE.react"
  "react-dom@18.3.1 umd/react-dom.production.min.js react-dom.production.min.js"
  "graphql-ws@5.16.2 umd/graphql-ws.min.js graphql-ws.min.js"
  "graphql-ws@5.16.2 LICENSE.md LICENSE.graphql-ws"
)

entries=()
for line in "${files[@]}"; do
  read -r spec inner name <<<"$line"
  dir="$work/${spec//[@\/]/_}"
  if [[ ! -d $dir ]]; then
    mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "$spec" >/dev/null && tar xzf ./*.tgz)
    integrity=$(cd "$dir" && npm view "$spec" dist.integrity)
    echo "$integrity" >"$dir/integrity"
  fi
  cp "$dir/package/$inner" "$here/$name"
  sum=$(sha256sum "$here/$name" | cut -d' ' -f1)
  entries+=("{\"file\": \"$name\", \"package\": \"${spec%@*}\", \"version\": \"${spec##*@}\", \"path\": \"$inner\", \"sha256\": \"$sum\", \"tarballIntegrity\": \"$(cat "$dir/integrity")\"}")
done

{
  echo '['
  for i in "${!entries[@]}"; do
    sep=','; [[ $i -eq $((${#entries[@]} - 1)) ]] && sep=''
    echo "  ${entries[$i]}$sep"
  done
  echo ']'
} >"$here/SOURCES.json"
echo "wrote $here/SOURCES.json"

#!/usr/bin/env bash
# Builds a real Consul agent from the Go module proxy (Debian has no package and these
# machines cannot reach GitHub or releases.hashicorp.com) and caches it per version, so
# CI builds it once per machine. Progress goes to stderr; the last stdout line is the
# binary's absolute path:  CONSUL=$(scripts/install-consul.sh | tail -1)
# A cold build takes ~8 min on 2 cores (module downloads included); a cached run is instant.
set -euo pipefail

# v1.16.3 is the newest MPL-2.0 release the Go proxy serves: v1.16.4 and v1.15.8 answer
# 403 "not available" there, and v1.17.0+ is BUSL. It builds unchanged with go1.26.
CONSUL_VERSION="${CONSUL_VERSION:-v1.16.3}"
dest_dir="${MESHLET_CACHE:-$HOME/.cache/meshlet}/consul/$CONSUL_VERSION"
bin="$dest_dir/consul"

if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
  echo "$bin"; exit 0
fi
command -v go >/dev/null || { echo "install-consul: Go is required (apt-get install golang-go)" >&2; exit 1; }

mkdir -p "$dest_dir"
dest_dir="$(cd "$dest_dir" && pwd)"; bin="$dest_dir/consul"
# Build next to the destination so the final mv is an atomic rename on one filesystem.
work="$(mktemp -d "$dest_dir/.build.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

echo "install-consul: building Consul $CONSUL_VERSION with $(go env GOVERSION) (several minutes)..." >&2
cd "$work"
export GONOSUMDB="github.com/hashicorp/consul${GONOSUMDB:+,$GONOSUMDB}"
json="$(go mod download -json "github.com/hashicorp/consul@$CONSUL_VERSION")" || { echo "$json" >&2; exit 1; }
src_dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
# The module cache is read-only; go needs to rewrite go.mod/go.sum.
cp -R "$src_dir" "$work/src" && chmod -R u+w "$work/src"
cd "$work/src"

# The root go.mod replaces its nested modules (api, sdk, proto-public, envoyextensions,
# troubleshoot...) with ./dirs that the module zip leaves out. Without the replaces they
# come from the proxy at the versions the tag's go.mod requires, which match the tag.
for mod in $(grep -E '=>[[:space:]]*\./' go.mod | sed -E 's/^[[:space:]]*(replace[[:space:]]+)?([^[:space:]]+).*/\2/'); do
  go mod edit -dropreplace="$mod"
done

# -mod=mod: go.sum lacks the nested modules (they were local), and they are the only lines
# it gains. The checksum DB reached through the proxy is incomplete (404 for
# envoyextensions@v0.4.1), so skip it for Consul's own modules only; every other
# dependency stays pinned by the tag's go.sum. No UI build: it is committed in uiserver/dist.
# Retried: the build downloads hundreds of modules, and one proxy hiccup should not fail
# a CI run; what was fetched stays in the module cache.
for attempt in 1 2 3; do
  if CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags '-s -w' -o "$work/consul" . >&2; then break; fi
  [ "$attempt" -lt 3 ] || { echo "install-consul: go build failed three times" >&2; exit 1; }
  echo "install-consul: go build attempt $attempt failed; retrying" >&2
  sleep $((attempt * 5))
done

"$work/consul" version >&2
mv -f "$work/consul" "$bin"
echo "$bin"

#!/usr/bin/env bash
# Builds the OpenTelemetry Collector the OTLP exporter's integration test sends to
# (test/interop/otel-collector: the collector's own OTLP receiver and file exporter,
# v0.161.0) from the Go module proxy, cached by the hash of its sources. Progress goes to
# stderr; the last stdout line is the binary's absolute path:
#   OTELCOL=$(scripts/otel-collector.sh | tail -1)
# A cold build takes about 2 minutes on 2 cores (module downloads included).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/test/interop/otel-collector"
command -v go >/dev/null || { echo "otel-collector: Go is required (apt-get install golang-go)" >&2; exit 1; }

hash="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)"
dest_dir="${MESHLET_CACHE:-$HOME/.cache/meshlet}/otelcol/$hash"
bin="$dest_dir/otelcol"
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"; exit 0
fi

mkdir -p "$dest_dir"
dest_dir="$(cd "$dest_dir" && pwd)"; bin="$dest_dir/otelcol"
tmp="$(mktemp "$dest_dir/.otelcol.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
echo "otel-collector: building with $(go env GOVERSION) (a minute or two)..." >&2
cd "$src"
# Retried: the build downloads a few hundred modules, and one proxy hiccup should not
# fail a CI run; what was fetched stays in the module cache. go.sum pins every one.
for attempt in 1 2 3; do
  if CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags '-s -w' -o "$tmp" . >&2; then break; fi
  [ "$attempt" -lt 3 ] || { echo "otel-collector: go build failed three times" >&2; exit 1; }
  echo "otel-collector: build failed, retrying ($attempt)..." >&2
  sleep 5
done
mv "$tmp" "$bin"
echo "$bin"

#!/usr/bin/env bash
# Runs a command with Node.js >= 22 first on PATH. The machines here ship Node 20
# (past end of life); when the local node is older, the official Node 24 binary is
# taken from the npm registry (package node-linux-<arch>, the one the `node@24`
# package installs) and cached, so a fresh machine needs nothing installed by hand.
set -euo pipefail
NODE_MAJOR_MIN=22
NODE_FETCH_RANGE="${MESHLET_NODE_RANGE:-24}"
CACHE="${MESHLET_CACHE:-$HOME/.cache/meshlet}"

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

local_node="$(command -v node || true)"
if [ -n "$local_node" ] && [ "$(node_major "$local_node")" -ge "$NODE_MAJOR_MIN" ]; then
  exec "$@"
fi

case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) echo "with-node: no Node binary package for $(uname -m)" >&2; exit 1 ;;
esac
dir="$CACHE/node-$NODE_FETCH_RANGE-linux-$arch"
if [ ! -x "$dir/bin/node" ]; then
  echo "with-node: local node is $("${local_node:-false}" -v 2>/dev/null || echo absent); fetching Node $NODE_FETCH_RANGE from the npm registry" >&2
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-$arch@$NODE_FETCH_RANGE" >/dev/null)
  tar -xzf "$tmp"/node-linux-*.tgz -C "$tmp"
  mkdir -p "$CACHE"
  rm -rf "$dir.partial" && mv "$tmp/package" "$dir.partial" && rm -rf "$dir" && mv "$dir.partial" "$dir"
  echo "with-node: using $("$dir/bin/node" -v) at $dir/bin/node" >&2
fi
export PATH="$dir/bin:$PATH"
exec "$@"

#!/usr/bin/env bash
# Builds the grpc-java test peer (test/interop/grpc-peer) and prints the absolute path of
# its jar as the last line of stdout (scripts/maven-peer.sh: cached by the hash of its
# sources, offline first, retried online).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$root/scripts/maven-peer.sh" grpc-peer "$root/test/interop/grpc-peer" pom.xml

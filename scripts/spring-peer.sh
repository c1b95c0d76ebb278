#!/usr/bin/env bash
# Builds the Spring Cloud test peer (test/interop/spring-peer) and prints the absolute path
# of its jar as the last line of stdout (scripts/maven-peer.sh: cached by the hash of its
# sources, offline first, retried online).
#   scripts/spring-peer.sh [boot3]   Spring Boot 3.5 / Spring Cloud 2025.0 (pom.xml)
#   scripts/spring-peer.sh boot4     Spring Boot 4.0 / Spring Cloud 2025.1 (pom-boot4.xml, same src/)
# Both lines run on Java 17.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${1:-boot3}" in
  boot3) pom=pom.xml ;;
  boot4) pom=pom-boot4.xml ;;
  *) echo "spring-peer: unknown peer '$1': boot3 or boot4" >&2; exit 1 ;;
esac
exec "$root/scripts/maven-peer.sh" spring-peer "$root/test/interop/spring-peer" "$pom"

#!/usr/bin/env bash
# Builds one of the Java test peers with Maven from Maven Central and prints the absolute
# path of its jar as the last line of stdout; progress goes to stderr.
#   scripts/maven-peer.sh NAME SOURCE_DIR POM
# NAME is the jar's name (target/NAME.jar) and the cache folder: the jar is cached under
#   ${MESHLET_CACHE:-$HOME/.cache/meshlet}/NAME/<hash of the pom and src/>/NAME.jar
# so a second call with the same sources returns at once. A build first tries Maven's
# offline mode (the local repository is warm after one build) and goes online only when
# something is missing, retrying a failed online build three times. Needs Java 17+ and
# Maven 3.6.3+ (installed from Debian's packages when missing and running as root).
# scripts/spring-peer.sh and scripts/grpc-peer.sh call it.
set -euo pipefail

name="$1"
src="$2"
pom="$3"
cache="${MESHLET_CACHE:-$HOME/.cache/meshlet}/$name"

fail() { echo "$name: $*" >&2; exit 1; }
[ -f "$src/$pom" ] || fail "no $src/$pom"
# A fresh machine may lack them: install from Debian's packages when we can.
if { ! command -v java >/dev/null || ! command -v mvn >/dev/null; } && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "$name: installing a JDK and Maven from Debian's packages" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven >&2
fi
command -v java >/dev/null || fail "java not found: install a JDK 17+ (Debian: apt-get install openjdk-17-jdk-headless)"
command -v mvn >/dev/null || fail "mvn not found: install Maven (Debian: apt-get install maven)"
java_major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p')"
[ "${java_major:-0}" -ge 17 ] || fail "java is version ${java_major:-unknown}; the peers need 17 or newer"

# The cache key covers every input of the build: the pom and each source file (path and content).
hash="$(cd "$src" && find "$pom" src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
dir="$cache/$hash"
jar="$dir/$name.jar"
if [ -f "$jar" ]; then
  echo "$jar"
  exit 0
fi

mkdir -p "$cache"
# Test files run in parallel and may all ask at once: one builds, the others wait for it.
exec 9>"$cache/.lock"
flock 9
if [ -f "$jar" ]; then
  echo "$jar"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Built in a copy so that no target/ appears in the work tree and a half-built jar is never cached.
cp "$src/$pom" "$work/pom.xml"
cp -R "$src/src" "$work/"
echo "$name: building $pom ($hash) with Maven (the first build downloads its dependencies from Maven Central)" >&2
start=$(date +%s)
if ! (cd "$work" && mvn -q -B -o -Dstyle.color=never -DskipTests package >"$work/offline.log" 2>&1); then
  # Online: a registry hiccup should not fail the whole run; Maven keeps what it fetched.
  built=""
  for attempt in 1 2 3; do
    if (cd "$work" && mvn -q -B -Dstyle.color=never -DskipTests package 1>&2); then built=1; break; fi
    echo "$name: maven build attempt $attempt failed" >&2
    sleep $((attempt * 5))
  done
  [ -n "$built" ] || fail "maven build failed three times (see above)"
fi
[ -f "$work/target/$name.jar" ] || fail "maven finished but $work/target/$name.jar is missing"
mkdir -p "$dir"
cp "$work/target/$name.jar" "$dir/$name.jar.partial"
mv "$dir/$name.jar.partial" "$jar"
echo "$name: built $pom in $(( $(date +%s) - start )) s" >&2
echo "$jar"

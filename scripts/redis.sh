#!/usr/bin/env bash
# Starts a throwaway Redis for the tests and benchmarks: `scripts/redis.sh [start] [PORT]`
# (default 16379), `scripts/redis.sh stop [PORT]`. Installs Debian's redis-server when it
# is missing, so a fresh CI machine needs nothing by hand. Listens on 127.0.0.1 only,
# keeps nothing on disk, and runs daemonized with its pidfile under a temp directory.
# Prints the URL to use as MESHLET_REDIS_URL. Exits 3 when the port is taken by another
# server (`npm test` then tries another port).
set -euo pipefail

cmd="${1:-start}"
case "$cmd" in
  start|stop) shift || true ;;
  [0-9]*) cmd=start ;;
  *) echo "usage: $0 [start|stop] [PORT]" >&2; exit 2 ;;
esac
port="${1:-16379}"
dir="${TMPDIR:-/tmp}/meshlet-redis-$port"
pidfile="$dir/redis.pid"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

if [ "$cmd" = stop ]; then
  if running; then
    pid="$(cat "$pidfile")"
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$dir"
  exit 0
fi

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "redis.sh: installing redis-server from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq >/dev/null
  $sudo_ apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  # The package starts a system instance on 6379 where an init system runs; ours is separate.
fi

if running && [ "$(timeout 1 redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then
  echo "redis://127.0.0.1:$port"
  exit 0
fi

mkdir -p "$dir"
rm -f "$dir/redis.log"
redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes \
  --daemonize yes --pidfile "$pidfile" --dir "$dir" --logfile "$dir/redis.log" \
  --save '' --appendonly no >/dev/null

# The server answering must be the one started here. When something else holds the port
# (a Redis or any other listener), ours cannot bind: it logs so and exits before writing
# its pidfile, and whatever holds the port must not be asked anything (it may never answer).
for _ in $(seq 1 100); do
  if grep -q 'Could not create server TCP listening socket' "$dir/redis.log" 2>/dev/null; then
    echo "redis.sh: 127.0.0.1:$port is taken by another server" >&2
    rm -rf "$dir"
    exit 3
  fi
  if running && [ "$(timeout 1 redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then
    echo "redis://127.0.0.1:$port"
    exit 0
  fi
  sleep 0.1
done
echo "redis.sh: redis-server did not answer PING on 127.0.0.1:$port within 10 s; see $dir/redis.log" >&2
cat "$dir/redis.log" >&2 || true
exit 1

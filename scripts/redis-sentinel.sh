#!/usr/bin/env bash
# A throwaway Redis primary, one replica and three Sentinels for the failover tests:
#   scripts/redis-sentinel.sh install          installs Debian's redis-server and redis-sentinel when missing
#   scripts/redis-sentinel.sh start [BASE]     primary on BASE, replica on BASE+1, Sentinels on BASE+2..BASE+4
#   scripts/redis-sentinel.sh start P R S1 S2 S3   the five ports given one by one
#   scripts/redis-sentinel.sh stop [BASE]      (BASE: the primary's port)
# (default BASE 16390). Listens on 127.0.0.1 only, keeps nothing on disk, runs daemonized
# with pidfiles under a temp directory. `start` prints the URL to give the limiter:
# redis+sentinel://127.0.0.1:<s1>,127.0.0.1:<s2>,127.0.0.1:<s3>/meshlet
# Sentinels decide quickly (down after 1 s, quorum 2) so that a test's failover takes a few seconds.
set -euo pipefail

cmd="${1:-start}"
shift || true
base="${1:-16390}"
dir="${TMPDIR:-/tmp}/meshlet-redis-sentinel-$base"
name=meshlet
primary=$base
if [ $# -ge 5 ]; then
  replica=$2
  sentinels=("$3" "$4" "$5")
else
  replica=$((base + 1))
  sentinels=($((base + 2)) $((base + 3)) $((base + 4)))
fi

install() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-sentinel >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    return
  fi
  echo "redis-sentinel.sh: installing redis-server and redis-sentinel from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  local sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq >/dev/null
  # The packages start system instances on 6379/26379 where an init system runs; ours are separate.
  $sudo_ apt-get install -y -qq --no-install-recommends redis-server redis-sentinel >/dev/null
}

stop_all() {
  for pidfile in "$dir"/*.pid; do
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
}

wait_ping() {
  for _ in $(seq 1 100); do
    [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  echo "redis-sentinel.sh: nothing answered PING on 127.0.0.1:$1 within 10 s; see $dir" >&2
  cat "$dir"/*.log >&2 || true
  return 1
}

case "$cmd" in
  install) install; command -v redis-sentinel; exit 0 ;;
  stop) stop_all; exit 0 ;;
  start) ;;
  *) echo "usage: $0 install | start [BASE] | stop [BASE]" >&2; exit 2 ;;
esac

install
stop_all
mkdir -p "$dir"
common=(--bind 127.0.0.1 --protected-mode yes --daemonize yes --dir "$dir" --save '' --appendonly no)
redis-server --port "$primary" --pidfile "$dir/redis-$primary.pid" --logfile "$dir/redis-$primary.log" "${common[@]}" >/dev/null
redis-server --port "$replica" --pidfile "$dir/redis-$replica.pid" --logfile "$dir/redis-$replica.log" \
  --replicaof 127.0.0.1 "$primary" "${common[@]}" >/dev/null
wait_ping "$primary"
wait_ping "$replica"
for _ in $(seq 1 100); do
  redis-cli -p "$replica" info replication 2>/dev/null | grep -q 'master_link_status:up' && break
  sleep 0.1
done

for port in "${sentinels[@]}"; do
  conf="$dir/sentinel-$port.conf"
  cat >"$conf" <<EOF
port $port
bind 127.0.0.1
protected-mode yes
daemonize yes
pidfile $dir/sentinel-$port.pid
logfile $dir/sentinel-$port.log
dir $dir
sentinel monitor $name 127.0.0.1 $primary 2
sentinel known-replica $name 127.0.0.1 $replica
sentinel down-after-milliseconds $name 1000
sentinel failover-timeout $name 5000
sentinel parallel-syncs $name 1
EOF
  redis-sentinel "$conf" >/dev/null
done
for port in "${sentinels[@]}"; do wait_ping "$port"; done
# Every Sentinel knows the replica and the other Sentinels before a failover can be agreed.
for _ in $(seq 1 150); do
  ready=1
  for port in "${sentinels[@]}"; do
    info="$(redis-cli -p "$port" sentinel master "$name" 2>/dev/null | tr '\n' ' ')"
    echo "$info" | grep -Eq 'num-slaves 1( |$)' || ready=0
    echo "$info" | grep -Eq 'num-other-sentinels 2( |$)' || ready=0
  done
  [ "$ready" = 1 ] && break
  sleep 0.1
done
[ "$ready" = 1 ] || { echo "redis-sentinel.sh: the Sentinels did not discover each other within 15 s; see $dir" >&2; exit 1; }
echo "redis+sentinel://127.0.0.1:${sentinels[0]},127.0.0.1:${sentinels[1]},127.0.0.1:${sentinels[2]}/$name"

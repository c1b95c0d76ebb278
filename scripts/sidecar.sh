#!/usr/bin/env bash
# A local reverse proxy standing in for a mesh sidecar, for bench/sidecar.ts:
#   scripts/sidecar.sh start UPSTREAM_PORT [LISTEN_PORT]   prints the port it listens on
#   scripts/sidecar.sh stop [LISTEN_PORT]
# nginx from Debian's packages (installed when missing: apt-get update once, then
# nginx-light, else nginx), one worker, access log off, HTTP/1.1 keep-alive to the
# upstream and to clients, on 127.0.0.1 only. Its config, pid and error log live in a temp
# directory per listen port (default 18080), removed by `stop`.
set -euo pipefail

cmd="${1:-}"
case "$cmd" in
  start) upstream="${2:?usage: $0 start UPSTREAM_PORT [LISTEN_PORT]}"; port="${3:-18080}" ;;
  stop) port="${2:-18080}" ;;
  *) echo "usage: $0 start UPSTREAM_PORT [LISTEN_PORT] | $0 stop [LISTEN_PORT]" >&2; exit 2 ;;
esac
dir="${TMPDIR:-/tmp}/meshlet-sidecar-$port"
pidfile="$dir/nginx.pid"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

if [ "$cmd" = stop ]; then
  if running; then
    pid="$(cat "$pidfile")"
    kill -QUIT "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid"
  fi
  rm -rf "$dir"
  exit 0
fi

nginx_bin="$(command -v nginx || true)"
[ -z "$nginx_bin" ] && [ -x /usr/sbin/nginx ] && nginx_bin=/usr/sbin/nginx
if [ -z "$nginx_bin" ]; then
  echo "sidecar.sh: installing nginx from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq >/dev/null
  # nginx-light is enough (proxy and upstream keep-alive are core modules); newer Debian
  # releases fold it into nginx. Where an init system runs, the package starts a system
  # instance on port 80; ours is separate.
  $sudo_ apt-get install -y -qq --no-install-recommends nginx-light >/dev/null 2>&1 ||
    $sudo_ apt-get install -y -qq --no-install-recommends nginx >/dev/null
  nginx_bin=/usr/sbin/nginx
fi

if running; then
  echo "sidecar.sh: a sidecar already runs on port $port (pid $(cat "$pidfile")); stop it first" >&2
  exit 1
fi

rm -rf "$dir"
mkdir -p "$dir/tmp"
chmod 777 "$dir/tmp"
cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon on;
pid $pidfile;
error_log $dir/error.log warn;
events { worker_connections 4096; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  upstream app {
    server 127.0.0.1:$upstream;
    keepalive 128;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF

"$nginx_bin" -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" || {
  echo "sidecar.sh: nginx did not start; see $dir/error.log" >&2
  cat "$dir/error.log" >&2 || true
  exit 1
}
for _ in $(seq 1 100); do
  if running && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "$port"
    exit 0
  fi
  sleep 0.1
done
echo "sidecar.sh: nginx did not listen on 127.0.0.1:$port within 10 s; see $dir/error.log" >&2
cat "$dir/error.log" >&2 || true
exit 1

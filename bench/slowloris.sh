#!/usr/bin/env bash
# Slow clients against weir, nginx and HAProxy in one run, with the same limits: a whole
# request head within 10 s, and (for the lock-out test) 2,000 client connections at most.
#
#   hold:    3,000 slowloris connections, a header line every 10 s: how many does each
#            proxy still hold at 5, 13, 20, 30 and 48 s?
#   lockout: 3,000 reconnecting slowloris connections against a 2,000-connection limit,
#            and a normal client making 200 requests, each on a new connection: how many
#            are served?
#
# Usage: bench/slowloris.sh [--only weir,nginx,haproxy] [--modes hold,lockout] [--limit 2000] [--conns 3000]
# Needs: nginx, haproxy, python3; `cargo build --release --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."
ONLY="weir,nginx,haproxy"; MODES="hold,lockout"; LIMIT=2000; CONNS=3000
while [ $# -gt 0 ]; do
  case "$1" in
    --only) ONLY=$2; shift 2;;
    --modes) MODES=$2; shift 2;;
    --limit) LIMIT=$2; shift 2;;
    --conns) CONNS=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
for t in nginx haproxy python3; do command -v $t >/dev/null || { echo "missing $t (apt-get install nginx haproxy python3)" >&2; exit 2; }; done
WEIR=target/release/weir; BENCH=target/release/weir-bench
[ -x $WEIR ] && [ -x $BENCH ] || { echo "build first: cargo build --release --workspace" >&2; exit 2; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

TMP=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf $TMP' EXIT
PORT=18180; ADMIN=18181; B1=127.0.0.1:19201
$BENCH backend --listen $B1 --name b1 --threads 1 >/dev/null 2>&1 &
sleep 0.5

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

# start_proxy NAME MAXCONN
start_proxy() {
  local name=$1 max=$2
  case $name in
    weir)
      cat > $TMP/weir.yaml <<EOF
apiVersion: weir.dev/v1alpha1
kind: Proxy
metadata: {name: bench}
spec:
  listeners:
    - {name: web, address: "127.0.0.1:$PORT"}
  admin: {address: "127.0.0.1:$ADMIN"}
  limits: {maxConnections: $max, headerTimeout: 10s}
  routes:
    - {name: app, backends: [{service: app}]}
---
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {name: app}
spec: {endpoints: ["$B1"]}
EOF
      setsid $WEIR serve -c $TMP/weir.yaml --workers 1 --no-watch --log-level warn >$TMP/weir.log 2>&1 &
      ;;
    nginx)
      mkdir -p $TMP/nginx
      # worker_connections counts upstream connections too: a few more than the clients'.
      cat > $TMP/nginx.conf <<EOF
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log crit;
events { worker_connections $((max + 16)); }
http {
    access_log off;
    client_header_timeout 10s;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    upstream backend { server $B1; keepalive 16; }
    server {
        listen 127.0.0.1:$PORT;
        location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
      setsid nginx -c $TMP/nginx.conf -e $TMP/nginx/error.log >$TMP/nginx.log 2>&1 &
      ;;
    haproxy)
      cat > $TMP/haproxy.cfg <<EOF
global
    nbthread 1
    maxconn $max
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    http-reuse always
frontend web
    bind 127.0.0.1:$PORT
    maxconn $max
    default_backend app
backend app
    server s1 $B1
EOF
      setsid haproxy -f $TMP/haproxy.cfg -db >$TMP/haproxy.log 2>&1 &
      ;;
  esac
  PROXY_PID=$!
  wait_port $PORT
}

stop_proxy() { kill -TERM -- -$PROXY_PID 2>/dev/null || true; wait $PROXY_PID 2>/dev/null || true; sleep 0.5; }

if [[ ",$MODES," == *,hold,* ]]; then
echo "== hold: $CONNS slowloris connections, a header line every 10 s, headers due within 10 s"
for p in ${ONLY//,/ }; do
  start_proxy $p $((CONNS * 2))
  echo "-- $p"
  python3 bench/slowloris.py hold $PORT --conns $CONNS --interval 10
  stop_proxy
done
fi

if [[ ",$MODES," == *,lockout,* ]]; then
echo "== lockout: $CONNS reconnecting slowloris connections, limit $LIMIT connections, 200 normal requests"
for p in ${ONLY//,/ }; do
  start_proxy $p $LIMIT
  echo "-- $p"
  python3 bench/slowloris.py lockout $PORT --conns $CONNS --interval 10 --probes 200
  stop_proxy
done
fi

#!/usr/bin/env bash
# CPU time per proxied request, weir against nginx and HAProxy, in one run.
#
# The proxy under test is pinned to core 0; the fake backend and the load generator
# share core 1. CPU per request = (utime + stime of the proxy's whole process group over
# the measured run, from /proc) / requests served, so it stays fair when the load side
# saturates first.
#
# Usage: bench/compare.sh [--duration 10] [--connections 64] [--rounds 3] [--h2] [--only weir,nginx,haproxy]
#   --only may name weir-base too: another weir binary (WEIR_BASE=path), e.g. a build of
#   an earlier commit, measured in the same run to show what a change costs.
# Needs: nginx, haproxy, wrk (and h2load with --h2), taskset; `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=10; CONNS=64; ROUNDS=3; H2=0; ONLY="weir,weir-nomeasure,nginx,haproxy"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DUR=$2; shift 2;;
    --connections) CONNS=$2; shift 2;;
    --rounds) ROUNDS=$2; shift 2;;
    --h2) H2=1; shift;;
    --only) ONLY=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
for t in nginx haproxy wrk taskset; do command -v $t >/dev/null || { echo "missing $t (apt-get install nginx haproxy wrk util-linux)" >&2; exit 2; }; done
[ $H2 = 1 ] && { command -v h2load >/dev/null || { echo "missing h2load (apt-get install nghttp2-client)" >&2; exit 2; }; }
WEIR=${WEIR:-target/release/weir}; BENCH=${BENCH:-target/release/weir-bench}
[ -x $WEIR ] && [ -x $BENCH ] || { echo "build first: cargo build --release --workspace" >&2; exit 2; }

TMP=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf $TMP' EXIT
PORT=18080; ADMIN=18081; B1=127.0.0.1:19101; B2=127.0.0.1:19102
TCK=$(getconf CLK_TCK)

taskset -c 1 $BENCH backend --listen $B1 --name b1 --threads 1 >/dev/null 2>&1 &
taskset -c 1 $BENCH backend --listen $B2 --name b2 --threads 1 >/dev/null 2>&1 &
sleep 0.5

# utime and stime ticks summed over a process group: "user sys".
group_ticks() {
  local pg=$1 us=0 sy=0
  for p in $(pgrep -g "$pg"); do
    if [ -r /proc/$p/stat ]; then
      # fields after the ')' : state is $1, utime $12, stime $13
      read -r u s < <(sed 's/^.*) //' /proc/$p/stat | awk '{print $12, $13}')
      us=$((us + u)); sy=$((sy + s))
    fi
  done
  echo "$us $sy"
}

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

start_proxy() {
  local name=$1 h2arg=""
  case $name in
    weir|weir-nomeasure|weir-base)
      sed "s/__PORT__/$PORT/; s/__ADMIN__/$ADMIN/; s/__BACKEND__/$B1/; s/__BACKEND2__/$B2/" bench/peers/weir.yaml > $TMP/weir.yaml
      local extra=""; [ $name = weir-nomeasure ] && extra="--no-measure"
      local bin=$WEIR; [ $name = weir-base ] && bin=${WEIR_BASE:?"weir-base needs WEIR_BASE=path/to/an/older/weir"}
      setsid taskset -c 0 $bin serve -c $TMP/weir.yaml --workers 1 --no-watch --log-level warn $extra >$TMP/$name.log 2>&1 &
      ;;
    nginx)
      [ $H2 = 1 ] && h2arg="http2"
      mkdir -p $TMP/nginx
      sed "s#__PORT__#$PORT#; s#__BACKEND__#$B1#; s#__DIR__#$TMP/nginx#g; s#__H2__#$h2arg#" bench/peers/nginx.conf > $TMP/nginx.conf
      setsid taskset -c 0 nginx -c $TMP/nginx.conf -e $TMP/nginx/error.log >$TMP/nginx.log 2>&1 &
      ;;
    haproxy)
      [ $H2 = 1 ] && h2arg="proto h2"
      sed "s#__PORT__#$PORT#; s#__BACKEND__#$B1#; s#__H2__#$h2arg#" bench/peers/haproxy.cfg > $TMP/haproxy.cfg
      setsid taskset -c 0 haproxy -f $TMP/haproxy.cfg -db >$TMP/haproxy.log 2>&1 &
      ;;
  esac
  PROXY_PID=$!
  wait_port $PORT
}

stop_proxy() { kill -TERM -- -$PROXY_PID 2>/dev/null || true; wait $PROXY_PID 2>/dev/null || true; sleep 0.3; }

run_load() {
  if [ $H2 = 1 ]; then
    taskset -c 1 h2load -c $CONNS -m 1 -D $DUR --warm-up-time=1 http://127.0.0.1:$PORT/ > $TMP/load.out 2>&1
    REQS=$(awk '/^requests:/ {print $8}' $TMP/load.out)
    P50=$(awk '/time for request:/ {print $6}' $TMP/load.out)
    P99="n/a"
  else
    taskset -c 1 wrk -t1 -c $CONNS -d ${DUR}s --latency http://127.0.0.1:$PORT/ > $TMP/load.out 2>&1
    REQS=$(awk '/requests in/ {print $1}' $TMP/load.out)
    P50=$(awk '$1=="50%" {print $2}' $TMP/load.out)
    P99=$(awk '$1=="99%" {print $2}' $TMP/load.out)
    NON2XX=$(awk "/Non-2xx/ {print \$5}" $TMP/load.out); if [ -n "$NON2XX" ]; then echo "  warning: $NON2XX non-2xx responses" >&2; fi
  fi
}

declare -A CPU
printf "%-16s %6s %10s %9s %9s %12s %9s %9s\n" proxy round "req/s" p50 p99 "cpu µs/req" user sys
for round in $(seq $ROUNDS); do
  for name in ${ONLY//,/ }; do
    start_proxy $name
    # warm up connections and caches
    taskset -c 1 wrk -t1 -c $CONNS -d 1s http://127.0.0.1:$PORT/ >/dev/null 2>&1 || true
    read -r u0 y0 < <(group_ticks $PROXY_PID); s0=$(date +%s.%N)
    run_load
    read -r u1 y1 < <(group_ticks $PROXY_PID); s1=$(date +%s.%N)
    stop_proxy
    per() { awk -v a=$1 -v b=$2 -v n=$REQS -v tck=$TCK 'BEGIN{ if (n>0) printf "%.2f", (b-a)/tck*1e6/n; else print "nan"}'; }
    cpu_us=$(per $((u0 + y0)) $((u1 + y1)))
    rps=$(awk -v n=$REQS -v a=$s0 -v b=$s1 'BEGIN{printf "%.0f", n/(b-a)}')
    printf "%-16s %6s %10s %9s %9s %12s %9s %9s\n" $name $round $rps $P50 $P99 $cpu_us $(per $u0 $u1) $(per $y0 $y1)
    CPU[$name]="${CPU[$name]:-} $cpu_us"
  done
done
echo
echo "median CPU µs per request over $ROUNDS rounds ($([ $H2 = 1 ] && echo h2c || echo HTTP/1.1), $CONNS connections, ${DUR}s):"
for name in ${ONLY//,/ }; do
  med=$(echo ${CPU[$name]} | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')

  echo "  $name: $med"
  eval "MED_${name//-/_}=$med"
done
if [ -n "${MED_nginx:-}" ] && [ -n "${MED_weir:-}" ]; then
  awk -v w=$MED_weir -v n=$MED_nginx 'BEGIN{printf "  weir / nginx = %.2f\n", w/n}'
fi
if [ -n "${MED_haproxy:-}" ] && [ -n "${MED_weir:-}" ]; then
  awk -v w=$MED_weir -v n=$MED_haproxy 'BEGIN{printf "  weir / haproxy = %.2f\n", w/n}'
fi
if [ -n "${MED_weir_nomeasure:-}" ] && [ -n "${MED_weir:-}" ]; then
  awk -v w=$MED_weir -v n=$MED_weir_nomeasure 'BEGIN{printf "  measurement cost = %+.1f%%\n", (w/n-1)*100}'
fi

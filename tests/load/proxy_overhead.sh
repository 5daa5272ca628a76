#!/usr/bin/env bash
# Proxy overhead benchmark: what the outbound proxy (/fruizioni) adds over calling the remote
# e-service directly, at 64 concurrent callers with a warm voucher cache. Not part of tests/run.sh.
#
# REMOTE=nginx (default): the remote is nginx answering a constant `{"ok":true}` from memory on
# a loopback port (its own config, pid file and logs in a temp dir; installed with apt-get if
# missing), so its latency is flat and the difference of the two runs is the proxy's own cost.
# `pdnd-gateway dev` runs with a `--config` overlay adding the fruizione `bench-remote` -> nginx:
#   direct: wrk -> nginx                     POST /residenza (Authorization: Bearer <voucher>)
#   proxy:  wrk -> internal listener /fruizioni/bench-remote/residenza (X-API-Key)
#           -> voucher cache (warm) -> nginx POST /residenza
# REMOTE=provider: the remote is the comune's own anagrafe e-service (voucher check, RS256
# response signature, SQLite audit commit), called as POST /anagrafe/v1/residenza on the public
# listener directly and through the sample fruizione `comune-anagrafe`. Its own tail is wide,
# so the p99 difference there mostly measures the provider, not the proxy.
#
# Usage: bash tests/load/proxy_overhead.sh [release|debug]   (default release)
# Env:   REMOTE (nginx|provider), DURATION (default 10s, per run), CONNECTIONS (64), THREADS (1),
#        ROUNDS (default 3): direct and proxy runs alternate this many times, so load that other
#        processes put on the machine falls on both; the summary is the median of the per-round
#        differences,
#        BIN (path to pdnd-gateway), REMOTE_PORT (nginx, default 18200),
#        DELAY_MS (default 60): each connection pauses this long on average (uniformly random
#        between 0 and twice that) between requests, so 64 callers
#        offer about 1,000 req/s and the figures show what each hop costs rather than how long
#        requests queue on a saturated machine; DELAY_MS=0 measures at saturation (throughput).
#        PIN (default split): `split` runs wrk on the last CPU and the servers (gateway, nginx)
#        on the others, so the load generator does not steal the servers' CPU in one run more
#        than in the other; `none` leaves placement to the scheduler.
# Needs: wrk (apt-get install -y wrk); nginx for REMOTE=nginx (installed if missing).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
profile=${1:-release}
remote=${REMOTE:-nginx}
duration=${DURATION:-10s}
connections=${CONNECTIONS:-64}
threads=${THREADS:-1}
delay_ms=${DELAY_MS:-60}
rounds=${ROUNDS:-3}
pin=${PIN:-split}
remote_port=${REMOTE_PORT:-18200}
case "$remote" in nginx|provider) ;; *) echo "REMOTE must be nginx or provider" >&2; exit 2 ;; esac
if [ "$pin" = split ] && [ "$(nproc)" -ge 2 ]; then
  last=$(($(nproc) - 1))
  export WRK_CPUS=$last SERVER_CPUS=0-$((last - 1))
else
  pin=none
fi
# shellcheck source=tests/load/lib.sh
. "$root/tests/load/lib.sh"

work=$(mktemp -d /tmp/pdndgw-load.XXXXXX)
nginx_pid=""
stop_nginx() {
  [ -n "$nginx_pid" ] || return 0
  kill "$nginx_pid" 2>/dev/null || true
  wait "$nginx_pid" 2>/dev/null || true
  nginx_pid=""
}
cleanup() { stop_dev; stop_nginx; rm -rf "$work"; }
trap cleanup EXIT

# start_nginx: one foreground, single-process nginx on 127.0.0.1:$remote_port.
start_nginx() {
  if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    echo "installing nginx (apt-get install -y nginx-light)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >&2
  fi
  local nginx_bin
  nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
  local dir=$work/nginx user=""
  mkdir -p "$dir/tmp"
  [ "$(id -u)" = 0 ] && user="user root;"
  cat >"$dir/nginx.conf" <<NGINX
$user
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$remote_port;
    location / { default_type application/json; return 200 '{"ok":true}'; }
  }
}
NGINX
  local pin=()
  [ -n "${SERVER_CPUS:-}" ] && pin=(taskset -c "$SERVER_CPUS")
  "${pin[@]}" "$nginx_bin" -p "$dir" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
  nginx_pid=$!
  for _ in $(seq 1 50); do
    curl -sf "http://127.0.0.1:$remote_port/" >/dev/null 2>&1 && return 0
    kill -0 "$nginx_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$dir/stdout.log" "$dir/error.log" >&2 2>/dev/null || true
  return 1
}

if [ "$remote" = nginx ]; then
  start_nginx
  # The dev sample client's purpose for the anagrafe: the local authority issues vouchers for it.
  cat >"$work/bench.toml" <<TOML
[[fruizioni]]
name = "bench-remote"
remote_base_url = "http://127.0.0.1:$remote_port"
purpose_id = "2f4b7c1d-0a6e-4f3b-8c2d-7e5f9a1b3c01"
max_concurrency = 256
TOML
  export DEV_CONFIG=$work/bench.toml
fi
start_dev "$work/data" "$work/dev.log"

cf=$(grep -Eo '[A-Z]{6}[0-9]{2}[A-Z][0-9]{2}[A-Z][0-9]{3}[A-Z]' "$work/dev.log" | head -n 1)
voucher=$("$bin" voucher --data-dir "$work/data")
key=$(cat "$work/data/internal-api-key")
body="{\"codiceFiscale\":\"$cf\"}"
if [ "$remote" = nginx ]; then
  direct_url="http://127.0.0.1:$remote_port/residenza"
  proxy_url="http://$internal/fruizioni/bench-remote/residenza"
else
  direct_url="http://$public/anagrafe/v1/residenza"
  proxy_url="http://$internal/fruizioni/comune-anagrafe/residenza"
fi

cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA
if [ "$delay_ms" -gt 0 ]; then
  # Uniform in [0, 2 x DELAY_MS]: the same mean, but the 64 callers do not fire in lockstep (a
  # fixed pause keeps them in waves of 64 simultaneous requests, and the figures then measure
  # how long the last of a wave queues).
  cat >>"$work/post.lua" <<LUA
function init(args) math.randomseed(os.time() + math.floor(os.clock() * 1000000)) end
function delay() return math.random(0, $((2 * delay_ms))) end
LUA
fi
wrk_percentiles "$work/post.lua"

# Warm-up: the voucher cache, connection pools, the e-service's response cache.
for _ in 1 2 3; do
  curl -sf -X POST "$proxy_url" -H "X-API-Key: $key" -H 'Content-Type: application/json' \
    -d "$body" >/dev/null
done
for u in "$direct_url" "$proxy_url"; do
  wrk -t"$threads" -c"$connections" -d3s -s "$work/post.lua" -H "Authorization: Bearer $voucher" \
    -H "X-API-Key: $key" "$u" >/dev/null
done
tokens_before=$(curl -s "http://$authority/stats")
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

for r in $(seq 1 "$rounds"); do
  run_wrk "direct-$r" "$direct_url" "Authorization: Bearer $voucher" "$work/post.lua"
  run_wrk "proxy-$r" "$proxy_url" "X-API-Key: $key" "$work/post.lua"
done
tokens_after=$(curl -s "http://$authority/stats")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# median of the arguments
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo
echo "remote=$remote profile=$profile connections=$connections threads=$threads duration=$duration rounds=$rounds delay_ms=$delay_ms cores=$(nproc) pin=$pin${WRK_CPUS:+ (wrk on CPU $WRK_CPUS, servers on CPU $SERVER_CPUS)}"
echo "load average before $load_before, after $load_after"
printf '%-10s %9s %9s %9s %9s %11s\n' "(ms)" p50 p90 p99 p99.9 req/s
declare -A added
for r in $(seq 1 "$rounds"); do
  for run in direct proxy; do
    printf '%-10s %9s %9s %9s %9s %11s  %s\n' "$run-$r:" "$(xpct "$run-$r" 50)" "$(xpct "$run-$r" 90)" \
      "$(xpct "$run-$r" 99)" "$(xpct "$run-$r" 99.9)" "$(rps "$run-$r")" "$(errors "$run-$r" | tr '\n' ' ')"
  done
  printf '%-10s' "added-$r:"
  for p in 50 90 99 99.9; do
    d=$(awk -v a="$(xpct "proxy-$r" $p)" -v b="$(xpct "direct-$r" $p)" 'BEGIN { printf "%+.3f", a - b }')
    added[$p]="${added[$p]:-} $d"
    printf ' %9s' "$d"
  done
  echo
done
printf '%-10s' "added-med:"
for p in 50 90 99 99.9; do
  # shellcheck disable=SC2086
  printf ' %+9.3f' "$(median ${added[$p]})"
done
echo "  (median over the rounds of proxy minus direct)"
echo "token requests at the authority: before $tokens_before after $tokens_after"

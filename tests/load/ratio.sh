#!/usr/bin/env bash
# Ratio benchmark: the gateway against nginx and against the signing floor, in one run, with one
# load generator. Absolute figures on a shared 2-core machine move with whatever else runs; the
# ratios of runs taken minutes apart in the same script move much less.
#
#   nginx      nginx (Debian nginx-light, 2 workers, its own temporary configuration, run as an
#              unprivileged user) answering POST with a static JSON of the answer's exact size
#   actix      the HTTP framework alone: actix-web (the gateway's version, workers and allocator;
#              `gateway/examples/static_answer.rs`) answering the same POST with the same bytes
#   a-unsigned voucher + purpose + response cache hit + durable audit commit, response unsigned
#   b-rs256    the same, response signed RS256 (INTEGRITY_REST_01, the default)
#   c-es256    the same, signed ES256
#   d-cold-1m  as (a) with the cache off, requests rotating over 20,000 random residents of a
#              1,000,000-resident SQLite store (seeded once into $BENCH_DIR and kept)
#   e-proxy    the fruizioni proxy (internal listener, X-API-Key, warm voucher cache) in front of
#              the same nginx as a constant-time remote
#   conn-1000  (b) with 1,000 open connections: resident memory
#   long       (b) for LONG_DURATION: resident memory after 5 s of load and at the end
# plus the signing floor: `openssl speed -seconds 3 rsa2048` and `ecdsap256`, one process (at
# the start) and two (`-multi 2`, just before and just after the signed run it is compared
# with: the machine's speed drifts over minutes, and the ratio is to the mean of the two).
# Every gateway run is a release build of `pdnd-gateway dev` (local PDND authority in the same
# process, SQLite, WAL, synchronous=FULL: a 2xx waits for its fsync).
#
# Prints a table (req/s, p50, p99, RSS and its anonymous part, ratio to nginx, ratio to the
# floor; the server's and wrk's CPU time a request, from /proc over the measured run, and the
# req/s they allow on this machine's cores; the gateway's audit commits over the run from its
# /metrics: mean records a commit, commits a second, mean commit time), then the gateway's CPU
# time an answer by thread (actix workers, audit writer, lookup indexer, the rest) beside the
# framework's alone, and writes it all as JSON (the path is printed last).
# Not part of tests/run.sh.
#
# Usage: bash tests/load/ratio.sh
# Env:   DURATION (10s per run), LONG_DURATION (60s), CONNECTIONS (64), THREADS (2),
#        NGINX_PORT (18300), BENCH_DIR (~/.cache/pdnd-gateway/bench), OUT (JSON path),
#        BIN (a pdnd-gateway binary to measure instead of building the release one),
#        STATIC_BIN (the same for the static_answer example),
#        SKIP_FLOOR=1 / SKIP_COLD=1 / SKIP_LONG=1 to leave parts out while iterating.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
profile=release
duration=${DURATION:-10s}
long_duration=${LONG_DURATION:-60s}
connections=${CONNECTIONS:-64}
threads=${THREADS:-2}
nginx_port=${NGINX_PORT:-18300}
bench_dir=${BENCH_DIR:-$HOME/.cache/pdnd-gateway/bench}
out=${OUT:-/tmp/pdndgw-ratio-$(date -u +%Y%m%dT%H%M%SZ).json}
PUBLIC_PORT=${PUBLIC_PORT:-18380} INTERNAL_PORT=${INTERNAL_PORT:-18381}
AUTHORITY_PORT=${AUTHORITY_PORT:-18390}
# 1,000 connections need more descriptors than a default shell gives (wrk and the gateway).
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true

apt_install() {
  echo "installing $* (apt-get)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}
command -v wrk >/dev/null || apt_install wrk
command -v sqlite3 >/dev/null || apt_install sqlite3
command -v openssl >/dev/null || apt_install openssl
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || apt_install nginx-light
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

# Always the current sources (a stale release binary would measure old code), unless BIN names
# a binary to measure (for example the previous build, for a before/after).
if [ -z "${BIN:-}" ]; then
  (cd "$root" && . tests/scripts/target_dir.sh && cargo build --release --locked --bin pdnd-gateway >&2)
fi
if [ -z "${STATIC_BIN:-}" ]; then
  (cd "$root" && . tests/scripts/target_dir.sh && cargo build --release --locked -p gateway --example static_answer >&2)
fi
# shellcheck source=tests/load/lib.sh
. "$root/tests/load/lib.sh"

static_bin=${STATIC_BIN:-$CARGO_TARGET_DIR/release/examples/static_answer}
static_port=$((nginx_port + 1))
work=$(mktemp -d /tmp/pdndgw-ratio.XXXXXX)
chmod 755 "$work"
nginx_pid=""
stop_nginx() {
  [ -n "$nginx_pid" ] || return 0
  kill "$nginx_pid" 2>/dev/null || true
  wait "$nginx_pid" 2>/dev/null || true
  nginx_pid=""
}
static_pid=""
cleanup() {
  stop_dev
  stop_nginx
  if [ -n "$static_pid" ]; then kill "$static_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# rss_kb PID [FIELD]: resident memory of PID and its children, in KiB: VmRSS (all of it), or
# another field of /proc/PID/status (RssAnon: without the pages of files mapped into memory,
# such as the register (d) reads through mmap).
rss_kb() {
  local total=0 p kb field=${2:-VmRSS}
  for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
    kb=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

# --- signing floor --------------------------------------------------------------------------
# speed_sign ALG MULTI: sign/s from `openssl speed` (the last figure-bearing line's sign/s).
speed_sign() {
  local args=(-seconds 3)
  [ "$2" -gt 1 ] && args+=(-multi "$2")
  openssl speed "${args[@]}" "$1" 2>/dev/null | awk -v alg="$1" '
    alg == "rsa2048" && /^rsa 2048 bits/ { v = $(NF - 1) }
    alg == "ecdsap256" && /ecdsa \(nistp256\)/ { v = $(NF - 1) }
    END { print v + 0 }'
}
declare -A floor
for k in rsa1 rsa2 rsa2_before rsa2_after ec1 ec2 ec2_before ec2_after; do floor[$k]=0; done
if [ -z "${SKIP_FLOOR:-}" ]; then
  echo "== signing floor: openssl speed -seconds 3 rsa2048 / ecdsap256, 1 process" >&2
  floor[rsa1]=$(speed_sign rsa2048 1)
  floor[ec1]=$(speed_sign ecdsap256 1)
fi
# floor_around KEY ALG RUN...: the two-process floor of ALG just before and just after the
# gateway run RUN... (`gateway`'s arguments); floor[KEY] is their mean.
floor_around() {
  local key=$1 alg=$2
  shift 2
  [ -z "${SKIP_FLOOR:-}" ] && floor[${key}_before]=$(speed_sign "$alg" 2)
  gateway "$@"
  if [ -z "${SKIP_FLOOR:-}" ]; then
    floor[${key}_after]=$(speed_sign "$alg" 2)
    floor[$key]=$(awk -v a="${floor[${key}_before]}" -v b="${floor[${key}_after]}" 'BEGIN { printf "%.1f", (a + b) / 2 }')
  fi
}

# --- the small store and the request --------------------------------------------------------
small="$work/small" # fresh each run: the audit records of earlier runs do not pile up
mkdir -p "$bench_dir"
cat >"$work/overlay.toml" <<TOML
[[fruizioni]]
name = "bench-remote"
remote_base_url = "http://127.0.0.1:$nginx_port"
purpose_id = "2f4b7c1d-0a6e-4f3b-8c2d-7e5f9a1b3c01"
max_concurrency = 256
TOML
export DEV_CONFIG=$work/overlay.toml
start_dev "$small" "$work/dev-probe.log"
cf=$(sqlite3 "$small/comune.db" "SELECT codice_fiscale FROM residenze ORDER BY codice_fiscale LIMIT 1")
voucher=$("$bin" voucher --data-dir "$small")
key=$(cat "$small/internal-api-key")
body="{\"codiceFiscale\":\"$cf\"}"
url="http://$public/anagrafe/v1/residenza"
curl -sf -X POST "$url" -H "Authorization: Bearer $voucher" -H 'Content-Type: application/json' \
  -d "$body" -o "$work/answer.json"
stop_dev
answer_bytes=$(wc -c <"$work/answer.json")

cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA
wrk_percentiles "$work/post.lua"

# --- nginx ----------------------------------------------------------------------------------
start_nginx() {
  local dir=$work/nginx
  mkdir -p "$dir/tmp" "$dir/www"
  cp "$work/answer.json" "$dir/www/residenza"
  # POST on a static file is 405 in nginx; error_page turns it into a GET of the same file.
  cat >"$dir/nginx.conf" <<NGINX
daemon off;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  open_file_cache max=16;
  server {
    listen 127.0.0.1:$nginx_port;
    root $dir/www;
    default_type application/json;
    location / { error_page 405 =200 \$uri; }
  }
}
NGINX
  local as=()
  if [ "$(id -u)" = 0 ]; then
    chown -R 65534:65534 "$dir"
    as=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  fi
  "${as[@]}" "$nginx_bin" -p "$dir" -c "$dir/nginx.conf" >"$work/nginx.out" 2>&1 &
  nginx_pid=$!
  for _ in $(seq 1 50); do
    curl -sf -X POST "http://127.0.0.1:$nginx_port/residenza" -o /dev/null 2>&1 && return 0
    kill -0 "$nginx_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$work/nginx.out" "$dir/error.log" >&2 2>/dev/null || true
  return 1
}
start_nginx
nginx_bytes=$(curl -sf -X POST "http://127.0.0.1:$nginx_port/residenza" -d "$body" | wc -c)
[ "$nginx_bytes" = "$answer_bytes" ] || { echo "nginx answers $nginx_bytes bytes, not $answer_bytes" >&2; exit 1; }

declare -A rss rss_anon server_ticks batch_n batch_sum commit_sum thread_ticks
audit_batch=pdnd_gateway_audit_batch_size
audit_commit=pdnd_gateway_audit_commit_duration_seconds
# measure NAME URL HEADER LUA PID: a 3 s warm-up, then the measured run; RSS after it. Around
# the measured run: the server's CPU time (PID and its children) and, from a gateway's /metrics,
# its audit commits (count, records, seconds).
measure() {
  wrk -t"$threads" -c"$connections" -d3s -s "$4" -H "$3" "$2" >/dev/null
  local t0 n0 r0 c0
  t0=$(cpu_ticks "$5")
  n0=$(metric_sum "${audit_batch}_count") r0=$(metric_sum "${audit_batch}_sum")
  c0=$(metric_sum "${audit_commit}_sum")
  local k0
  k0=$(ticks_by_thread "$5")
  run_wrk "$1" "$2" "$3" "$4"
  server_ticks[$1]=$(($(cpu_ticks "$5") - t0))
  thread_ticks[$1]=$(paste -d' ' <(echo "$k0" | tr ' ' '\n') <(ticks_by_thread "$5" | tr ' ' '\n') | awk '{ d = $2 - $1; printf "%s%d", (NR > 1 ? " " : ""), (d > 0 ? d : 0) }')
  batch_n[$1]=$(awk -v a="$(metric_sum "${audit_batch}_count")" -v b="$n0" 'BEGIN { print a - b }')
  batch_sum[$1]=$(awk -v a="$(metric_sum "${audit_batch}_sum")" -v b="$r0" 'BEGIN { print a - b }')
  commit_sum[$1]=$(awk -v a="$(metric_sum "${audit_commit}_sum")" -v b="$c0" 'BEGIN { print a - b }')
  rss[$1]=$(rss_kb "$5")
  rss_anon[$1]=$(rss_kb "$5" RssAnon)
  if grep -qE 'Non-2xx|Socket errors' "$work/$1.txt"; then
    echo "$1: errors during the run:" >&2
    errors "$1" >&2
    exit 1
  fi
}

measure nginx "http://127.0.0.1:$nginx_port/residenza" "X-Bench: 1" "$work/post.lua" "$nginx_pid"

# --- the framework alone ------------------------------------------------------------------------
"$static_bin" "127.0.0.1:$static_port" "$work/answer.json" 2 >"$work/static.out" 2>&1 &
static_pid=$!
for _ in $(seq 1 50); do
  curl -sf -X POST "http://127.0.0.1:$static_port/anagrafe/v1/residenza" -o /dev/null 2>&1 && break
  sleep 0.1
done
static_bytes=$(curl -sf -X POST "http://127.0.0.1:$static_port/anagrafe/v1/residenza" -d "$body" | wc -c)
[ "$static_bytes" = "$answer_bytes" ] || { cat "$work/static.out" >&2; echo "static_answer answers $static_bytes bytes, not $answer_bytes" >&2; exit 1; }
measure actix "http://127.0.0.1:$static_port/anagrafe/v1/residenza" "X-Bench: 1" "$work/post.lua" "$static_pid"
kill "$static_pid" 2>/dev/null || true
wait "$static_pid" 2>/dev/null || true
static_pid=""

# gateway NAME DATA LUA VAR=value...: one dev gateway, one measured run against the anagrafe.
gateway() {
  local name=$1 data=$2 lua=$3
  shift 3
  start_dev "$data" "$work/dev-$name.log" "$@"
  local v
  v=$("$bin" voucher --data-dir "$data")
  measure "$name" "$url" "Authorization: Bearer $v" "$lua" "$dev_pid"
  stop_dev
}
gateway a-unsigned "$small" "$work/post.lua" PDNDGW_ESERVICES__ANAGRAFE__MODI__SIGN_RESPONSES=false
floor_around rsa2 rsa2048 b-rs256 "$small" "$work/post.lua"
floor_around ec2 ecdsap256 c-es256 "$small" "$work/post.lua" PDNDGW_MODI__ALGORITHM=ES256

if [ -z "${SKIP_COLD:-}" ]; then
  big="$bench_dir/residents-1000000"
  started=$(date +%s)
  start_dev "$big" "$work/dev-seed.log" PDNDGW_DEV__RESIDENTS=1000000
  echo "1M store ready after $(($(date +%s) - started)) s (seeded once, kept in $big)" >&2
  stop_dev
  # The register is kept; the audit trail starts empty every run, as (a)'s does: each run adds
  # about 100,000 records (90 MB), and a run should not measure the ones before it.
  rm -f "$big/audit.db" "$big/audit.db-wal" "$big/audit.db-shm" "$big"/audit.db.lookups*
  sqlite3 "$big/comune.db" "SELECT codice_fiscale FROM residenze ORDER BY random() LIMIT 20000" >"$work/cfs.txt"
  cat >"$work/rotate.lua" <<LUA
-- Each request asks for the next codice fiscale of the list (one list per wrk thread).
local cfs = {}
for line in io.lines("$work/cfs.txt") do cfs[#cfs + 1] = line end
local i = math.random(#cfs)
local headers = { ["Content-Type"] = "application/json" }
for name, value in pairs(wrk.headers) do headers[name] = value end
request = function()
  i = i % #cfs + 1
  return wrk.format("POST", nil, headers, '{"codiceFiscale":"' .. cfs[i] .. '"}')
end
LUA
  wrk_percentiles "$work/rotate.lua"
  gateway d-cold-1m "$big" "$work/rotate.lua" PDNDGW_CACHE__TTL_SECS=0 \
    PDNDGW_ESERVICES__ANAGRAFE__MODI__SIGN_RESPONSES=false
fi

# (e) the proxy: the remote is the nginx above (constant time, same answer).
start_dev "$small" "$work/dev-proxy.log"
for _ in 1 2 3; do
  curl -sf -X POST "http://$internal/fruizioni/bench-remote/residenza" -H "X-API-Key: $key" \
    -H 'Content-Type: application/json' -d "$body" >/dev/null
done
measure e-proxy "http://$internal/fruizioni/bench-remote/residenza" "X-API-Key: $key" "$work/post.lua" "$dev_pid"
stop_dev

# Memory: 1,000 open connections, and a longer run (start and end).
start_dev "$small" "$work/dev-mem.log"
v=$("$bin" voucher --data-dir "$small")
rss_idle=$(rss_kb "$dev_pid")
wrk -t"$threads" -c1000 -d10s -s "$work/post.lua" -H "Authorization: Bearer $v" "$url" >"$work/conn-1000.txt" &
wrk_bg=$!
sleep 8
rss_1000=$(rss_kb "$dev_pid")
wait "$wrk_bg"
rss_1000_hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$dev_pid/status")
cat "$work/conn-1000.txt" >&2
rss_long_start=0 rss_long_end=0
if [ -z "${SKIP_LONG:-}" ]; then
  wrk -t"$threads" -c"$connections" -d"$long_duration" -s "$work/post.lua" -H "Authorization: Bearer $v" "$url" >"$work/long.txt" &
  wrk_bg=$!
  sleep 5
  rss_long_start=$(rss_kb "$dev_pid")
  wait "$wrk_bg"
  rss_long_end=$(rss_kb "$dev_pid")
  cat "$work/long.txt" >&2
fi
stop_dev

# --- table and JSON -------------------------------------------------------------------------
nginx_rps=$(rps nginx)
runs=(nginx actix a-unsigned b-rs256 c-es256)
[ -z "${SKIP_COLD:-}" ] && runs+=(d-cold-1m)
runs+=(e-proxy)
floor_of() { case $1 in b-rs256) echo "${floor[rsa2]}" ;; c-es256) echo "${floor[ec2]}" ;; *) echo 0 ;; esac; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else printf "null" }'; }
tck=$(getconf CLK_TCK)
# us_per_req TICKS NAME: CPU microseconds a request of run NAME.
us_per_req() { awk -v t="$1" -v hz="$tck" -v n="$(requests "$2")" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else printf "null" }'; }
# cpu_bound NAME: the req/s the machine's cores allow if the server and wrk spend what they
# spent a request in run NAME and nothing else runs: cores / (server + wrk CPU a request).
cpu_bound() { awk -v s="$(us_per_req "${server_ticks[$1]}" "$1")" -v w="$(us_per_req "$(cat "$work/$1.wrk_ticks")" "$1")" -v c="$(nproc)" \
  'BEGIN { if (s + w > 0) printf "%.0f", c * 1e6 / (s + w); else printf "null" }'; }
# batch NAME / commits_per_s NAME / commit_ms NAME: the audit commits of run NAME (null when
# the server committed none: nginx).
batch() { awk -v s="${batch_sum[$1]}" -v n="${batch_n[$1]}" 'BEGIN { if (n > 0) printf "%.1f", s / n; else printf "null" }'; }
commits_per_s() { awk -v n="${batch_n[$1]}" -v t="$(seconds "$1")" 'BEGIN { if (n > 0 && t > 0) printf "%.0f", n / t; else printf "null" }'; }
commit_ms() { awk -v s="${commit_sum[$1]}" -v n="${batch_n[$1]}" 'BEGIN { if (n > 0) printf "%.3f", s * 1000 / n; else printf "null" }'; }

echo
echo "$(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "wrk -t$threads -c$connections -d$duration (after 3 s warm-up), loopback, answer $answer_bytes bytes, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-11s %10s %9s %9s %9s %9s %9s %9s %11s %10s %9s %7s %9s %9s\n' run req/s p50_ms p99_ms rss_MB anon_MB x_nginx x_floor \
  cpu_us/req wrk_us/req cpu_bound batch commits/s commit_ms
json_runs=""
for r in "${runs[@]}"; do
  f=$(floor_of "$r")
  cpu=$(us_per_req "${server_ticks[$r]}" "$r")
  wrk_cpu=$(us_per_req "$(cat "$work/$r.wrk_ticks")" "$r")
  printf '%-11s %10s %9s %9s %9.1f %9.1f %9s %9s %11s %10s %9s %7s %9s %9s\n' "$r" "$(rps "$r")" "$(xpct "$r" 50)" "$(xpct "$r" 99)" \
    "$(awk -v k="${rss[$r]}" 'BEGIN { print k / 1024 }')" "$(awk -v k="${rss_anon[$r]}" 'BEGIN { print k / 1024 }')" \
    "$(ratio "$(rps "$r")" "$nginx_rps")" \
    "$(ratio "$(rps "$r")" "$f")" "$cpu" "$wrk_cpu" "$(cpu_bound "$r")" "$(batch "$r")" \
    "$(commits_per_s "$r")" "$(commit_ms "$r")"
  json_runs+="$(printf '%s\n    "%s": {"rps": %s, "p50_ms": %s, "p99_ms": %s, "rss_kb": %s, "rss_anon_kb": %s, "ratio_nginx": %s, "ratio_floor": %s, "cpu_us_per_req": %s, "wrk_us_per_req": %s, "cpu_bound_rps": %s, "audit_batch_mean": %s, "audit_commits_per_s": %s, "audit_commit_ms_mean": %s}' \
    "${json_runs:+,}" "$r" "$(rps "$r")" "$(xpct "$r" 50)" "$(xpct "$r" 99)" "${rss[$r]}" "${rss_anon[$r]}" \
    "$(ratio "$(rps "$r")" "$nginx_rps")" "$(ratio "$(rps "$r")" "$f")" "$cpu" "$wrk_cpu" \
    "$(cpu_bound "$r")" "$(batch "$r")" "$(commits_per_s "$r")" "$(commit_ms "$r")")"
done
# The bound of each ratio to nginx that CPU time sets: nginx's CPU a request over the gateway's.
nginx_cpu=$(us_per_req "${server_ticks[nginx]}" nginx)
for r in "${runs[@]}"; do
  [ "$r" = nginx ] || [ "$r" = actix ] && continue
  echo "$r: nginx uses $nginx_cpu us of CPU an answer, the gateway $(us_per_req "${server_ticks[$r]}" "$r") us: ratio to nginx <= $(ratio "$nginx_cpu" "$(us_per_req "${server_ticks[$r]}" "$r")") at equal CPU"
done
# Where an answer's CPU goes, by thread (us an answer): the framework alone beside each run.
echo
printf '%-11s %9s %9s %9s %9s %9s\n' run workers writer indexer other total
json_threads=""
for r in "${runs[@]}"; do
  [ "$r" = nginx ] && continue
  read -r w a i o <<<"${thread_ticks[$r]}"
  printf '%-11s %9s %9s %9s %9s %9s\n' "$r" "$(us_per_req "$w" "$r")" "$(us_per_req "$a" "$r")" \
    "$(us_per_req "$i" "$r")" "$(us_per_req "$o" "$r")" "$(us_per_req "$((w + a + i + o))" "$r")"
  json_threads+="$(printf '%s\n    "%s": {"workers": %s, "audit_writer": %s, "audit_indexer": %s, "other": %s}' "${json_threads:+,}" "$r" \
    "$(us_per_req "$w" "$r")" "$(us_per_req "$a" "$r")" "$(us_per_req "$i" "$r")" "$(us_per_req "$o" "$r")")"
done
actix_cpu=$(us_per_req "${server_ticks[actix]}" actix)
echo "a-unsigned: actix-web alone uses $actix_cpu us of CPU an answer ($(ratio "$(rps actix)" "$nginx_rps") of nginx's req/s); the gateway's own work is the other $(awk -v g="$(us_per_req "${server_ticks[a-unsigned]}" a-unsigned)" -v s="$actix_cpu" 'BEGIN { printf "%.1f", g - s }') us"
echo "signing floor (openssl speed, sign/s): rsa2048 ${floor[rsa1]} (1 process), ${floor[rsa2_before]} and ${floor[rsa2_after]} (2, before and after (b)): ${floor[rsa2]}; ecdsap256 ${floor[ec1]} (1), ${floor[ec2_before]} and ${floor[ec2_after]} (2, around (c)): ${floor[ec2]}"
echo "gateway RSS: idle $((rss_idle / 1024)) MB; 1,000 connections $((rss_1000 / 1024)) MB (peak $((rss_1000_hwm / 1024)) MB, $(rps conn-1000) req/s)"
[ -z "${SKIP_LONG:-}" ] && echo "gateway RSS over $long_duration of (b): $((rss_long_start / 1024)) MB after 5 s, $((rss_long_end / 1024)) MB at the end ($(rps long) req/s)"
cat >"$out" <<JSON
{
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "cores": $(nproc),
  "wrk": {"threads": $threads, "connections": $connections, "duration": "$duration"},
  "answer_bytes": $answer_bytes,
  "floor_sign_per_s": {"rsa2048_1": ${floor[rsa1]}, "rsa2048_2": ${floor[rsa2]}, "rsa2048_2_before": ${floor[rsa2_before]}, "rsa2048_2_after": ${floor[rsa2_after]},
                       "ecdsap256_1": ${floor[ec1]}, "ecdsap256_2": ${floor[ec2]}, "ecdsap256_2_before": ${floor[ec2_before]}, "ecdsap256_2_after": ${floor[ec2_after]}},
  "runs": {$json_runs
  },
  "cpu_us_per_req_by_thread": {$json_threads
  },
  "rss_kb": {"idle": $rss_idle, "connections_1000": $rss_1000, "connections_1000_peak": $rss_1000_hwm,
             "long_duration": "$long_duration", "long_start": $rss_long_start, "long_end": $rss_long_end}
}
JSON
echo "JSON: $out"

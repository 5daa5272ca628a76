#!/usr/bin/env bash
# Load benchmark of POST /anagrafe/v1/residenza at 1,000 and 1,000,000 residents on SQLite,
# with a warm and a cold response cache. Lookups must stay index-bound: the cold-cache p99 at
# 1M residents should be within 3x of the one at 1k.
#
#   warm: the cache on (default TTL), every request for the same subject: after the first, hits.
#   cold: the cache off (PDNDGW_CACHE__TTL_SECS=0), requests rotate over 20,000 random
#         residents: every request reads the store.
# Every request also commits its audit record (SQLite WAL, synchronous=FULL), as in production.
#
# The seeded data directories are kept in $BENCH_DIR (default ~/.cache/pdnd-gateway/bench), so
# the 1M seed (minutes) happens once. Not part of tests/run.sh.
#
# Usage: bash tests/load/residenza.sh [release|debug]   (default release)
# Env:   SIZES ("1000 1000000"), DURATION (20s), CONNECTIONS (16), THREADS (2).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
profile=${1:-release}
duration=${DURATION:-20s}
connections=${CONNECTIONS:-16}
threads=${THREADS:-2}
sizes=${SIZES:-1000 1000000}
bench_dir=${BENCH_DIR:-$HOME/.cache/pdnd-gateway/bench}
# shellcheck source=tests/load/lib.sh
. "$root/tests/load/lib.sh"
command -v sqlite3 >/dev/null || { echo "sqlite3 is needed: apt-get install -y sqlite3" >&2; exit 1; }

work=$(mktemp -d /tmp/pdndgw-bench.XXXXXX)
cleanup() { stop_dev; rm -rf "$work"; }
trap cleanup EXIT

cat >"$work/rotate.lua" <<'LUA'
-- Each request asks for the next codice fiscale of the list (one list per wrk thread).
local cfs = {}
for line in io.lines(os.getenv("CF_FILE")) do cfs[#cfs + 1] = line end
local i = math.random(#cfs)
-- wrk.format replaces wrk.headers when given a table: carry the -H headers over.
local headers = { ["Content-Type"] = "application/json" }
for name, value in pairs(wrk.headers) do headers[name] = value end
request = function()
  i = i % #cfs + 1
  return wrk.format("POST", nil, headers, '{"codiceFiscale":"' .. cfs[i] .. '"}')
end
LUA

summary=()
for n in $sizes; do
  data="$bench_dir/residents-$n"
  mkdir -p "$bench_dir"
  started=$(date +%s)
  start_dev "$data" "$work/dev-$n.log" PDNDGW_DEV__RESIDENTS="$n"
  echo "residents=$n ready after $(( $(date +%s) - started )) s (includes seeding on first run)" >&2
  voucher=$("$bin" voucher --data-dir "$data")
  sqlite3 "$data/comune.db" "SELECT codice_fiscale FROM residenze ORDER BY random() LIMIT 20000" >"$work/cfs-$n.txt"
  export CF_FILE="$work/cfs-$n.txt"
  one=$(head -n 1 "$CF_FILE")
  printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' \
    "'{\"codiceFiscale\":\"$one\"}'" >"$work/single.lua"
  url="http://$public/anagrafe/v1/residenza"
  run_wrk "warm-$n" "$url" "Authorization: Bearer $voucher" "$work/single.lua"
  stop_dev
  start_dev "$data" "$work/dev-$n-cold.log" PDNDGW_CACHE__TTL_SECS=0
  run_wrk "cold-$n" "$url" "Authorization: Bearer $voucher" "$work/rotate.lua"
  stop_dev
  for kind in warm cold; do
    summary+=("$(printf '%-9s %-5s p50 %7.2f ms  p99 %7.2f ms  %9s req/s  %s' "$n" "$kind" \
      "$(pct "$kind-$n" 50)" "$(pct "$kind-$n" 99)" "$(rps "$kind-$n")" "$(errors "$kind-$n" | tr '\n' ' ')")")
  done
done

echo
echo "profile=$profile connections=$connections threads=$threads duration=$duration cores=$(nproc)"
printf '%s\n' "${summary[@]}"

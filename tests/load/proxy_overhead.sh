#!/usr/bin/env bash
# Proxy overhead benchmark: what the outbound proxy (/fruizioni) adds over calling the remote
# e-service directly, at 64 concurrent callers with a warm voucher cache.
#
# It starts `pdnd-gateway dev` on its own ports with a throwaway data directory, obtains a
# voucher, then runs wrk twice against the same operation (POST /anagrafe/v1/residenza):
#   direct: wrk -> public listener (Authorization: Bearer <voucher>)
#   proxy:  wrk -> internal listener /fruizioni/comune-anagrafe/residenza (X-API-Key)
#           -> voucher cache (warm) -> public listener
# and prints both latency distributions and the p50/p99 differences. Not part of tests/run.sh.
#
# Usage: bash tests/load/proxy_overhead.sh [release|debug]   (default release)
# Env:   DURATION (default 20s), CONNECTIONS (64), THREADS (2), BIN (path to pdnd-gateway),
#        DELAY_MS (default 60): each connection pauses this long between requests, so 64 callers
#        offer about 1,000 req/s and the figures show what each hop costs rather than how long
#        requests queue on a saturated machine; DELAY_MS=0 measures at saturation (throughput).
# Needs: wrk (apt-get install -y wrk).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
profile=${1:-release}
duration=${DURATION:-20s}
connections=${CONNECTIONS:-64}
threads=${THREADS:-2}
delay_ms=${DELAY_MS:-60}
# shellcheck source=tests/load/lib.sh
. "$root/tests/load/lib.sh"

work=$(mktemp -d /tmp/pdndgw-load.XXXXXX)
cleanup() { stop_dev; rm -rf "$work"; }
trap cleanup EXIT
start_dev "$work/data" "$work/dev.log"

cf=$(grep -Eo '[A-Z]{6}[0-9]{2}[A-Z][0-9]{2}[A-Z][0-9]{3}[A-Z]' "$work/dev.log" | head -n 1)
voucher=$("$bin" voucher --data-dir "$work/data")
key=$(cat "$work/data/internal-api-key")
body="{\"codiceFiscale\":\"$cf\"}"

cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA
if [ "$delay_ms" -gt 0 ]; then
  echo "function delay() return $delay_ms end" >>"$work/post.lua"
fi

# Warm-up: the voucher cache, connection pools, the e-service's response cache.
for _ in 1 2 3; do
  curl -sf -X POST "http://$internal/fruizioni/comune-anagrafe/residenza" \
    -H "X-API-Key: $key" -H 'Content-Type: application/json' -d "$body" >/dev/null
done
wrk -t"$threads" -c"$connections" -d3s -s "$work/post.lua" -H "Authorization: Bearer $voucher" \
  "http://$public/anagrafe/v1/residenza" >/dev/null
tokens_before=$(curl -s "http://$authority/stats")

run_wrk direct "http://$public/anagrafe/v1/residenza" "Authorization: Bearer $voucher" "$work/post.lua"
run_wrk proxy "http://$internal/fruizioni/comune-anagrafe/residenza" "X-API-Key: $key" "$work/post.lua"
tokens_after=$(curl -s "http://$authority/stats")

d50=$(pct direct 50); d99=$(pct direct 99); p50=$(pct proxy 50); p99=$(pct proxy 99)
drps=$(rps direct)
prps=$(rps proxy)
echo
echo "profile=$profile connections=$connections threads=$threads duration=$duration delay_ms=$delay_ms cores=$(nproc)"
echo "direct: p50 ${d50} ms  p99 ${d99} ms  ${drps} req/s $(errors direct)"
echo "proxy:  p50 ${p50} ms  p99 ${p99} ms  ${prps} req/s $(errors proxy)"
awk -v a="$p50" -v b="$d50" -v c="$p99" -v d="$d99" 'BEGIN { printf "added by the proxy: p50 %+.2f ms, p99 %+.2f ms\n", a-b, c-d }'
echo "token requests at the authority: before $tokens_before after $tokens_after"

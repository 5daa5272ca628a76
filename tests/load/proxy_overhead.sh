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
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pdnd-gateway/target}"
duration=${DURATION:-20s}
connections=${CONNECTIONS:-64}
threads=${THREADS:-2}
delay_ms=${DELAY_MS:-60}
bin=${BIN:-$CARGO_TARGET_DIR/$profile/pdnd-gateway}

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
if [ ! -x "$bin" ]; then
  flag=""; [ "$profile" = release ] && flag="--release"
  (cd "$root" && cargo build $flag --bin pdnd-gateway)
fi

work=$(mktemp -d /tmp/pdndgw-load.XXXXXX)
public=127.0.0.1:${PUBLIC_PORT:-18180}
internal=127.0.0.1:${INTERNAL_PORT:-18181}
authority=127.0.0.1:${AUTHORITY_PORT:-18190}
export PDNDGW_SERVER__PUBLIC_LISTEN=$public
export PDNDGW_SERVER__INTERNAL_LISTEN=$internal
export PDNDGW_DEV__AUTHORITY_LISTEN=$authority
export PDNDGW_PDND__TOKEN_ENDPOINT=http://$authority/token.oauth2
export PDNDGW_DEV__VOUCHER_LIFETIME_SECS=3600
export RUST_LOG=${RUST_LOG:-warn}

"$bin" dev --data-dir "$work/data" >"$work/dev.log" 2>&1 &
dev_pid=$!
cleanup() { kill "$dev_pid" 2>/dev/null || true; wait "$dev_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

for _ in $(seq 1 300); do
  curl -sf "http://$internal/status" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -sf "http://$internal/status" >/dev/null || { cat "$work/dev.log"; exit 1; }

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

run() { # name url header
  echo "== $1: wrk -t$threads -c$connections -d$duration --latency $2" >&2
  wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$work/post.lua" -H "$3" "$2" | tee "$work/$1.txt" >&2
}
run direct "http://$public/anagrafe/v1/residenza" "Authorization: Bearer $voucher"
run proxy "http://$internal/fruizioni/comune-anagrafe/residenza" "X-API-Key: $key"
tokens_after=$(curl -s "http://$authority/stats")

to_ms() { awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000 } }'; }
pct() { grep -E "^ +$2%" "$work/$1.txt" | awk '{print $2}' | to_ms; }
errors() { grep -E 'Non-2xx|Socket errors' "$work/$1.txt" || true; }
d50=$(pct direct 50); d99=$(pct direct 99); p50=$(pct proxy 50); p99=$(pct proxy 99)
drps=$(grep Requests/sec "$work/direct.txt" | awk '{print $2}')
prps=$(grep Requests/sec "$work/proxy.txt" | awk '{print $2}')
echo
echo "profile=$profile connections=$connections threads=$threads duration=$duration delay_ms=$delay_ms cores=$(nproc)"
echo "direct: p50 ${d50} ms  p99 ${d99} ms  ${drps} req/s $(errors direct)"
echo "proxy:  p50 ${p50} ms  p99 ${p99} ms  ${prps} req/s $(errors proxy)"
awk -v a="$p50" -v b="$d50" -v c="$p99" -v d="$d99" 'BEGIN { printf "added by the proxy: p50 %+.2f ms, p99 %+.2f ms\n", a-b, c-d }'
echo "token requests at the authority: before $tokens_before after $tokens_after"

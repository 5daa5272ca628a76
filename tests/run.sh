#!/usr/bin/env bash
# Runs every check and test of pdnd-gateway: formatting, lints, the dependency policy
# (cargo deny), the OpenAPI contracts against the Italian guidelines, unit, property and
# end-to-end suites on SQLite and on a throwaway PostgreSQL and Redis this script starts (and
# stops), then the contracts against the running gateway, and the release binary as the
# container image runs it (tests/scripts/unprivileged.sh), and the instructions per request
# against a committed baseline (tests/scripts/callgrind.sh).
#
# Usage: bash tests/run.sh        (from the repository root; installs what is missing)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

say() { printf '\n==> %s\n' "$*"; }

# Where cargo builds (shared with `cargo run` unless a CI cache exists).
. "$root/tests/scripts/target_dir.sh"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

say "setup"
bash tests/scripts/setup.sh

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "cargo deny: licences, bans, sources (deny.toml)"
bash tests/scripts/cargo_deny.sh

say "OpenAPI contracts: Italian guidelines (Spectral, zero errors)"
bash tests/scripts/spectral.sh

say "Helm chart: lint, render, Kubernetes schemas, refusals (offline)"
bash tests/scripts/helm.sh

say "PostgreSQL and Redis (throwaway)"
pgdir=$(mktemp -d /tmp/pdndgw-pg.XXXXXX)
redisdir=$(mktemp -d /tmp/pdndgw-redis.XXXXXX)
redishadir=$(mktemp -d /tmp/pdndgw-redis-ha.XXXXXX)
cleanup() {
  bash tests/scripts/postgres.sh stop "$pgdir" >/dev/null 2>&1 || true
  bash tests/scripts/redis.sh stop "$redisdir" >/dev/null 2>&1 || true
  bash tests/scripts/redis_ha.sh stop "$redishadir" >/dev/null 2>&1 || true
  rm -rf "$pgdir" "$redisdir" "$redishadir"
}
trap cleanup EXIT
url_line=$(bash tests/scripts/postgres.sh start "$pgdir" | grep '^DATABASE_URL=' | tail -n 1)
export PDNDGW_TEST_POSTGRES_URL="${url_line#DATABASE_URL=}"
echo "PostgreSQL at ${PDNDGW_TEST_POSTGRES_URL%%@*}@…"
url_line=$(bash tests/scripts/redis.sh start "$redisdir" | grep '^REDIS_URL=' | tail -n 1)
export PDNDGW_TEST_REDIS_URL="${url_line#REDIS_URL=}"
echo "Redis at $PDNDGW_TEST_REDIS_URL"
ha_lines=$(bash tests/scripts/redis_ha.sh start "$redishadir")
url_line=$(grep '^SENTINEL_URL=' <<<"$ha_lines" | tail -n 1)
export PDNDGW_TEST_REDIS_SENTINEL_URL="${url_line#SENTINEL_URL=}"
url_line=$(grep '^CLUSTER_URL=' <<<"$ha_lines" | tail -n 1)
export PDNDGW_TEST_REDIS_CLUSTER_URL="${url_line#CLUSTER_URL=}"
echo "Redis Sentinel at $PDNDGW_TEST_REDIS_SENTINEL_URL, Cluster at $PDNDGW_TEST_REDIS_CLUSTER_URL"

say "cargo test (unit, property, end-to-end)"
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$pgdir/cargo-test.log"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
  exit "$status"
fi

say "OpenAPI contracts against the running gateway (Schemathesis)"
cargo build --locked --bin pdnd-gateway
bash tests/scripts/schemathesis.sh

say "The image's runtime assumptions: release binary, unprivileged user, read-only working directory"
bash tests/scripts/unprivileged.sh

say "Instructions per request against tests/load/callgrind_baseline.json (callgrind, release)"
bash tests/scripts/callgrind.sh

say "The Helm chart and the binary agree (rendered configuration, migrate Job, probes)"
bash tests/scripts/chart_agreement.sh

passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' "$pgdir/cargo-test.log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$pgdir/cargo-test.log" | awk '{s+=$1} END {print s+0}')
say "all checks passed"
echo "tests: ${passed} passed, ${failed} failed"

#!/usr/bin/env bash
# Contract tests: the committed OpenAPI documents against the running gateway.
#
# Starts `pdnd-gateway dev` (the built binary, free ports, a throwaway data directory), obtains a
# PDND voucher per e-service from its local authority, and runs Schemathesis over every operation
# of openapi/anagrafe-v1.yaml and openapi/tributi-v1.yaml (examples, coverage and fuzzing phases)
# with these checks: no 5xx, status codes, content types, headers and bodies as the document
# declares them, and every method a path does not declare answered 405 with a right `Allow`.
# Schemathesis is installed, pinned, into the git-ignored .tools/venv on first use.
#
# Usage: bash tests/scripts/schemathesis.sh
#   SCHEMATHESIS_EXAMPLES   test cases per operation and phase (default 100)
#   SCHEMATHESIS_SEED       generation seed (default fixed, so a CI failure reproduces)
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
EXAMPLES="${SCHEMATHESIS_EXAMPLES:-100}"
SEED="${SCHEMATHESIS_SEED:-20261124}"
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method,allow_header_conformance

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
# Where cargo builds (shared with `cargo run` unless a CI cache exists).
. "$root/tests/scripts/target_dir.sh"

# The tool, pinned.
venv="$root/.tools/venv"
installed=$("$venv/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}' || true)
if [ "$installed" != "$SCHEMATHESIS_VERSION" ]; then
  echo "installing schemathesis==$SCHEMATHESIS_VERSION into .tools/venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# The binary under test (a no-op when tests/run.sh has just built it).
cargo build --quiet --locked --bin pdnd-gateway
bin="$CARGO_TARGET_DIR/debug/pdnd-gateway"

work=$(mktemp -d /tmp/pdndgw-contract.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

PDNDGW_SERVER__PUBLIC_LISTEN=127.0.0.1:0 \
PDNDGW_SERVER__INTERNAL_LISTEN=127.0.0.1:0 \
PDNDGW_DEV__AUTHORITY_LISTEN=127.0.0.1:0 \
PDNDGW_DEV__RESIDENTS=200 \
RUST_LOG=warn \
  "$bin" dev --data-dir "$work/data" >"$work/dev.out" 2>"$work/dev.err" &
pid=$!

# The start-up message names the addresses actually bound.
for _ in $(seq 1 240); do
  grep -q '^Stop with Ctrl-C' "$work/dev.out" 2>/dev/null && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "schemathesis.sh: pdnd-gateway dev exited:" >&2
    cat "$work/dev.err" >&2
    exit 1
  fi
  sleep 0.5
done
url_on() { grep -E "^ *$1" "$work/dev.out" | grep -Eo 'http://[0-9.:]+' | head -n 1; }
public=$(url_on 'e-services \(public\)')
authority=$(url_on 'local PDND authority')
if [ -z "$public" ] || [ -z "$authority" ]; then
  echo "schemathesis.sh: no addresses in the start-up message:" >&2
  cat "$work/dev.out" "$work/dev.err" >&2
  exit 1
fi
echo "gateway $public, authority $authority"

voucher() {
  PDNDGW_PDND__TOKEN_ENDPOINT="$authority/token.oauth2" \
    "$bin" voucher --data-dir "$work/data" --eservice "$1"
}

status=0
for eservice in anagrafe tributi; do
  token=$(voucher "$eservice")
  echo
  echo "==> schemathesis: openapi/$eservice-v1.yaml against $public/$eservice/v1"
  # From the scratch directory: Schemathesis keeps its example database in the working directory.
  if ! (cd "$work" && "$venv/bin/schemathesis" run "$root/openapi/$eservice-v1.yaml" \
      --url "$public/$eservice/v1" \
      --header "Authorization: Bearer $token" \
      --checks "$CHECKS" \
      --max-examples "$EXAMPLES" \
      --seed "$SEED" \
      --request-timeout 10 \
      --no-color); then
    status=1
  fi
done
if [ "$status" -ne 0 ]; then
  echo "schemathesis.sh: the server and the documents disagree (see above)" >&2
fi
exit "$status"

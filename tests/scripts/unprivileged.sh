#!/usr/bin/env bash
# The container image's runtime assumptions, proved without a container engine: the release
# binary runs `serve` as an unprivileged user (UID/GID of its own, like the image's 65532) with
#   - the working directory read-only and HOME unset,
#   - the configuration from a read-only file, the ModI signing key mounted the Kubernetes way
#     (mode 0440, group = the process's group, server.allow_group_readable_keys = true),
#   - a single writable directory for the SQLite databases (the image's mounted volume),
#   - PDND's keys fetched over HTTPS from a local server whose CA the process trusts through
#     SSL_CERT_FILE (as a CA bundle mounted into the image would be),
# and must start, answer /livez, /readyz, /status and a request with a PDND voucher (issued by
# the `dev` authority, whose key set the HTTPS server publishes), stop on SIGTERM with status 0,
# and have written nothing anywhere but the data directory.
#
# Usage: bash tests/scripts/unprivileged.sh   (from the repository root; as root, which creates
# the user `pdndgw-test` when missing). Builds the release binary once (--locked) in
# $CARGO_TARGET_DIR; UNPRIVILEGED_BIN=path skips the build and uses that binary instead.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
. "$root/tests/scripts/target_dir.sh"

fail() { echo "unprivileged: FAILED: $*" >&2; exit 1; }
say() { echo "unprivileged: $*"; }

if [ "$(id -u)" -ne 0 ]; then
  if [ -n "${CI:-}" ]; then
    fail "must run as root (to create and switch to an unprivileged user)"
  fi
  echo "unprivileged: SKIPPED: not root, cannot switch to an unprivileged user"
  exit 0
fi
for tool in setpriv useradd openssl python3 curl; do
  command -v "$tool" >/dev/null || fail "missing tool: $tool"
done

user=pdndgw-test
if ! id -u "$user" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
fi
uid=$(id -u "$user")
gid=$(id -g "$user")

bin=${UNPRIVILEGED_BIN:-}
if [ -z "$bin" ]; then
  say "cargo build --release --locked --bin pdnd-gateway"
  cargo build --release --locked --bin pdnd-gateway
  bin="$CARGO_TARGET_DIR/release/pdnd-gateway"
fi

scratch=$(mktemp -d /tmp/pdndgw-unpriv.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT
chmod 0755 "$scratch"
# The layout of the image: binary, read-only configuration and secrets, one writable volume,
# a read-only working directory.
mkdir -p "$scratch"/{bin,etc,secrets,data,work,tls,jwks/.well-known}
install -m 0755 "$bin" "$scratch/bin/pdnd-gateway"
chown "$uid:$gid" "$scratch/data"
chmod 0700 "$scratch/data"
chmod 0555 "$scratch/work"

# shellcheck source=tests/scripts/common.sh
. "$root/tests/scripts/common.sh"

# 1. The dev authority (as root, outside the subject of the test): issues the voucher.
say "starting the dev authority"
dev_log="$scratch/dev.log"
PDNDGW_SERVER__PUBLIC_LISTEN=127.0.0.1:0 PDNDGW_SERVER__INTERNAL_LISTEN=127.0.0.1:0 \
  PDNDGW_DEV__AUTHORITY_LISTEN=127.0.0.1:0 PDNDGW_DEV__RESIDENTS=50 \
  "$scratch/bin/pdnd-gateway" dev --data-dir "$scratch/dev" >"$dev_log" 2>"$scratch/dev.err" &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q '^Stop with Ctrl-C' "$dev_log" 2>/dev/null && break
  sleep 0.2
done
authority=$(grep 'local PDND authority' "$dev_log" | grep -o 'http://[0-9.:]*' | head -n 1 || true)
[ -n "$authority" ] || fail "dev did not start: $(cat "$scratch/dev.err")"
sample_cf=$(grep -o '"codiceFiscale":"[A-Z0-9]*"' "$dev_log" | head -n 1 | cut -d'"' -f4 || true)
voucher=$(PDNDGW_PDND__TOKEN_ENDPOINT="$authority/token.oauth2" \
  "$scratch/bin/pdnd-gateway" voucher --data-dir "$scratch/dev")
curl -fsS "$authority/.well-known/jwks.json" -o "$scratch/jwks/.well-known/jwks.json"

# 2. The authority's key set over HTTPS, under a throwaway CA.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj '/CN=unprivileged test CA' \
  -keyout "$scratch/tls/ca-key.pem" -out "$scratch/tls/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj '/CN=127.0.0.1' \
  -keyout "$scratch/tls/key.pem" -out "$scratch/tls/req.pem" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$scratch/tls/ext.cnf"
openssl x509 -req -in "$scratch/tls/req.pem" -CA "$scratch/tls/ca.pem" \
  -CAkey "$scratch/tls/ca-key.pem" -CAcreateserial -days 1 -extfile "$scratch/tls/ext.cnf" \
  -out "$scratch/tls/cert.pem" 2>/dev/null
jwks_port=$(free_port)
python3 - "$jwks_port" "$scratch/jwks" "$scratch/tls/cert.pem" "$scratch/tls/key.pem" \
  >"$scratch/https.log" 2>&1 <<'PY' &
import functools, http.server, ssl, sys
port, root, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
PY
pids+=($!)
for _ in $(seq 1 50); do
  curl -fsS --cacert "$scratch/tls/ca.pem" "https://127.0.0.1:$jwks_port/.well-known/jwks.json" \
    >/dev/null 2>&1 && break
  sleep 0.2
done

# 3. Secrets mounted the Kubernetes way: owned by root, group = the process's, mode 0440.
install -m 0440 -o root -g "$gid" "$scratch/dev/modi/signing-rsa-key.pem" "$scratch/secrets/signing-key.pem"
install -m 0444 "$scratch/dev/modi/signing-rsa-chain.pem" "$scratch/secrets/signing-chain.pem"
install -m 0444 "$scratch/dev/purposes.toml" "$scratch/etc/purposes.toml"

# The dev authority's vouchers name these (config/dev.toml): audience, producer, e-services.
cat >"$scratch/etc/gateway.toml" <<EOF
[server]
public_listen = "127.0.0.1:0"
internal_listen = "127.0.0.1:0"
workers = 1
shutdown_timeout_secs = 10
allow_group_readable_keys = true

[pdnd]
environment = "collaudo"
token_endpoint = "https://127.0.0.1:$jwks_port/token.oauth2"
client_assertion_audience = "auth.dev.interop.local/client-assertion"
voucher_issuers = ["dev.interop.local"]
jwks_url = "https://127.0.0.1:$jwks_port/.well-known/jwks.json"
voucher_max_lifetime_secs = 86400

[eservices.anagrafe]
public_url = "https://api.comune.example.it/anagrafe/v1"
audiences = ["http://127.0.0.1:8080/anagrafe/v1"]
eservice_id = "6f1d2c1e-3a7b-4c5d-8e9f-0a1b2c3d4e01"
descriptor_id = "6f1d2c1e-3a7b-4c5d-8e9f-0a1b2c3d4e11"

[eservices.anagrafe.modi]
sign_responses = true

[eservices.tributi]
public_url = "https://api.comune.example.it/tributi/v1"
audiences = ["https://api.comune.example.it/tributi/v1"]

[comune]
producer_id = "6f1d2c1e-3a7b-4c5d-8e9f-0a1b2c3d4e00"
name = "Comune di Prova"
contact_email = "interoperabilita@comune.example.it"

[database]
url = "sqlite://$scratch/data/comune.db?mode=rwc"

[modi]
signing_key_file = "$scratch/secrets/signing-key.pem"
certificate_chain_file = "$scratch/secrets/signing-chain.pem"
issuer = "https://api.comune.example.it"

[audit]
url = "sqlite://$scratch/data/audit.db?mode=rwc"
hmac_secret = ""

[purposes]
file = "$scratch/etc/purposes.toml"
EOF
chmod 0444 "$scratch/etc/gateway.toml"

# What exists before, where the user could write: the working directory and the world-writable
# places. Afterwards nothing of the user's may be found outside the data directory.
before=$(find "$scratch/work" -mindepth 1 | sort)
stamp="$scratch/stamp"
touch "$stamp"

# 4. serve, unprivileged, HOME unset, from the read-only working directory.
say "serve as $user ($uid:$gid), working directory read-only, HOME unset"
serve_log="$scratch/serve.log"
# A seed first (as the user, into the data volume), so the e-service has data to answer with.
(cd "$scratch/work" && env -i PATH=/usr/bin:/bin \
  setpriv --reuid="$uid" --regid="$gid" --clear-groups \
  "$scratch/bin/pdnd-gateway" seed --database-url "sqlite://$scratch/data/comune.db?mode=rwc" \
  --residents 50 >/dev/null) || fail "seed as $user"
hmac=$(openssl rand -hex 32)
(cd "$scratch/work" && exec env -i PATH=/usr/bin:/bin SSL_CERT_FILE="$scratch/tls/ca.pem" \
  PDNDGW_AUDIT__HMAC_SECRET="$hmac" \
  setpriv --reuid="$uid" --regid="$gid" --clear-groups \
  "$scratch/bin/pdnd-gateway" --log-format json serve --config "$scratch/etc/gateway.toml") \
  >"$serve_log" 2>&1 &
serve_pid=$!
pids+=($serve_pid)
public='' internal=''
for _ in $(seq 1 100); do
  line=$(grep 'pdnd-gateway serving' "$serve_log" 2>/dev/null || true)
  if [ -n "$line" ]; then
    public=$(echo "$line" | grep -o '"public":"[0-9.:]*"' | cut -d'"' -f4 || true)
    internal=$(echo "$line" | grep -o '"internal":"[0-9.:]*"' | cut -d'"' -f4 || true)
    break
  fi
  kill -0 "$serve_pid" 2>/dev/null || fail "serve exited: $(cat "$serve_log")"
  sleep 0.2
done
[ -n "$public" ] && [ -n "$internal" ] || fail "serve did not start: $(cat "$serve_log")"
[ "$(stat -c %u "/proc/$serve_pid")" = "$uid" ] || fail "serve does not run as $user"

code() { curl -s -o "$scratch/body" -w '%{http_code}' "$@"; }
[ "$(code "http://$internal/livez")" = 200 ] || fail "/livez: $(cat "$scratch/body")"
ready=''
for _ in $(seq 1 50); do
  if [ "$(code "http://$internal/readyz")" = 200 ]; then ready=yes; break; fi
  sleep 0.2
done
[ -n "$ready" ] || fail "/readyz: $(cat "$scratch/body")"
grep -q '"jwks":{"status":"ok"}' "$scratch/body" || fail "/readyz body: $(cat "$scratch/body")"
grep -q '"signing_key":{"status":"ok"}' "$scratch/body" || fail "/readyz body: $(cat "$scratch/body")"
[ "$(code "http://$public/status")" = 200 ] || fail "/status: $(cat "$scratch/body")"
status=$(code -X POST "http://$public/anagrafe/v1/residenza" -H "Authorization: Bearer $voucher" \
  -H 'Content-Type: application/json' -H 'X-Request-Id: unprivileged-1' \
  -d "{\"codiceFiscale\":\"$sample_cf\"}")
[ "$status" = 200 ] || fail "voucher request: $status $(cat "$scratch/body")"
grep -q '"residente"' "$scratch/body" || fail "voucher request body: $(cat "$scratch/body")"
say "/livez, /readyz, /status and a voucher request answered 200"

# 5. SIGTERM: exit status 0.
kill -TERM "$serve_pid"
set +e
wait "$serve_pid"
exit_status=$?
set -e
[ "$exit_status" -eq 0 ] || fail "serve exited $exit_status after SIGTERM: $(tail -n 20 "$serve_log")"
grep -q 'stopped: every request in flight finished' "$serve_log" || fail "no clean stop in the log"

# 6. Nothing written outside the data directory.
after=$(find "$scratch/work" -mindepth 1 | sort)
[ "$before" = "$after" ] || fail "files appeared in the working directory: $after"
strays=$(find /tmp /var/tmp /dev/shm "$scratch" -xdev -user "$uid" -newer "$stamp" \
  -not -path "$scratch/data" -not -path "$scratch/data/*" 2>/dev/null || true)
[ -z "$strays" ] || fail "written outside the data directory: $strays"
[ -s "$scratch/data/audit.db" ] || fail "no audit trail in the data directory"
say "stopped on SIGTERM with status 0; wrote only in the data directory"
say "OK"

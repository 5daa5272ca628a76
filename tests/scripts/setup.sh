#!/usr/bin/env bash
# Installs what the build and the tests need and a fresh Debian machine lacks.
# Idempotent: does nothing when everything is present. Needs root only when it installs.
set -euo pipefail

need=()
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# josekit links the system OpenSSL.
pkg-config --exists openssl 2>/dev/null || need+=(libssl-dev)
# The binary's allocator, jemalloc, is built from its C sources by configure and make.
command -v make >/dev/null 2>&1 || need+=(make)
# PostgreSQL server binaries for the throwaway test database.
have_pg=false
for d in $(command -v initdb 2>/dev/null | xargs -r dirname) /usr/lib/postgresql/*/bin; do
  if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then have_pg=true; fi
done
$have_pg || need+=(postgresql)
# Redis for the shared state store's suites.
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)

if [ "${#need[@]}" -gt 0 ]; then
  # shellcheck source=tests/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/common.sh"
  apt_install "${need[@]}"
fi

rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
echo "setup: ok"

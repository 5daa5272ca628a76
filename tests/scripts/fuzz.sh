#!/usr/bin/env bash
# Fuzzes every parser the network reaches (gateway/fuzz, libFuzzer through cargo-fuzz) for a
# short, fixed time per target, starting from the committed corpora, and fails on any crash or
# broken assertion. cargo-fuzz is installed, pinned, on first use; the fuzz crate needs a nightly
# toolchain (the project itself stays on stable). The committed corpora are also replayed on
# stable by `cargo test -p gateway --test fuzz_corpus`.
#
# Usage: bash tests/scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS   per target (default: $FUZZ_SECONDS or 20)
#   TARGET    only these targets (default: all, in the order listed below)
# Environment:
#   FUZZ_TOOLCHAIN   rustup toolchain for cargo-fuzz (default: nightly)
#   FUZZ_TARGET_DIR  cargo target dir of the instrumented build (default: gateway/fuzz/target)
#   FUZZ_MERGE=1     after each run, merge the inputs that add coverage into the committed
#                    corpus (review the size before committing: keep it small)
# A crash leaves its input in gateway/fuzz/artifacts/<target>/; reproduce it with
#   cargo +nightly fuzz run <target> <file>   (in gateway/fuzz), or add it to the corpus and
#   run the stable replay test.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2

# One line per target; the replay test checks this list against gateway::fuzzing::TARGETS.
TARGETS=(
  bearer_voucher
  compact_jws
  client_assertion
  modi_digest
  modi_signature
  modi_tracking
  pdnd_keys
  codice_fiscale
  eservice_bodies
  path_resolver
)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
fuzz="$root/gateway/fuzz"
seconds="${FUZZ_SECONDS:-20}"
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
  seconds="$1"
  shift
fi
if [ $# -gt 0 ]; then
  selected=("$@")
  for t in "${selected[@]}"; do
    printf '%s\n' "${TARGETS[@]}" | grep -qx -- "$t" || { echo "fuzz.sh: unknown target $t" >&2; exit 2; }
  done
else
  selected=("${TARGETS[@]}")
fi
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
target_dir="${FUZZ_TARGET_DIR:-$fuzz/target}"

command -v rustup >/dev/null 2>&1 || { echo "fuzz.sh: rustup is required" >&2; exit 2; }
rustup run "$toolchain" rustc --version >/dev/null 2>&1 || {
  echo "fuzz.sh: the $toolchain toolchain is missing (rustup toolchain install $toolchain)" >&2
  exit 2
}
installed=$(cargo fuzz --version 2>/dev/null || true)
if [ "$installed" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

cd "$fuzz"
echo "building the fuzz targets ($toolchain, $target_dir)"
# `cargo fuzz build` takes one target or builds them all.
if [ ${#selected[@]} -eq 1 ]; then
  cargo "+$toolchain" fuzz build --target-dir "$target_dir" "${selected[0]}"
else
  cargo "+$toolchain" fuzz build --target-dir "$target_dir"
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
summary=()
for t in "${selected[@]}"; do
  corpus="$fuzz/corpus/$t"
  [ -d "$corpus" ] || { echo "fuzz.sh: no corpus for $t ($corpus)" >&2; exit 2; }
  work="$scratch/$t"
  artifacts="$fuzz/artifacts/$t"
  mkdir -p "$work" "$artifacts"
  log="$scratch/$t.log"
  echo "== $t: ${seconds}s"
  # New inputs go to the scratch folder; the committed corpus is only read.
  if cargo "+$toolchain" fuzz run --target-dir "$target_dir" "$t" "$work" "$corpus" -- \
    -max_total_time="$seconds" -artifact_prefix="$artifacts/" -print_final_stats=1 \
    -dict="$fuzz/json.dict" \
    >"$log" 2>&1; then
    status=ok
  else
    status=CRASH
    failed+=("$t")
    grep -E "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -n 20 || true
  fi
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -n 1 || true)
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n 1 || true)
  summary+=("$(printf '%-18s %-6s runs=%-9s %s' "$t" "$status" "${runs:-?}" "$cov")")
  if [ "${FUZZ_MERGE:-0}" = 1 ] && [ "$status" = ok ]; then
    cargo "+$toolchain" fuzz run --target-dir "$target_dir" "$t" "$corpus" "$work" -- -merge=1 \
      >"$scratch/$t.merge.log" 2>&1
  fi
done

echo
echo "target             status runs       coverage / corpus (units/bytes)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in: ${failed[*]} (inputs in gateway/fuzz/artifacts/)" >&2
  exit 1
fi

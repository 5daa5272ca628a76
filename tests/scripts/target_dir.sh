# Sourced by the test and load scripts (with $root set to the clone): where cargo builds.
# $CARGO_TARGET_DIR when set; else the shared directory outside the clone when one exists (a CI
# machine keeps it between runs of fresh clones); else target/ in the clone, the one
# `cargo run` uses, so that the README's two commands build the workspace once.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  if [ -d "$HOME/.cache/pdnd-gateway/target" ]; then
    CARGO_TARGET_DIR="$HOME/.cache/pdnd-gateway/target"
  else
    CARGO_TARGET_DIR="$root/target"
  fi
fi
export CARGO_TARGET_DIR

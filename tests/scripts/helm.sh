#!/usr/bin/env bash
# Offline checks of the Helm chart helm/pdnd-gateway (no cluster, no container engine):
#   - helm lint --strict and helm template over every example values file (and the production
#     example with the HPA and the ServiceMonitor on);
#   - each rendered set validated strictly against the Kubernetes schemas of the two newest minor
#     versions kubernetes-validate knows, plus the chart's own rules (tests/scripts/chart_check.py);
#   - the same values render the same bytes twice;
#   - what must be refused is refused: schema violations and the HA guards.
# Installs pinned Helm and kubernetes-validate into tests/.tools/ (tests/scripts/helm_tools.sh).
# Without network: SKIPPED locally, a failure with CI set.
#
# Usage: bash tests/scripts/helm.sh   (from anywhere)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
chart="$root/helm/pdnd-gateway"

set +e
tools_out=$(bash "$root/tests/scripts/helm_tools.sh")
status=$?
set -e
if [ "$status" -ne 0 ]; then
  if [ -n "${CI:-}" ]; then
    echo "helm.sh: FAILED: the chart tools could not be installed (CI is set)" >&2
    exit 1
  fi
  echo "helm.sh: SKIPPED: Helm/kubernetes-validate could not be installed (no network?); the chart is NOT checked"
  exit 0
fi
HELM=$(printf '%s\n' "$tools_out" | sed -n 's/^HELM=//p')
KV_PYTHON=$(printf '%s\n' "$tools_out" | sed -n 's/^KV_PYTHON=//p')

scratch=$(mktemp -d /tmp/pdndgw-helm.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
export HELM_CACHE_HOME="$scratch/cache" HELM_CONFIG_HOME="$scratch/config" HELM_DATA_HOME="$scratch/data"
"$HELM" version --short

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

render_and_check() { # name, extra check args, helm args...
  local name=$1 check_args=$2
  shift 2
  echo "--- $name"
  if ! "$HELM" lint --strict "$chart" "$@" >"$scratch/$name.lint" 2>&1; then
    cat "$scratch/$name.lint"; fail "helm lint --strict ($name)"; return
  fi
  if ! "$HELM" template pdnd-gateway "$chart" --namespace pdnd "$@" >"$scratch/$name.yaml" 2>"$scratch/$name.err"; then
    cat "$scratch/$name.err"; fail "helm template ($name)"; return
  fi
  "$HELM" template pdnd-gateway "$chart" --namespace pdnd "$@" >"$scratch/$name.again.yaml"
  cmp -s "$scratch/$name.yaml" "$scratch/$name.again.yaml" || fail "two renders of $name differ"
  # shellcheck disable=SC2086
  "$KV_PYTHON" "$root/tests/scripts/chart_check.py" "$scratch/$name.yaml" $check_args || fail "validation ($name)"
}

for values in "$chart"/examples/*.yaml; do
  render_and_check "$(basename "$values" .yaml)" "" -f "$values"
done
render_and_check produzione-hpa --expect-hpa -f "$chart/examples/produzione.yaml" \
  --set autoscaling.enabled=true --set serviceMonitor.enabled=true \
  --set grafanaDashboard.enabled=true --set prometheusRule.enabled=true

# The validation itself can fail: a field Kubernetes does not know in the Deployment.
"$HELM" template pdnd-gateway "$chart" -f "$chart/examples/produzione.yaml" \
  | sed 's/^\(\s*\)enableServiceLinks: false/\1enableServiceLinks: false\n\1notAPodField: true/' >"$scratch/broken.yaml"
if "$KV_PYTHON" "$root/tests/scripts/chart_check.py" "$scratch/broken.yaml" >"$scratch/broken.out" 2>&1; then
  fail "a Deployment with an unknown field passed validation"
elif grep -q "notAPodField" "$scratch/broken.out"; then
  echo "--- refused as expected: unknown field in a rendered Deployment"
else
  cat "$scratch/broken.out"; fail "unknown field refused for another reason"
fi

# Values the chart must refuse, each with the words its message must contain.
refuse() { # description, expected message fragment, helm args...
  local what=$1 expect=$2
  shift 2
  if "$HELM" template pdnd-gateway "$chart" "$@" >"$scratch/refused.out" 2>&1; then
    fail "rendered although it must be refused: $what"
  elif grep -qF -- "$expect" "$scratch/refused.out"; then
    echo "--- refused as expected: $what"
  else
    cat "$scratch/refused.out"; fail "refused for another reason than expected ($what): wanted '$expect'"
  fi
}
collaudo=(-f "$chart/examples/collaudo.yaml")
prod=(-f "$chart/examples/produzione.yaml")
refuse "replicaCount as a string" "got string, want integer" "${collaudo[@]}" --set-string replicaCount=3
refuse "an unknown top-level key" "additional properties 'replicas' not allowed" "${collaudo[@]}" --set replicas=3
refuse "an unknown gateway key" "additional properties 'listen_everywhere' not allowed" "${collaudo[@]}" --set config.server.listen_everywhere=true
refuse "a secret inlined into the config" "additional properties 'hmac_secret' not allowed" "${collaudo[@]}" --set config.audit.hmac_secret=inline-secret-value-0123456789abcdef
refuse "internal Service of type LoadBalancer" "/internalService/type" "${collaudo[@]}" --set internalService.type=LoadBalancer
refuse "replicas > 1 without Redis" "set config.state.backend: redis" "${collaudo[@]}" --set replicaCount=2
refuse "HPA without Redis" "autoscaling.enabled is true but config.state.backend is \"memory\"" "${collaudo[@]}" --set autoscaling.enabled=true
refuse "Redis backend without its URL Secret" "set secrets.stateUrl.name" "${prod[@]}" --set secrets.stateUrl.name=
refuse "SQLite with more than one replica" "config.database.url is SQLite" -f "$chart/examples/minimal.yaml" \
  --set replicaCount=2 --set config.state.backend=redis --set secrets.stateUrl.name=redis
refuse "grace period not above preStop + shutdown timeout" "must exceed preStopSleepSeconds" "${prod[@]}" \
  --set lifecycle.terminationGracePeriodSeconds=35
refuse "grace period not above preStop + shutdown delay + timeout" "(45)" "${prod[@]}" \
  --set lifecycle.terminationGracePeriodSeconds=45 --set config.server.shutdown_delay_secs=10
refuse "mTLS on the internal listener (probes cannot pass it)" "kubelet's probes" "${prod[@]}" \
  --set secrets.internalTls.clientCaKey=ca.crt
refuse "internal listener in clear text without consent" "has no TLS" "${collaudo[@]}" \
  --set config.server.internal_allow_plaintext_non_loopback=false

if [ "$failures" -ne 0 ]; then
  echo "helm.sh: $failures check(s) failed"
  exit 1
fi
echo "helm.sh: all chart checks passed"

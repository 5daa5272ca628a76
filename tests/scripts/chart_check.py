"""Validates a rendered chart (`helm template` output) offline.

    python chart_check.py RENDERED.yaml [--expect-hpa]

1. Every object against the Kubernetes OpenAPI schemas of the two newest minor versions
   kubernetes-validate knows, strictly (unknown fields are errors). Custom resources whose CRD
   is not part of Kubernetes are skipped by name, visibly (SKIPPED_CRDS); any other unknown kind
   is an error.
2. The chart's own promises: every container (init, Job, CronJob and test pods included) runs
   non-root as 65532 with a read-only root filesystem, no privilege escalation, all capabilities
   dropped and the RuntimeDefault seccomp profile; secret strings reach the gateway only through
   secretKeyRef; no Secret object is rendered; the grace period exceeds preStop sleep plus the
   gateway's shutdown timeout; `replicas` is absent exactly when an HPA is rendered; the
   internal Service is ClusterIP and no Ingress routes to it; only the gateway's own pods match
   the Deployment's (and the Services') selector; a dashboard ConfigMap carries the sidecar
   label and valid JSON; a PrometheusRule has alerts with an expression each.
"""
import json
import re
import sys
import tomllib

import yaml
from kubernetes_validate import utils as kv

SKIPPED_CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
SECRET_ENV = {"PDNDGW_DATABASE__URL", "PDNDGW_AUDIT__URL", "PDNDGW_AUDIT__HMAC_SECRET", "PDNDGW_STATE__URL"}

errors = []


def err(msg):
    errors.append(msg)


def pod_specs(doc):
    kind = doc["kind"]
    spec = doc.get("spec", {})
    if kind == "Pod":
        yield spec
    elif kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        yield spec["template"]["spec"]
    elif kind == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]


def pod_templates(doc):
    """The pod metadata+spec a workload creates (the Pod itself for a Pod)."""
    kind = doc["kind"]
    if kind == "Pod":
        yield doc
    elif kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        yield doc["spec"]["template"]
    elif kind == "CronJob":
        yield doc["spec"]["jobTemplate"]["spec"]["template"]


def check_security(name, pod):
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        err(f"{name}: pod securityContext must set runAsNonRoot and seccomp RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        err(f"{name}: automountServiceAccountToken must be false")
    for c in pod.get("initContainers", []) + pod.get("containers", []):
        sc = c.get("securityContext", {})
        want = {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
        }
        for k, v in want.items():
            if sc.get(k) != v:
                err(f"{name}/{c['name']}: securityContext.{k} must be {v}, is {sc.get(k)}")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            err(f"{name}/{c['name']}: capabilities must drop ALL")
        if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            err(f"{name}/{c['name']}: seccompProfile must be RuntimeDefault")
        for e in c.get("env", []):
            if e["name"] in SECRET_ENV and ("value" in e or "secretKeyRef" not in e.get("valueFrom", {})):
                err(f"{name}/{c['name']}: {e['name']} must come from a secretKeyRef")


def main():
    path = sys.argv[1]
    expect_hpa = "--expect-hpa" in sys.argv
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    versions = kv.all_versions()
    minors = sorted({kv.major_minor(v) for v in versions}, key=lambda v: tuple(map(int, v.split("."))))[-2:]
    print(f"kubernetes-validate knows {', '.join(minors)} (the two newest minors): validating strictly")
    kinds = {}
    for doc in docs:
        ident = f"{doc['kind']}/{doc['metadata']['name']}"
        kinds.setdefault(doc["kind"], []).append(doc)
        if (doc["apiVersion"], doc["kind"]) in SKIPPED_CRDS:
            print(f"SKIPPED schema validation of {ident}: {doc['apiVersion']} is a CRD outside Kubernetes")
            continue
        for minor in minors:
            try:
                kv.validate(doc, minor + ".0", strict=True)
            except kv.ValidationError as e:
                p = ".".join(str(x) for x in e.path)
                err(f"{ident} against {minor}: {p}: {e.message}")
            except kv.SchemaNotFoundError as e:
                err(f"{ident}: {e.message}")
        for pod in pod_specs(doc):
            check_security(ident, pod)

    if "Secret" in kinds:
        err("the chart rendered a Secret: secrets must be referenced, never inlined")
    deployments = kinds.get("Deployment", [])
    if len(deployments) != 1:
        err(f"expected one Deployment, got {len(deployments)}")
    else:
        dep = deployments[0]
        pod = dep["spec"]["template"]["spec"]
        has_hpa = "HorizontalPodAutoscaler" in kinds
        if has_hpa != expect_hpa:
            err(f"HPA rendered: {has_hpa}, expected {expect_hpa}")
        if has_hpa and "replicas" in dep["spec"]:
            err("Deployment sets replicas while an HPA owns them")
        if not has_hpa and "replicas" not in dep["spec"]:
            err("Deployment without replicas and without HPA")
        gw = next(c for c in pod["containers"] if c["name"] == "gateway")
        sleep = gw["lifecycle"]["preStop"]["sleep"]["seconds"]
        toml_text = next(d for d in kinds["ConfigMap"] if "gateway.toml" in d.get("data", {})
                         and "helm.sh/hook" not in d["metadata"].get("annotations", {}))["data"]["gateway.toml"]
        cfg = tomllib.loads(toml_text)
        shutdown = cfg.get("server", {}).get("shutdown_timeout_secs", 30)
        delay = cfg.get("server", {}).get("shutdown_delay_secs", 0)
        if pod["terminationGracePeriodSeconds"] <= sleep + delay + shutdown:
            err(f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} <= preStop {sleep} + delay {delay} + shutdown {shutdown}")
        for probe, path in (("startupProbe", "/livez"), ("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
            got = gw.get(probe, {}).get("httpGet", {})
            if got.get("path") != path or got.get("port") != "internal":
                err(f"{probe} must GET {path} on the internal port, is {got}")
        for key in ("hmac_secret",):
            if key in cfg.get("audit", {}):
                err("audit.hmac_secret rendered into the ConfigMap")
        for sec, key in (("database", "url"), ("audit", "url"), ("state", "url")):
            v = cfg.get(sec, {}).get(key, "")
            if re.match(r"^[a-z]+://[^/@]*:[^/@]*@", v):
                err(f"{sec}.{key} with a password rendered into the ConfigMap")
        ann = dep["spec"]["template"]["metadata"].get("annotations", {})
        for a in ("checksum/config", "checksum/secret-refs"):
            if not re.fullmatch(r"[0-9a-f]{64}", ann.get(a, "")):
                err(f"pod annotation {a} missing")
        # Only the gateway's pods are behind its selector: a migration, CronJob or test pod
        # matched by it would get Service traffic and count in the PodDisruptionBudget.
        selector = dep["spec"]["selector"]["matchLabels"]
        for doc in docs:
            if doc is dep:
                continue
            for other in pod_templates(doc):
                labels = other.get("metadata", {}).get("labels", {})
                if all(labels.get(k) == v for k, v in selector.items()):
                    err(f"{doc['kind']}/{doc['metadata']['name']}: its pods match the gateway Deployment's selector")
        for svc in kinds.get("Service", []):
            if svc["spec"].get("selector") != selector:
                err(f"Service/{svc['metadata']['name']} selects {svc['spec'].get('selector')}, not the gateway pods {selector}")
    for svc in kinds.get("Service", []):
        if svc["metadata"]["name"].endswith("-internal") and svc["spec"].get("type") != "ClusterIP":
            err(f"{svc['metadata']['name']} must be ClusterIP")
    for ing in kinds.get("Ingress", []):
        for rule in ing["spec"].get("rules", []):
            for p in rule["http"]["paths"]:
                if p["backend"]["service"]["name"].endswith("-internal"):
                    err("an Ingress routes to the internal Service")

    for cm in kinds.get("ConfigMap", []):
        if cm["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
            for key, text in cm.get("data", {}).items():
                try:
                    dash = json.loads(text)
                except ValueError as e:
                    err(f"ConfigMap/{cm['metadata']['name']}: {key} is not JSON: {e}")
                    continue
                if not dash.get("panels"):
                    err(f"ConfigMap/{cm['metadata']['name']}: {key} has no panels")
    for rule in kinds.get("PrometheusRule", []):
        alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
        if not alerts or any(not str(r.get("expr", "")).strip() for r in alerts):
            err(f"PrometheusRule/{rule['metadata']['name']}: every alert needs an expr")

    if errors:
        for e in errors:
            print("ERROR " + e)
        return 1
    print(f"OK {len(docs)} objects ({', '.join(sorted(kinds))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

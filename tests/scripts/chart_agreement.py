"""The chart and the binary agree: the gateway runs with exactly what the chart renders.

    python chart_agreement.py HELM BINARY

Renders helm/pdnd-gateway with examples/produzione.yaml (the HA example) plus the few overrides
that must point at this machine (ports, the stand-in PDND key set, the Redis key prefix), then,
from the rendered objects only:

  - materialises every volume of the gateway pod under a temporary root (ConfigMaps from the
    render, Secrets and operator ConfigMaps from test files, with the modes Kubernetes gives
    them: 0440 for Secrets), and remaps each mountPath into that root;
  - builds the environment from `env` (secretKeyRef resolved against the same test Secrets,
    whose URLs are the test PostgreSQL and Redis);
  - runs the migration hook Job's command, then the Deployment's command;
  - probes as the kubelet does: the startup probe within periodSeconds * failureThreshold, then
    readiness (200 once ready) and liveness (200), on the rendered paths, ports and schemes; the
    test pod's /status through the public port;
  - sends SIGTERM and expects the exit within the rendered terminationGracePeriodSeconds.

Any key of the rendered TOML the binary does not know makes it refuse to start, which fails this
test; the test shows that on itself by adding one key and expecting the refusal. Last, every
gateway key the values schema admits is set at once (sample values from the schema) and the
binary must parse that configuration: the schema offers no key the binary would refuse.
Needs PDNDGW_TEST_POSTGRES_URL and PDNDGW_TEST_REDIS_URL.
"""
import http.server
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import base64

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "helm", "pdnd-gateway")


def fail(msg):
    print(f"chart_agreement: FAIL: {msg}", flush=True)
    sys.exit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def openssl(*args, cwd):
    run(["openssl", *args], cwd=cwd)


def make_pki(d):
    """A TLS CA and a server certificate for 127.0.0.1 (stand-in PDND, internal listener), the
    ModI signing identity (certs/dev-ca.sh), and RSA keys for the two PDND clients."""
    os.makedirs(d, exist_ok=True)
    openssl("genpkey", "-quiet", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "tls-ca-key.pem", cwd=d)
    openssl("req", "-x509", "-new", "-key", "tls-ca-key.pem", "-sha256", "-days", "2", "-subj", "/CN=chart agreement CA",
            "-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign", "-out", "tls-ca.pem", cwd=d)
    openssl("genpkey", "-quiet", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "tls.key", cwd=d)
    openssl("req", "-new", "-key", "tls.key", "-subj", "/CN=localhost", "-out", "tls.csr", cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "tls-ca.pem", "-CAkey", "tls-ca-key.pem", "-sha256", "-days", "2",
            "-set_serial", "0x" + uuid.uuid4().hex, "-extfile", "ext.cnf", "-out", "tls.crt", cwd=d)
    run(["sh", os.path.join(ROOT, "certs", "dev-ca.sh"), os.path.join(d, "modi"), "comune.example.it"])
    for name in ("client", "api-client", "jwks"):
        openssl("genpkey", "-quiet", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", f"{name}.pem", cwd=d)


def b64url_int(hexstr):
    raw = bytes.fromhex(hexstr if len(hexstr) % 2 == 0 else "0" + hexstr)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def start_pdnd_standin(d):
    """HTTPS server with the PDND key set (RSA JWK), as jwks_url/keys_url/token_endpoint."""
    out = run(["openssl", "rsa", "-in", os.path.join(d, "jwks.pem"), "-noout", "-modulus"]).stdout
    modulus = out.strip().split("=", 1)[1]
    jwks = json.dumps({"keys": [{"kty": "RSA", "kid": "chart-agreement", "use": "sig", "alg": "RS256",
                                 "n": b64url_int(modulus), "e": "AQAB"}]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/.well-known/jwks.json"):
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(jwks)))
                self.end_headers()
                self.wfile.write(jwks)
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "tls.crt"), os.path.join(d, "tls.key"))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def helm_template(helm, overrides_file, scratch, extra=()):
    env = dict(os.environ, HELM_CACHE_HOME=f"{scratch}/hc", HELM_CONFIG_HOME=f"{scratch}/hcfg", HELM_DATA_HOME=f"{scratch}/hd")
    args = [helm, "template", "pdnd-gateway", CHART, "--namespace", "pdnd",
            "-f", os.path.join(CHART, "examples", "produzione.yaml")]
    for values in extra:
        args += ["-f", values]
    args += ["-f", overrides_file]
    res = subprocess.run(args, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        fail(f"helm template refused the HA example: {res.stderr}")
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def rendered_toml(docs):
    cm = [d for d in docs if d["kind"] == "ConfigMap" and "gateway.toml" in d.get("data", {})]
    return cm[0]["data"]["gateway.toml"] if cm else ""


def sample(schema, path=""):
    """A value the schema accepts for every key it declares (first enum member, minimum, ...)."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        return {k: sample(v, f"{path}.{k}") for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [sample(schema["items"], path + "[]")]
    if kind == "integer":
        return max(schema.get("minimum", 1), 1)
    if kind == "number":
        return 0.5
    if kind == "boolean":
        return False
    pattern = schema.get("pattern", "")
    if "{64}" in pattern:
        return "ab" * 32
    if "{36}" in pattern:
        return str(uuid.uuid4())
    if pattern == "^[a-z0-9-]+$":
        return "ufficio-prova"
    return "https://example.invalid/" + path.strip(".").replace(".", "/")


def find(docs, kind, pred=lambda d: True):
    found = [d for d in docs if d["kind"] == kind and pred(d)]
    if len(found) != 1:
        fail(f"expected one {kind}, found {len(found)}")
    return found[0]


class Pod:
    """A pod spec made real under `root`: volumes written, mount paths remapped."""

    def __init__(self, pod_spec, container, docs, secrets, configmaps, root):
        self.root = root
        self.container = container
        self.mounts = {}
        volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
        rendered_cms = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
        for m in container.get("volumeMounts", []):
            v = volumes.get(m["name"]) or fail(f"volumeMount {m['name']} has no volume")
            target = root + m["mountPath"]
            os.makedirs(target, exist_ok=True)
            self.mounts[m["mountPath"]] = target
            if "emptyDir" in v:
                continue
            if "configMap" in v:
                src = v["configMap"]
                name = src["name"]
                data = rendered_cms.get(name, configmaps.get(name))
                mode = src.get("defaultMode", 0o644)
            elif "secret" in v:
                src = v["secret"]
                name = src["secretName"]
                data = secrets.get(name)
                mode = src.get("defaultMode", 0o644)
            else:
                fail(f"volume {v['name']}: unsupported source {list(v)}")
            if data is None:
                fail(f"volume {v['name']} references {name}, which neither the chart renders nor docs/kubernetes.md tells to create")
            items = src.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                if item["key"] not in data:
                    fail(f"{name} has no key {item['key']}")
                self.pending_files = getattr(self, "pending_files", [])
                self.pending_files.append((os.path.join(target, item["path"]), data[item["key"]], item.get("mode", mode)))

    def remap(self, text):
        for mount in sorted(self.mounts, key=len, reverse=True):
            text = text.replace(mount, self.mounts[mount])
        return text

    def write_files(self):
        for path, content, mode in getattr(self, "pending_files", []):
            if path.endswith(".toml"):
                content = self.remap(content)
            with open(path, "w") as f:
                f.write(content)
            os.chmod(path, mode)

    def env(self, secrets, extra):
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        for e in self.container.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            else:
                ref = e["valueFrom"]["secretKeyRef"]
                value = secrets.get(ref["name"], {}).get(ref["key"])
                if value is None:
                    fail(f"env {e['name']}: Secret {ref['name']} key {ref['key']} is not one docs/kubernetes.md creates")
                env[e["name"]] = value
        env.update(extra)
        return env

    def argv(self, binary):
        return [binary] + [self.remap(a) for a in self.container.get("args", [])]


def http_get(scheme, port, path, timeout):
    url = f"{scheme.lower()}://127.0.0.1:{port}{path}"
    ctx = ssl.create_default_context()
    # The kubelet does not verify the certificate of an HTTPS probe.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as e:
        return None, str(e)


def probe_target(container, probe):
    g = container[probe]["httpGet"]
    port = g["port"]
    if isinstance(port, str):
        port = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
    return g.get("scheme", "HTTP"), port, g["path"]


def refused_config(result):
    """A configuration the binary refuses fails the test, whatever the command was for."""
    out = result.stdout + result.stderr
    if result.returncode != 0 and "configuration error" in out:
        fail(f"the binary refuses the configuration the chart renders:\n{out[-1500:]}")


def kubelet_ok(status):
    return status is not None and 200 <= status < 400


def main():
    helm, binary = sys.argv[1], sys.argv[2]
    pg_url = os.environ.get("PDNDGW_TEST_POSTGRES_URL")
    redis_url = os.environ.get("PDNDGW_TEST_REDIS_URL")
    if not pg_url or not redis_url:
        fail("PDNDGW_TEST_POSTGRES_URL and PDNDGW_TEST_REDIS_URL must be set")
    scratch = tempfile.mkdtemp(prefix="pdndgw-chart-")
    procs = []
    db_name = "chart_agreement_" + uuid.uuid4().hex[:12]
    admin = urllib.parse.urlsplit(pg_url)
    try:
        pki = os.path.join(scratch, "pki")
        make_pki(pki)
        standin, standin_port = start_pdnd_standin(pki)
        public, internal = free_port(), free_port()
        pdnd = f"https://127.0.0.1:{standin_port}"
        overrides = {
            "containerPorts": {"public": public, "internal": internal},
            "config": {
                "pdnd": {"jwks_url": f"{pdnd}/.well-known/jwks.json", "keys_url": f"{pdnd}/v2/keys",
                         "token_endpoint": f"{pdnd}/token.oauth2"},
                "state": {"key_prefix": "chart-agreement-" + uuid.uuid4().hex[:8]},
            },
        }
        overrides_file = os.path.join(scratch, "overrides.yaml")
        with open(overrides_file, "w") as f:
            yaml.safe_dump(overrides, f)
        docs = helm_template(helm, overrides_file, scratch)

        # A database of its own on the test server (the store and the audit trail in it).
        run(["psql", "-v", "ON_ERROR_STOP=1", "-q", pg_url, "-c", f'CREATE DATABASE "{db_name}"'])
        db_url = urllib.parse.urlunsplit(admin._replace(path="/" + db_name))

        def read(*p):
            with open(os.path.join(pki, *p)) as f:
                return f.read()
        # What docs/kubernetes.md tells the operator to create, with test contents.
        secrets = {
            "pdnd-gateway-db": {"url": db_url},
            "pdnd-gateway-audit-db": {"url": db_url},
            "pdnd-gateway-audit-hmac": {"hmac-secret": os.urandom(32).hex()},
            "pdnd-gateway-redis": {"url": redis_url},
            "pdnd-gateway-pdnd-client": {"key.pem": read("client.pem")},
            "pdnd-gateway-pdnd-api-client": {"key.pem": read("api-client.pem")},
            "pdnd-gateway-modi-signing": {"signing-key.pem": read("modi", "signing-rsa-key.pem"),
                                          "signing-chain.pem": read("modi", "signing-rsa-chain.pem")},
            "pdnd-gateway-internal-tls": {"tls.crt": read("tls.crt"), "tls.key": read("tls.key")},
        }
        configmaps = {
            "pdnd-gateway-modi-trust": {"trusted-cas.pem": read("modi", "ca.pem")},
            "pdnd-gateway-purposes": {"purposes.toml": (
                '[[purpose]]\npurpose_id = "2f4b7c1d-0a6e-4f3b-8c2d-7e5f9a1b3c02"\n'
                'consumer_name = "Comune di Altrove"\neservice = "anagrafe"\n'
                'operations = ["verifica-residenza"]\ndaily_quota = 100\nstate = "active"\n')},
        }
        # The cluster's trust of the stand-in PDND (in a cluster: the public CAs of the image).
        extra_env = {"SSL_CERT_FILE": os.path.join(pki, "tls-ca.pem")}

        dep = find(docs, "Deployment")
        pod_spec = dep["spec"]["template"]["spec"]
        gateway = next(c for c in pod_spec["containers"] if c["name"] == "gateway")
        job = find(docs, "Job", lambda d: d["metadata"].get("annotations", {}).get("helm.sh/hook", "").startswith("pre-install"))
        job_spec = job["spec"]["template"]["spec"]
        migrate_c = job_spec["containers"][0]

        serve_pod = Pod(pod_spec, gateway, docs, secrets, configmaps, os.path.join(scratch, "pod"))
        serve_pod.write_files()
        job_pod = Pod(job_spec, migrate_c, docs, secrets, configmaps, os.path.join(scratch, "job"))
        job_pod.write_files()
        serve_env = serve_pod.env(secrets, extra_env)
        job_env = job_pod.env(secrets, extra_env)
        print(f"rendered: serve {' '.join(gateway['args'])}; hook Job {' '.join(migrate_c['args'])}", flush=True)

        # 1. Before the hook ran, `serve --no-migrate` must refuse the missing schema.
        if "--no-migrate" in gateway["args"]:
            early = subprocess.run(serve_pod.argv(binary), env=serve_env, capture_output=True, text=True, timeout=60)
            refused_config(early)
            if early.returncode == 0:
                fail("serve --no-migrate started on an empty database")
            print("ok: serve --no-migrate refuses to start before the migration Job", flush=True)

        # 2. The migration hook Job.
        mig = subprocess.run(job_pod.argv(binary), env=job_env, capture_output=True, text=True, timeout=120)
        refused_config(mig)
        if mig.returncode != 0:
            fail(f"the migration Job's command failed (exit {mig.returncode}):\n{mig.stdout}\n{mig.stderr}")
        print(f"ok: migration Job: {mig.stdout.strip()[:200]}", flush=True)

        # The CronJobs' commands, with their own rendered pods.
        for cron in [d for d in docs if d["kind"] == "CronJob"]:
            cspec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            cc = cspec["containers"][0]
            cpod = Pod(cspec, cc, docs, secrets, configmaps, os.path.join(scratch, cron["metadata"]["name"]))
            cpod.write_files()
            try:
                res = subprocess.run(cpod.argv(binary), env=cpod.env(secrets, extra_env), capture_output=True,
                                     text=True, timeout=90)
            except subprocess.TimeoutExpired:
                fail(f"CronJob {cron['metadata']['name']}: {' '.join(cc['args'])} still running after 90 s")
            refused_config(res)
            out = (res.stdout + res.stderr).strip()
            if res.returncode == 2 and "Usage:" in out:
                fail(f"CronJob {cron['metadata']['name']}: the binary does not take {cc['args']}: {out[-500:]}")
            if cc["args"][:2] == ["audit", "purge"]:
                if res.returncode != 0:
                    fail(f"CronJob {cron['metadata']['name']}: audit purge failed ({res.returncode}): {out[-800:]}")
                print(f"ok: CronJob {' '.join(cc['args'][:2])} -> exit 0: {out[-200:]}", flush=True)
            else:
                # No PDND tracing service here: the configuration and arguments are accepted, the
                # deposit itself cannot happen.
                print(f"ok: CronJob {' '.join(cc['args'][:2])} accepted its configuration (exit {res.returncode}: "
                      f"{out.splitlines()[-1][:200] if out else ''})", flush=True)

        # 3. The Deployment's command, probed as the kubelet would.
        log = open(os.path.join(scratch, "serve.log"), "w")
        proc = subprocess.Popen(serve_pod.argv(binary), env=serve_env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)

        def logs():
            log.flush()
            with open(os.path.join(scratch, "serve.log")) as f:
                return f.read()[-3000:]

        def probe_until(name, deadline_s):
            scheme, port, path = probe_target(gateway, name)
            spec = gateway[name]
            end = time.time() + deadline_s
            last = None
            while time.time() < end:
                if proc.poll() is not None:
                    fail(f"the gateway exited ({proc.returncode}) during {name}:\n{logs()}")
                status, body = http_get(scheme, port, path, spec.get("timeoutSeconds", 1))
                last = (status, body[:300])
                if kubelet_ok(status):
                    return status, scheme, port, path
                time.sleep(min(spec.get("periodSeconds", 10), 1))
            fail(f"{name} {scheme} :{port}{path} never succeeded, last {last}:\n{logs()}")

        s = gateway["startupProbe"]
        st = probe_until("startupProbe", s["periodSeconds"] * s["failureThreshold"])
        print(f"ok: startupProbe {st[1]} :{st[2]}{st[3]} -> {st[0]}", flush=True)
        rd = probe_until("readinessProbe", 30)
        if rd[0] != 200:
            fail(f"readiness answered {rd[0]}, the kubelet expects 200 once ready")
        _, ready_body = http_get(rd[1], rd[2], rd[3], 5)
        print(f"ok: readinessProbe {rd[1]} :{rd[2]}{rd[3]} -> {rd[0]} {ready_body.strip()}", flush=True)
        if 'backend = "redis"' in rendered_toml(docs):
            if '"state"' not in ready_body:
                fail("with state.backend = redis, /readyz must report the shared state store")
        lv = probe_until("livenessProbe", 5)
        if lv[0] != 200:
            fail(f"liveness answered {lv[0]}")
        print(f"ok: livenessProbe {lv[1]} :{lv[2]}{lv[3]} -> {lv[0]}", flush=True)

        # The `helm test` pod's request: /status through the public port.
        test_pod = find(docs, "Pod", lambda d: d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test")
        url = test_pod["spec"]["containers"][0]["args"][-1]
        status_path = urllib.parse.urlsplit(url).path
        code, body = http_get("HTTP", public, status_path, 5)
        if code != 200:
            fail(f"the test pod's GET {status_path} answered {code}: {body[:300]}")
        print(f"ok: helm test GET {status_path} on the public port -> 200", flush=True)

        # 4. SIGTERM: the gateway is gone within the grace period the pod was given.
        grace = pod_spec["terminationGracePeriodSeconds"]
        started = time.time()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            fail(f"still running {grace} s after SIGTERM (terminationGracePeriodSeconds)")
        print(f"ok: exit {proc.returncode} {time.time() - started:.1f} s after SIGTERM (grace {grace} s)", flush=True)
        # 5. The harness can fail: a key the binary does not know in the rendered TOML is refused.
        config_path = next(a for a in job_pod.argv(binary) if a.endswith(".toml"))
        with open(config_path) as f:
            good = f.read()
        os.chmod(config_path, 0o644)
        with open(config_path, "w") as f:
            f.write(good + "\n[server_extra]\nnot_a_gateway_key = 1\n")
        bad = subprocess.run(job_pod.argv(binary), env=job_env, capture_output=True, text=True, timeout=60)
        with open(config_path, "w") as f:
            f.write(good)
        if bad.returncode == 0 or "server_extra" not in (bad.stdout + bad.stderr):
            fail(f"the binary did not refuse an unknown key (exit {bad.returncode}): {bad.stderr[-500:]}")
        print("ok: an unknown key in the rendered TOML is refused by the binary", flush=True)

        # 6. Every gateway key the values schema admits is a key the binary knows, with the type
        # the schema gives it: a configuration setting all of them at once parses (whether the
        # combination also validates is not the point here).
        with open(os.path.join(CHART, "values.schema.json")) as f:
            config_schema = json.load(f)["properties"]["config"]
        every_key = sample(config_schema)
        # Set by the chart from Secrets here (the example uses secrets.*Url), and the HA example
        # needs the Redis backend.
        every_key["database"].pop("url")
        every_key["audit"].pop("url")
        every_key["state"]["backend"] = "redis"
        every_file = os.path.join(scratch, "every-key.yaml")
        with open(every_file, "w") as f:
            yaml.safe_dump({"config": every_key}, f)
        docs_all = helm_template(helm, overrides_file, scratch, extra=[every_file])
        job_all = find(docs_all, "Job", lambda d: d["metadata"].get("annotations", {}).get("helm.sh/hook", "").startswith("pre-install"))
        spec_all = job_all["spec"]["template"]["spec"]
        pod_all = Pod(spec_all, spec_all["containers"][0], docs_all, secrets, configmaps, os.path.join(scratch, "every-key"))
        pod_all.write_files()
        res = subprocess.run(pod_all.argv(binary), env=pod_all.env(secrets, extra_env), capture_output=True, text=True, timeout=120)
        out = res.stdout + res.stderr
        for parse_error in ("unknown field", "invalid type", "unknown variant", "missing field", "invalid value"):
            if parse_error in out:
                fail(f"the values schema admits a key or type the binary refuses ({parse_error}):\n{out[-1500:]}")
        leaves = len(json.dumps(every_key).split('":')) - 1
        print(f"ok: a configuration with every key of the values schema ({leaves} keys) parses "
              f"(exit {res.returncode}: {out.strip().splitlines()[-1][:160] if out.strip() else ''})", flush=True)

        standin.shutdown()
        print("chart_agreement: the binary accepts and serves what the chart renders")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["psql", "-q", pg_url, "-c", f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'],
                       capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()

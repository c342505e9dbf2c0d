#!/usr/bin/env python3
"""Checks of gpupool's Kubernetes deployment: deploy/kustomize and deploy/helm/gpupool.

Run from the repository root, with the venv of scripts/test-deps (helm-python-sdk,
kubernetes-validate, PyYAML) and its kubectl:

    VENV=$(scripts/test-deps)
    KUBECTL=$VENV/bin/kubectl "$VENV/bin/python" tests/deploy/check.py [--only STAGE]

Stages (all by default):
  render    `kubectl kustomize` of the base, each overlay and the documented component
            combinations, and the chart with several value sets; then, on every rendering,
            that the objects fit together (selectors, ports, Secrets, config.yaml, RBAC) and
            that values the chart must refuse are refused.
  lint      helm lint of the chart with each value set (no errors, no warnings), and
            values.schema.json accepting them and refusing bad values.
  validate  every rendered object against the Kubernetes OpenAPI schemas (kubernetes-validate,
            strict) at its default version and at 1.30; CRD kinds (cert-manager,
            prometheus-operator), which have no schema there, get minimal checks here.
  compare   the chart's objects against kustomize's, value set by value set (default values
            against the base), by (kind, namespace, name), ignoring Helm's own labels; and
            the monitoring copies against deploy/observability/.

Prints one line per check and a last line `N passed, N failed`; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import base64
import copy
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

try:
    import yaml
    import helm_python as helm
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError
except ImportError as e:  # pragma: no cover - environment problem, said plainly
    sys.exit(
        f"check.py: {e}. Run it with the venv of scripts/test-deps: "
        'VENV=$(scripts/test-deps); KUBECTL=$VENV/bin/kubectl "$VENV/bin/python" tests/deploy/check.py'
    )

ROOT = Path.cwd()
KUSTOMIZE = ROOT / "deploy" / "kustomize"
CHART = ROOT / "deploy" / "helm" / "gpupool"
OBSERVABILITY = ROOT / "deploy" / "observability"
RELEASE = "gpupool"
NAMESPACE = "gpupool"
VALIDATE_VERSIONS = [kubernetes_validate.latest_version(), "1.30"]

# Labels and annotations only one side has by design.
HELM_ONLY_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
CRD_GROUPS = {"cert-manager.io", "monitoring.coreos.com"}

# What kustomize renders: (directory under deploy/kustomize, components added on top).
KUSTOMIZE_CASES: dict[str, tuple[str, list[str]]] = {
    "base": ("base", []),
    "overlays/aws": ("overlays/aws", []),
    "overlays/gcp": ("overlays/gcp", []),
    "overlays/azure": ("overlays/azure", []),
    "base+no-cert-manager": ("base", ["no-cert-manager"]),
    "base+monitoring": ("base", ["monitoring"]),
    "base+webhook": ("base", ["webhook"]),
    "base+webhook+webhook-ingress": ("base", ["webhook", "webhook-ingress"]),
}


def overlay_config(cloud: str) -> dict:
    return yaml.safe_load((KUSTOMIZE / "overlays" / cloud / "config" / "config.yaml").read_text())


# What the chart renders: value sets, each with the kustomize rendering it must equal.
HELM_CASES: dict[str, tuple[Callable[[], dict], str]] = {
    "defaults": (lambda: {}, "base"),
    "cloud=aws": (
        lambda: {
            "cloud": "aws",
            "config": overlay_config("aws"),
            "serviceAccount": {
                "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/gpupool"}
            },
        },
        "overlays/aws",
    ),
    "cloud=gcp": (
        lambda: {
            "cloud": "gcp",
            "config": overlay_config("gcp"),
            "serviceAccount": {
                "annotations": {
                    "iam.gke.io/gcp-service-account": "gpupool@ml-prod-4821.iam.gserviceaccount.com"
                }
            },
        },
        "overlays/gcp",
    ),
    "cloud=azure": (
        lambda: {
            "cloud": "azure",
            "config": overlay_config("azure"),
            "serviceAccount": {
                "annotations": {
                    "azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000000"
                }
            },
            "podLabels": {"azure.workload.identity/use": "true"},
        },
        "overlays/azure",
    ),
    "certManager=off": (lambda: {"tls": {"certManager": {"enabled": False}}}, "base+no-cert-manager"),
    "monitoring=on": (
        lambda: {
            "monitoring": {
                "serviceMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True},
                "dashboard": {"enabled": True},
            }
        },
        "base+monitoring",
    ),
    "webhook=on": (lambda: {"webhook": {"enabled": True}}, "base+webhook"),
    "webhook+ingress=on": (
        lambda: {
            "webhook": {
                "enabled": True,
                "ingress": {
                    "enabled": True,
                    "className": "nginx",
                    "host": "gpupool-webhook.example.com",
                    "tls": [
                        {
                            "hosts": ["gpupool-webhook.example.com"],
                            "secretName": "gpupool-webhook-ingress-tls",
                        }
                    ],
                },
            }
        },
        "base+webhook+webhook-ingress",
    ),
}

# Values the chart must refuse: (values, a fragment of the error), at render time...
HELM_REFUSED_RENDER: dict[str, tuple[dict, str]] = {
    "cloud=aws without config.aws": ({"cloud": "aws"}, "needs config.aws"),
    "config.cloud other than cloud": ({"config": {"cloud": "gcp"}}, "config.cloud"),
    "config.webhook without webhook.enabled": (
        {"config": {"webhook": {"secret_file": "/x"}}},
        "webhook.enabled",
    ),
    "2 replicas without leader election": (
        {"config": {"kubernetes": {"leader_election": {"enabled": False}}}},
        "leader_election",
    ),
    "ingress without webhook": ({"webhook": {"ingress": {"enabled": True}}}, "needs webhook.enabled"),
}
# ... and by values.schema.json.
HELM_REFUSED_SCHEMA: dict[str, dict] = {
    "cloud=openstack": {"cloud": "openstack"},
    "replicaCount=0": {"replicaCount": 0},
    "logFormat=xml": {"logFormat": "xml"},
    "unknown top-level key": {"replicas": 2},
    "config.node_groups not a list": {"config": {"node_groups": "h100"}},
    "podLabels with a number": {"podLabels": {"team": 1}},
}


class CheckFailed(Exception):
    pass


def fail(msg: str) -> None:
    raise CheckFailed(msg)


class Runner:
    def __init__(self, silent: bool = False) -> None:
        self.silent = silent
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.failures: list[str] = []

    def check(self, name: str, fn: Callable[[], Any]) -> Any:
        try:
            result = fn()
        except CheckFailed as e:
            self._fail(name, str(e))
            return None
        except Exception as e:  # a bug or an environment problem: show where
            self._fail(name, f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
            return None
        self.passed += 1
        if not self.silent:
            print(f"ok   {name}")
        return result

    def skip(self, name: str, why: str) -> None:
        self.skipped += 1
        print(f"skip {name}: {why}")

    def _fail(self, name: str, msg: str) -> None:
        self.failed += 1
        self.failures.append(name)
        print(f"FAIL {name}")
        for line in msg.rstrip().splitlines():
            print(f"     {line}")

    def summary(self) -> int:
        if self.failures:
            print("\nfailed:\n" + "\n".join(f"  {n}" for n in self.failures))
        line = f"{self.passed} passed, {self.failed} failed"
        if self.skipped:
            line += f", {self.skipped} skipped"
        print(line)
        return 1 if self.failed else 0


# ---------------------------------------------------------------------------------------------
# Rendering


def kubectl() -> str:
    path = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not path:
        fail("set KUBECTL to a kubectl binary (scripts/test-deps installs one as $VENV/bin/kubectl)")
    return path


def parse_docs(text: str, where: str) -> list[dict]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as e:
        fail(f"{where}: not YAML: {e}")
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            fail(f"{where}: a document without kind/apiVersion: {str(d)[:200]}")
    return docs


def render_kustomize(directory: str, components: list[str]) -> list[dict]:
    target = KUSTOMIZE / directory
    with tempfile.TemporaryDirectory(prefix="gpupool-kustomize-") as tmp:
        if components:
            # kustomize takes no absolute paths; a relative one may leave the root.
            rel = lambda p: os.path.relpath(p, tmp)  # noqa: E731
            kustomization = {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [rel(target)],
                "components": [rel(KUSTOMIZE / "components" / c) for c in components],
            }
            Path(tmp, "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
            target = Path(tmp)
        proc = subprocess.run(
            [kubectl(), "kustomize", str(target)], capture_output=True, text=True, timeout=120
        )
    if proc.returncode != 0:
        fail(f"kubectl kustomize {directory} + {components}: {proc.stderr.strip()}")
    return parse_docs(proc.stdout, f"kustomize {directory}")


def render_helm(values: dict) -> list[dict]:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values=values, name=RELEASE, namespace=NAMESPACE)
    docs: list[dict] = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(parse_docs(text, path))
    return docs


def find(docs: list[dict], kind: str, name: str) -> dict | None:
    for d in docs:
        if d["kind"] == kind and d["metadata"].get("name") == name:
            return d
    return None


def get(docs: list[dict], kind: str, name: str) -> dict:
    d = find(docs, kind, name)
    if d is None:
        fail(f"no {kind} {name}")
    return d


# ---------------------------------------------------------------------------------------------
# Consistency of one rendering


def secret_strings(secret: dict) -> dict[str, str]:
    out = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    out.update(secret.get("stringData") or {})
    return out


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def check_consistency(docs: list[dict]) -> None:
    """That the objects of one rendering fit together."""
    problems: list[str] = []
    p = problems.append

    # Namespaces.
    for d in docs:
        ns = d["metadata"].get("namespace")
        ident = f"{d['kind']} {d['metadata'].get('name')}"
        if d["kind"] in CLUSTER_SCOPED:
            if ns:
                p(f"{ident}: cluster-scoped, but has namespace {ns}")
        elif ns != NAMESPACE:
            p(f"{ident}: namespace {ns!r}, want {NAMESPACE!r}")

    deploy = get(docs, "Deployment", "gpupool")
    ca_deploy = get(docs, "Deployment", "cluster-autoscaler")
    pod = deploy["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    ca_labels = ca_deploy["spec"]["template"]["metadata"]["labels"]
    container = pod["spec"]["containers"][0]
    ports = {cp["name"]: cp["containerPort"] for cp in container.get("ports", [])}
    mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}

    # Selectors.
    if not matches(deploy["spec"]["selector"]["matchLabels"], pod_labels):
        p("Deployment gpupool: its selector does not match its pods")
    if ca_labels.get("app.kubernetes.io/name") != "cluster-autoscaler":
        p("cluster-autoscaler's pods lack app.kubernetes.io/name: cluster-autoscaler")
    services = [d for d in docs if d["kind"] == "Service"]
    for svc in services:
        if not matches(svc["spec"]["selector"], pod_labels):
            p(f"Service {svc['metadata']['name']}: selector does not match gpupool's pods")
        for sp in svc["spec"]["ports"]:
            if isinstance(sp["targetPort"], str) and sp["targetPort"] not in ports:
                p(f"Service {svc['metadata']['name']}: targetPort {sp['targetPort']} is no container port")
    pdb = get(docs, "PodDisruptionBudget", "gpupool")
    if not matches(pdb["spec"]["selector"]["matchLabels"], pod_labels):
        p("PodDisruptionBudget: selector does not match gpupool's pods")
    if pdb["spec"].get("maxUnavailable") != 1 or pdb["spec"].get("unhealthyPodEvictionPolicy") != "AlwaysAllow":
        p("PodDisruptionBudget: want maxUnavailable 1 and unhealthyPodEvictionPolicy AlwaysAllow")

    # The NetworkPolicy admits exactly: 8086 from CA's pods, 8087 from anywhere, 8088 from
    # anywhere with the webhook.
    webhook_on = find(docs, "Service", "gpupool-webhook") is not None
    netpol = get(docs, "NetworkPolicy", "gpupool")
    if not matches(netpol["spec"]["podSelector"]["matchLabels"], pod_labels):
        p("NetworkPolicy: podSelector does not match gpupool's pods")
    if netpol["spec"].get("policyTypes") != ["Ingress"]:
        p("NetworkPolicy: policyTypes must be [Ingress] (egress open)")
    admitted: dict[int, str] = {}
    for rule in netpol["spec"]["ingress"]:
        peers = rule.get("from")
        for rp in rule["ports"]:
            if peers is None:
                admitted[rp["port"]] = "anywhere"
            elif all(
                set(peer) == {"podSelector"} and matches(peer["podSelector"]["matchLabels"], ca_labels)
                for peer in peers
            ):
                admitted[rp["port"]] = "cluster-autoscaler"
            else:
                admitted[rp["port"]] = f"other: {peers}"
    want = {8086: "cluster-autoscaler", 8087: "anywhere"}
    if webhook_on:
        want[8088] = "anywhere"
    if admitted != want:
        p(f"NetworkPolicy admits {admitted}, want {want}")

    # gpupool's container.
    want_ports = {"grpc": 8086, "http": 8087} | ({"webhook": 8088} if webhook_on else {})
    if ports != want_ports:
        p(f"gpupool's container ports {ports}, want {want_ports}")
    args = container.get("args", [])
    if args[:3] != ["serve", "--config", "/etc/gpupool/config/config.yaml"]:
        p(f"gpupool's args {args}")
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container.get("env", [])}
    for name, field in {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "NODE_NAME": "spec.nodeName"}.items():
        if env.get(name) != field:
            p(f"gpupool's env {name}: want the downward API's {field}")
    for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        got = container.get(probe, {}).get("httpGet", {})
        if got.get("path") != path or got.get("port") != "http":
            p(f"gpupool's {probe}: want GET {path} on http, got {got}")
    if "subPath" in mounts.get("config", {}):
        p("the config ConfigMap is mounted with subPath: it would never see updates")
    if mounts.get("config", {}).get("mountPath") != "/etc/gpupool/config":
        p("the config ConfigMap must be mounted at /etc/gpupool/config")
    strategy = deploy["spec"].get("strategy", {})
    if strategy.get("type") == "RollingUpdate" and deploy["spec"]["replicas"] > 1:
        mu = strategy["rollingUpdate"]["maxUnavailable"]
        if mu != "100%" and not (isinstance(mu, int) and mu >= deploy["spec"]["replicas"]):
            p(f"maxUnavailable {mu}: with only the leader Ready, a rolling update that waits for new pods never ends")

    # Secrets and ConfigMaps the pods mount: rendered here, issued by a Certificate, or
    # documented as made by hand.
    cert_secrets = {d["spec"]["secretName"] for d in docs if d["kind"] == "Certificate"}
    rendered = {(d["kind"], d["metadata"]["name"]) for d in docs}
    by_hand = {"gpupool-webhook"}
    if not cert_secrets:  # no cert-manager: from `gpupool certs`
        by_hand |= {"gpupool-server-tls", "gpupool-client-tls"}
    elif not {"gpupool-server-tls", "gpupool-client-tls"} <= cert_secrets:
        p(f"Certificates issue {cert_secrets}, want gpupool-server-tls and gpupool-client-tls")
    for d in (deploy, ca_deploy):
        for v in d["spec"]["template"]["spec"].get("volumes", []):
            sources = [v] + [s for s in v.get("projected", {}).get("sources", [])]
            for s in sources:
                if "configMap" in s and ("ConfigMap", s["configMap"]["name"]) not in rendered:
                    p(f"{d['metadata']['name']} mounts ConfigMap {s['configMap']['name']}, not rendered")
                name = s.get("secret", {}).get("secretName") or s.get("secret", {}).get("name")
                if name and ("Secret", name) not in rendered and name not in cert_secrets | by_hand:
                    p(f"{d['metadata']['name']} mounts Secret {name}, which nothing makes")
    if (volumes.get("webhook", {}).get("secret", {}).get("secretName") == "gpupool-webhook") != webhook_on:
        p("the webhook Secret is mounted if and only if the webhook Service exists")

    # gpupool's config.yaml against what the pods and Services expect.
    cm = get(docs, "ConfigMap", "gpupool-config")
    cfg = yaml.safe_load(cm["data"]["config.yaml"])
    server = cfg.get("server", {})
    if port_of(server.get("grpc_listen", ":0")) != 8086 or not server["grpc_listen"].startswith("0.0.0.0:"):
        p(f"config server.grpc_listen {server.get('grpc_listen')}, want 0.0.0.0:8086")
    if port_of(server.get("http_listen", ":0")) != 8087 or not server["http_listen"].startswith("0.0.0.0:"):
        p(f"config server.http_listen {server.get('http_listen')}, want 0.0.0.0:8087")
    tls_dir = mounts.get("tls", {}).get("mountPath", "?")
    if server.get("tls") != {"cert": f"{tls_dir}/tls.crt", "key": f"{tls_dir}/tls.key", "cacert": f"{tls_dir}/ca.crt"}:
        p(f"config server.tls {server.get('tls')} is not the mounted Secret's files under {tls_dir}")
    kube = cfg.get("kubernetes") or {}
    if kube.get("namespace") != NAMESPACE:
        p(f"config kubernetes.namespace {kube.get('namespace')}, want {NAMESPACE}")
    election = kube.get("leader_election") or {}
    if deploy["spec"]["replicas"] > 1 and not election.get("enabled"):
        p("several replicas without kubernetes.leader_election.enabled")
    if election.get("lease_name") != "gpupool":
        p(f"config leader_election.lease_name {election.get('lease_name')}, want gpupool")
    webhook_cfg = cfg.get("webhook")
    if webhook_on != (webhook_cfg is not None):
        p(f"config webhook section {'missing' if webhook_on else 'present'}, but the webhook Service is {'there' if webhook_on else 'not'}")
    if webhook_cfg:
        if port_of(webhook_cfg.get("listen", "0.0.0.0:8088")) != 8088:
            p(f"config webhook.listen {webhook_cfg.get('listen')}, want port 8088")
        wdir = mounts.get("webhook", {}).get("mountPath")
        if webhook_cfg.get("secret_file") != f"{wdir}/secret":
            p(f"config webhook.secret_file {webhook_cfg.get('secret_file')}, want {wdir}/secret")
    cloud = cfg.get("cloud")
    if cloud not in {"sim", "aws", "gcp", "azure"}:
        p(f"config cloud {cloud!r}")
    for other in {"aws", "gcp", "azure", "sim"} - {cloud}:
        if other in cfg:
            p(f"config has a `{other}:` section with cloud: {cloud}")
    if not cfg.get("node_groups"):
        p("config has no node_groups")

    # CA's cloud-config reaches gpupool's Service over mTLS with the mounted files.
    cc = secret_strings(get(docs, "Secret", "cluster-autoscaler-cloud-config"))
    cloud_config = yaml.safe_load(cc["cloud-config.yaml"])
    if set(cloud_config) - {"address", "cert", "key", "cacert", "grpc_timeout"}:
        p(f"cloud-config has keys CA does not read: {sorted(set(cloud_config) - {'address', 'cert', 'key', 'cacert', 'grpc_timeout'})}")
    host, _, port = cloud_config.get("address", "").rpartition(":")
    if host != f"gpupool.{NAMESPACE}.svc" or port != "8086":
        p(f"cloud-config address {cloud_config.get('address')}, want gpupool.{NAMESPACE}.svc:8086")
    server_cert = find(docs, "Certificate", "gpupool-server")
    if server_cert and host not in server_cert["spec"].get("dnsNames", []):
        p(f"the server certificate does not name {host}")
    ca_container = ca_deploy["spec"]["template"]["spec"]["containers"][0]
    ca_args = ca_container.get("args", [])
    cloud_config_path = next((a.split("=", 1)[1] for a in ca_args if a.startswith("--cloud-config=")), None)
    files = ca_files(ca_deploy)
    if files.get(cloud_config_path) != ("cluster-autoscaler-cloud-config", "cloud-config.yaml"):
        p(f"--cloud-config={cloud_config_path} is not the cloud-config Secret's file (mounted: {files})")
    for key, secret_key in [("cert", "tls.crt"), ("key", "tls.key"), ("cacert", "ca.crt")]:
        if files.get(cloud_config.get(key)) != ("gpupool-client-tls", secret_key):
            p(f"cloud-config {key}: {cloud_config.get(key)} is not gpupool-client-tls's {secret_key}")
    for flag in [
        "--cloud-provider=externalgrpc",
        "--expander=price",
        "--enforce-node-group-min-size=true",
        f"--namespace={NAMESPACE}",
        f"--leader-elect-resource-namespace={NAMESPACE}",
    ]:
        if flag not in ca_args:
            p(f"cluster-autoscaler lacks {flag}")

    # gpupool's RBAC: one rule per (apiGroup, resource), as the code's calls are listed.
    for kind in ("ClusterRole", "Role"):
        for rule in get(docs, kind, "gpupool")["rules"]:
            if len(rule["apiGroups"]) != 1 or len(rule["resources"]) != 1:
                p(f"{kind} gpupool: a rule with several apiGroups or resources: {rule}")
    if problems:
        fail("\n".join(problems))


def ca_files(ca_deploy: dict) -> dict[str, tuple[str, str]]:
    """Path in CA's container -> (Secret, key) of every file its Secret volumes project."""
    spec = ca_deploy["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    out: dict[str, tuple[str, str]] = {}
    for m in spec["containers"][0].get("volumeMounts", []):
        v = volumes.get(m["name"], {})
        sources = v.get("projected", {}).get("sources", []) or ([{"secret": v["secret"]}] if "secret" in v else [])
        for s in sources:
            sec = s.get("secret")
            if not sec:
                continue
            name = sec.get("name") or sec.get("secretName")
            for item in sec.get("items", []):
                out[f"{m['mountPath']}/{item['path']}"] = (name, item["key"])
    return out


def check_webhook_config(runner: Runner) -> None:
    """components/webhook/config.yaml is base/config.yaml plus the webhook section."""

    def run() -> None:
        base = yaml.safe_load((KUSTOMIZE / "base" / "config.yaml").read_text())
        hooked = yaml.safe_load((KUSTOMIZE / "components" / "webhook" / "config.yaml").read_text())
        rest = {k: v for k, v in hooked.items() if k != "webhook"}
        if rest != base:
            fail("components/webhook/config.yaml differs from base/config.yaml beyond `webhook:`:\n" + diff(base, rest, "base", "webhook"))
        if "webhook" not in hooked:
            fail("components/webhook/config.yaml has no `webhook:` section")

    runner.check("render: components/webhook/config.yaml = base/config.yaml + webhook:", run)


# ---------------------------------------------------------------------------------------------
# Validation


def go_duration(s: Any) -> bool:
    return isinstance(s, str) and re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", s) is not None


def check_crd(obj: dict, docs: list[dict]) -> None:
    """Minimal checks of the CRD kinds kubernetes-validate has no schema for."""
    kind, meta, spec = obj["kind"], obj["metadata"], obj.get("spec")
    ident = f"{kind} {meta.get('name')}"
    if not meta.get("name") or not meta.get("namespace"):
        fail(f"{ident}: metadata.name and metadata.namespace are required")
    if not isinstance(spec, dict):
        fail(f"{ident}: spec is required")
    group = obj["apiVersion"].split("/")[0]
    if group == "cert-manager.io":
        if obj["apiVersion"] != "cert-manager.io/v1":
            fail(f"{ident}: apiVersion {obj['apiVersion']}, want cert-manager.io/v1")
        if kind == "Issuer":
            types = set(spec) & {"selfSigned", "ca", "acme", "vault", "venafi"}
            if len(types) != 1:
                fail(f"{ident}: exactly one issuer type, got {sorted(spec)}")
            if "ca" in spec and not spec["ca"].get("secretName"):
                fail(f"{ident}: spec.ca.secretName is required")
        elif kind == "Certificate":
            if not spec.get("secretName"):
                fail(f"{ident}: spec.secretName is required")
            ref = spec.get("issuerRef") or {}
            if not ref.get("name") or ref.get("kind", "Issuer") not in {"Issuer", "ClusterIssuer"}:
                fail(f"{ident}: spec.issuerRef needs a name and kind Issuer or ClusterIssuer")
            if ref.get("kind", "Issuer") == "Issuer" and find(docs, "Issuer", ref["name"]) is None:
                fail(f"{ident}: issuer {ref['name']} is not rendered")
            if not (spec.get("commonName") or spec.get("dnsNames")):
                fail(f"{ident}: a commonName or dnsNames is required")
            allowed = {"digital signature", "key encipherment", "server auth", "client auth", "cert sign", "crl sign"}
            if set(spec.get("usages", [])) - allowed:
                fail(f"{ident}: unknown usages {set(spec['usages']) - allowed}")
            for key in ("duration", "renewBefore"):
                if key in spec and not go_duration(spec[key]):
                    fail(f"{ident}: spec.{key} {spec[key]!r} is not a Go duration")
            pk = spec.get("privateKey", {})
            if pk.get("algorithm", "RSA") not in {"RSA", "ECDSA", "Ed25519"} or pk.get("encoding", "PKCS1") not in {"PKCS1", "PKCS8"}:
                fail(f"{ident}: privateKey {pk}")
            extra = set(spec) - {"secretName", "issuerRef", "commonName", "dnsNames", "isCA", "duration", "renewBefore", "usages", "privateKey", "ipAddresses", "uris", "subject", "secretTemplate"}
            if extra:
                fail(f"{ident}: unknown spec fields {sorted(extra)}")
        else:
            fail(f"{ident}: unexpected cert-manager kind")
    elif group == "monitoring.coreos.com":
        if obj["apiVersion"] != "monitoring.coreos.com/v1":
            fail(f"{ident}: apiVersion {obj['apiVersion']}, want monitoring.coreos.com/v1")
        if kind == "ServiceMonitor":
            endpoints = spec.get("endpoints") or []
            if not spec.get("selector") or not endpoints:
                fail(f"{ident}: spec.selector and spec.endpoints are required")
            svcs = [d for d in docs if d["kind"] == "Service" and matches(spec["selector"].get("matchLabels", {}), d["metadata"].get("labels", {}))]
            for ep in endpoints:
                if not any(sp.get("name") == ep.get("port") for s in svcs for sp in s["spec"]["ports"]):
                    fail(f"{ident}: no selected Service has a port named {ep.get('port')}")
                if "interval" in ep and not go_duration(ep["interval"]):
                    fail(f"{ident}: interval {ep['interval']!r}")
        elif kind == "PrometheusRule":
            groups = spec.get("groups") or []
            if not groups:
                fail(f"{ident}: spec.groups is required")
            for g in groups:
                if not g.get("name") or not g.get("rules"):
                    fail(f"{ident}: group {g.get('name')!r} needs a name and rules")
                for r in g["rules"]:
                    if not isinstance(r.get("expr"), (str, int)) or (("alert" in r) == ("record" in r)):
                        fail(f"{ident}: group {g['name']}: each rule needs expr and one of alert/record: {str(r)[:120]}")
                    if "for" in r and not go_duration(r["for"]):
                        fail(f"{ident}: rule {r.get('alert')}: for {r['for']!r}")
        else:
            fail(f"{ident}: unexpected prometheus-operator kind")


def validate_rendering(docs: list[dict], crd_kinds: set[str]) -> None:
    problems = []
    for d in docs:
        ident = f"{d['kind']} {d['metadata'].get('name')}"
        if d["apiVersion"].split("/")[0] in CRD_GROUPS:
            try:
                check_crd(d, docs)
                crd_kinds.add(f"{d['apiVersion']} {d['kind']}")
            except CheckFailed as e:
                problems.append(str(e))
            continue
        for version in VALIDATE_VERSIONS:
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except ValidationError as e:
                path = ".".join(str(x) for x in e.path)
                problems.append(f"{ident} at {version}: {path}: {e.message}")
            except SchemaNotFoundError as e:
                problems.append(f"{ident} at {version}: {e.message}")
    if problems:
        fail("\n".join(problems))


# ---------------------------------------------------------------------------------------------
# Comparison


def parse_data(key: str, value: str) -> Any:
    try:
        if key.endswith((".yaml", ".yml")):
            return yaml.safe_load(value)
        if key.endswith(".json"):
            return json.loads(value)
    except (yaml.YAMLError, json.JSONDecodeError):
        pass
    return value


def sort_named(value: Any) -> Any:
    """Lists of named items (containers, ports, volumes, env) are sets to Kubernetes: order
    them, since kustomize's patches put added items first and templates last."""
    if isinstance(value, dict):
        return {k: sort_named(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [sort_named(v) for v in value]
        if items and all(isinstance(i, dict) and "name" in i for i in items):
            items.sort(key=lambda i: json.dumps(i, sort_keys=True))
        return items
    return value


def normalize(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    meta = obj["metadata"]
    for holder in (meta, obj.get("spec", {}).get("template", {}).get("metadata", {})):
        if not holder:
            continue
        labels = {k: v for k, v in (holder.get("labels") or {}).items() if k not in HELM_ONLY_LABELS}
        annotations = {k: v for k, v in (holder.get("annotations") or {}).items() if not k.startswith("checksum/")}
        holder.pop("labels", None)
        holder.pop("annotations", None)
        if labels:
            holder["labels"] = labels
        if annotations:
            holder["annotations"] = annotations
    if obj["kind"] == "Secret":
        strings = secret_strings(obj)
        obj.pop("data", None)
        obj.pop("stringData", None)
        obj["data"] = strings
    if obj["kind"] in ("Secret", "ConfigMap"):
        obj["data"] = {k: parse_data(k, v) for k, v in (obj.get("data") or {}).items()}
    return sort_named(obj)


def key_of(obj: dict) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace") or "", obj["metadata"]["name"])


def diff(a: Any, b: Any, name_a: str, name_b: str) -> str:
    ta = yaml.safe_dump(a, sort_keys=True, allow_unicode=True).splitlines()
    tb = yaml.safe_dump(b, sort_keys=True, allow_unicode=True).splitlines()
    return "\n".join(difflib.unified_diff(ta, tb, name_a, name_b, lineterm="", n=3))


def compare(helm_docs: list[dict], kustomize_docs: list[dict], helm_name: str, kustomize_name: str) -> None:
    h = {key_of(d): normalize(d) for d in helm_docs}
    k = {key_of(d): normalize(d) for d in kustomize_docs if d["kind"] != "Namespace"}
    problems = []
    for key in sorted(set(k) - set(h)):
        problems.append(f"only in kustomize {kustomize_name}: {'/'.join(filter(None, key))}")
    for key in sorted(set(h) - set(k)):
        problems.append(f"only in chart ({helm_name}): {'/'.join(filter(None, key))}")
    for key in sorted(set(h) & set(k)):
        if h[key] != k[key]:
            problems.append(
                f"{'/'.join(filter(None, key))} differs:\n"
                + diff(k[key], h[key], f"kustomize {kustomize_name}", f"chart {helm_name}")
            )
    if problems:
        fail("\n".join(problems))


def check_copies(runner: Runner) -> None:
    copies = {
        "prometheus-rules.yaml": [KUSTOMIZE / "components" / "monitoring", CHART / "files"],
        "grafana-dashboard.json": [KUSTOMIZE / "components" / "monitoring", CHART / "files"],
    }
    for name, dirs in copies.items():
        original = OBSERVABILITY / name
        for d in dirs:
            label = f"compare: {d.relative_to(ROOT)}/{name} = deploy/observability/{name}"
            if not original.exists():
                runner.skip(label, "deploy/observability has no such file yet")
                continue

            def run(copy_path: Path = d / name, original: Path = original) -> None:
                if not copy_path.exists():
                    fail("missing; run tests/deploy/sync-copies")
                if copy_path.read_bytes() != original.read_bytes():
                    fail("differs from the original; run tests/deploy/sync-copies")

            runner.check(label, run)


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["render", "lint", "validate", "compare"], help="run one stage")
    args = parser.parse_args()
    stages = {args.only} if args.only else {"render", "lint", "validate", "compare"}
    if not (KUSTOMIZE / "base").is_dir() or not (CHART / "Chart.yaml").is_file():
        print(f"check.py: run it from the repository root (no deploy/kustomize/base or deploy/helm/gpupool under {ROOT})")
        return 2
    runner = Runner()
    quiet = Runner(silent=True)  # renderings a stage needs but does not count

    def render_all() -> tuple[dict[str, list[dict] | None], dict[str, list[dict] | None]]:
        r = runner if "render" in stages else quiet
        kdocs = {
            name: r.check(f"render: kubectl kustomize {name}", lambda d=d, c=c: render_kustomize(d, c))
            for name, (d, c) in KUSTOMIZE_CASES.items()
        }
        hdocs = {
            name: r.check(f"render: helm chart, values {name}", lambda v=v: render_helm(v()))
            for name, (v, _) in HELM_CASES.items()
        }
        if r is quiet and quiet.failed:
            runner.failed += quiet.failed
            runner.failures += [f"(rendering) {n}" for n in quiet.failures]
        return kdocs, hdocs

    kdocs, hdocs = render_all()

    if "render" in stages:
        for name, docs in kdocs.items():
            if docs is not None:
                runner.check(f"render: objects fit together in kustomize {name}", lambda docs=docs: check_consistency(docs))
        for name, docs in hdocs.items():
            if docs is not None:
                runner.check(f"render: objects fit together in chart {name}", lambda docs=docs: check_consistency(docs))
        check_webhook_config(runner)
        for name, (values, fragment) in HELM_REFUSED_RENDER.items():

            def refused(values: dict = values, fragment: str = fragment) -> None:
                try:
                    render_helm(values)
                except helm.HelmError as e:
                    if fragment not in str(e):
                        fail(f"refused, but the message does not say {fragment!r}: {e}")
                    return
                fail("rendered without complaint")

            runner.check(f"render: the chart refuses {name}", refused)

    if "lint" in stages:
        for name, (values, _) in HELM_CASES.items():

            def lint(values: Callable[[], dict] = values) -> None:
                for kube in (None, "v1.30.0"):
                    report = helm.lint(CHART, values(), strict=True, namespace=NAMESPACE, kube_version=kube)
                    bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
                    if report.get("errors") or bad:
                        fail(f"helm lint (kube {kube or 'default'}): {json.dumps(report, indent=2)}")

            runner.check(f"lint: helm lint --strict, values {name}", lint)
        with helm.Chart.load(CHART) as chart:
            for name, (values, _) in HELM_CASES.items():
                runner.check(f"lint: values.schema.json accepts values {name}", lambda v=values: chart.validate_schema(v()))
            for name, values in HELM_REFUSED_SCHEMA.items():

                def schema_refuses(values: dict = values) -> None:
                    try:
                        chart.validate_schema(values)
                    except helm.HelmValuesError:
                        return
                    fail("values.schema.json accepted it")

                runner.check(f"lint: values.schema.json refuses {name}", schema_refuses)
            meta = chart.metadata
            runner.check(
                "lint: Chart.yaml (apiVersion v2, gpupool 0.1.0, appVersion 0.1.0, kubeVersion >=1.27)",
                lambda: None
                if (meta.get("apiVersion"), meta.get("name"), meta.get("version"), meta.get("appVersion"), meta.get("kubeVersion"))
                == ("v2", "gpupool", "0.1.0", "0.1.0", ">=1.27.0-0")
                else fail(f"Chart.yaml: {meta}"),
            )

    if "validate" in stages:
        crd_kinds: set[str] = set()
        for side, renders in (("kustomize", kdocs), ("chart", hdocs)):
            for name, docs in renders.items():
                if docs is not None:
                    runner.check(
                        f"validate: {side} {name} against Kubernetes {' and '.join(VALIDATE_VERSIONS)} (strict)",
                        lambda docs=docs: validate_rendering(docs, crd_kinds),
                    )
        if crd_kinds:
            print("     checked minimally here (no schema in kubernetes-validate): " + ", ".join(sorted(crd_kinds)))

    if "compare" in stages:
        for name, (_, kname) in HELM_CASES.items():
            h, k = hdocs.get(name), kdocs.get(kname)
            if h is None or k is None:
                runner.check(f"compare: chart {name} = kustomize {kname}", lambda: fail("a rendering failed (see above)"))
                continue
            runner.check(
                f"compare: chart {name} = kustomize {kname} (less its Namespace object)",
                lambda h=h, k=k, name=name, kname=kname: compare(h, k, name, kname),
            )
        check_copies(runner)

    return runner.summary()


if __name__ == "__main__":
    sys.exit(main())

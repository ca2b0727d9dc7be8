"""deploy/k8s: rendered by kustomize, valid against the Kubernetes schemas, restricted, wired."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import require
from tests.delivery.compose_env import REPO, fill_placeholders, parse_env_file

_K8S = REPO / "deploy/k8s"
_NAMESPACE = "iotedge"
# The oldest Kubernetes minor still commonly run, and the newest the schemas know.
_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())

Doc = dict[str, Any]


def _render(directory: Path) -> list[Doc]:
    kubectl = shutil.which("kubectl")
    require(kubectl is not None, "kubectl (for kubectl kustomize)")
    assert kubectl is not None
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[Doc]:
    """`kubectl kustomize` of a copy of deploy/k8s, secrets.env made as `make k8s-secrets` does."""
    copy = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(_K8S, copy, ignore=shutil.ignore_patterns("secrets.env"))
    (copy / "secrets.env").write_text(fill_placeholders((copy / "secrets.env.example").read_text()))
    return _render(copy)


def _by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def _pod_specs(docs: list[Doc]) -> dict[str, Doc]:
    return {name: d["spec"]["template"] for name, d in _by_kind(docs, "Deployment").items()}


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_renders_every_kind_the_issue_asks_for(rendered: list[Doc]) -> None:
    """Namespace, config maps, secret, deployments, services, HPA, PDB, network policies."""
    kinds = {doc["kind"] for doc in rendered}
    assert kinds == {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    assert set(_by_kind(rendered, "Deployment")) == {"iotedge-sim", "iotedge-edge"}
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == _NAMESPACE, doc["metadata"]["name"]


@pytest.mark.parametrize("version", _VERSIONS)
def test_every_resource_matches_the_kubernetes_schema(rendered: list[Doc], version: str) -> None:
    """kubernetes-validate (strict: unknown fields fail) accepts each rendered resource."""
    for doc in rendered:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} ({version}): {exc.message}")


def test_the_schema_check_rejects_a_broken_resource(rendered: list[Doc]) -> None:
    """The same validation fails on a Deployment with a misspelt field: passing means something."""
    broken = yaml.safe_load(yaml.safe_dump(_by_kind(rendered, "Deployment")["iotedge-edge"]))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, _VERSIONS[-1], strict=True)


def test_pods_follow_the_restricted_profile(rendered: list[Doc]) -> None:
    """Non-root, seccomp RuntimeDefault, no escalation, read-only root, all capabilities dropped."""
    namespace = _by_kind(rendered, "Namespace")[_NAMESPACE]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, template in _pod_specs(rendered).items():
        spec = template["spec"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] >= 1000, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
            assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp"  # noqa: S108


def test_containers_have_probes_and_resources(rendered: list[Doc]) -> None:
    """Liveness on /healthz, readiness on /readyz (edge) or /healthz (sim), requests and limits."""
    readiness = {"iotedge-edge": "/readyz", "iotedge-sim": "/healthz"}
    for name, template in _pod_specs(rendered).items():
        (container,) = template["spec"]["containers"]
        ports = {port["name"] for port in container["ports"]}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] in ports, f"{name} {probe}"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == readiness[name]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{name} {kind}"
        assert container["image"] == "iotedge:0.1.0"


def test_edge_has_writable_data_and_rules_and_keys(rendered: list[Doc]) -> None:
    """The edge's /data is an emptyDir, rules come from the config map, keys from the secret."""
    spec = _pod_specs(rendered)["iotedge-edge"]["spec"]
    (container,) = spec["containers"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/data"]]
    config_maps = _by_kind(rendered, "ConfigMap")
    secrets = _by_kind(rendered, "Secret")
    rules_map = volumes[mounts["/etc/iotedge"]]["configMap"]["name"]
    assert "rules.json" in config_maps[rules_map]["data"]
    refs = container["envFrom"]
    settings = config_maps[next(ref["configMapRef"]["name"] for ref in refs if "configMapRef" in ref)]
    assert settings["data"]["IOTEDGE_RULES_FILE"] == "/etc/iotedge/rules.json"
    assert settings["data"]["IOTEDGE_DATA_DIR"] == "/data"
    secret = secrets[next(ref["secretRef"]["name"] for ref in refs if "secretRef" in ref)]
    assert set(secret["data"]) == {"IOTEDGE_API_KEYS", "IOTEDGE_METRICS_TOKEN"}


def test_the_example_secret_holds_only_placeholders() -> None:
    """secrets.env.example has the key layout and no real key."""
    example = parse_env_file((_K8S / "secrets.env.example").read_text())
    pairs = dict(item.split("=", 1) for item in example["IOTEDGE_API_KEYS"].split(","))
    assert set(pairs) == {"client_1", "client_2", "client_3", "*"}
    assert set(pairs.values()) == {"change-me"}
    assert example["IOTEDGE_METRICS_TOKEN"] == "change-me"


def test_services_select_pods_and_name_their_ports(rendered: list[Doc]) -> None:
    """Each Service selects one Deployment's pods and targets named container ports."""
    templates = _pod_specs(rendered)
    for name, service in _by_kind(rendered, "Service").items():
        selected = [
            t for t in templates.values() if _matches(service["spec"]["selector"], t["metadata"]["labels"])
        ]
        assert len(selected) == 1, name
        ports = {p["name"] for c in selected[0]["spec"]["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{name}: {port}"


def test_edge_reaches_the_simulator_service(rendered: list[Doc]) -> None:
    """IOTEDGE_UPSTREAM names the simulator's Service and port."""
    settings = next(
        cm for name, cm in _by_kind(rendered, "ConfigMap").items() if name.startswith("iotedge-edge-")
    )
    service = _by_kind(rendered, "Service")["iotedge-sim"]
    port = service["spec"]["ports"][0]["port"]
    assert settings["data"]["IOTEDGE_UPSTREAM"] == f"http://iotedge-sim:{port}"


def test_autoscalers_and_budget_target_real_deployments(rendered: list[Doc]) -> None:
    """HPAs scale existing Deployments within sane bounds; the PDB covers the edge's pods."""
    deployments = _by_kind(rendered, "Deployment")
    for name, hpa in _by_kind(rendered, "HorizontalPodAutoscaler").items():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments, name
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"], name
        assert "replicas" not in deployments[target["name"]]["spec"], "the HPA owns replicas"
    (pdb,) = _by_kind(rendered, "PodDisruptionBudget").values()
    edge_labels = deployments["iotedge-edge"]["spec"]["template"]["metadata"]["labels"]
    assert _matches(pdb["spec"]["selector"]["matchLabels"], edge_labels)
    edge_hpa = _by_kind(rendered, "HorizontalPodAutoscaler")["iotedge-edge"]
    assert pdb["spec"]["minAvailable"] < edge_hpa["spec"]["minReplicas"]


def test_network_policies_deny_by_default_and_open_the_needed_paths(rendered: list[Doc]) -> None:
    """Default-deny ingress; the simulator only from the edge; every policy selects real pods."""
    policies = _by_kind(rendered, "NetworkPolicy")
    assert policies["default-deny-ingress"]["spec"]["podSelector"] == {}
    templates = _pod_specs(rendered)
    for name, policy in policies.items():
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        assert any(_matches(selector, t["metadata"]["labels"]) for t in templates.values()), name
    sim_rule = policies["iotedge-sim-from-edge"]["spec"]["ingress"][0]
    (peer,) = sim_rule["from"]
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "iotedge-edge"}


def test_only_prometheus_reaches_the_metrics_port(rendered: list[Doc]) -> None:
    """The metrics port is opened to Prometheus's pods in its namespace, by no other policy."""
    policies = _by_kind(rendered, "NetworkPolicy")
    opening = {
        name: rule
        for name, policy in policies.items()
        for rule in policy["spec"].get("ingress", [])
        if any(port["port"] == "metrics" for port in rule.get("ports", []))
    }
    assert list(opening) == ["iotedge-edge-metrics-from-prometheus"]
    (peer,) = opening["iotedge-edge-metrics-from-prometheus"]["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    for rule in policies["iotedge-edge-api"]["spec"]["ingress"]:
        assert [port["port"] for port in rule["ports"]] == ["http"]


def test_prometheus_annotations_point_at_the_metrics_port(rendered: list[Doc]) -> None:
    """The edge's pods carry scrape annotations for the container's metrics port and path."""
    template = _pod_specs(rendered)["iotedge-edge"]
    annotations = template["metadata"]["annotations"]
    (container,) = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert env["IOTEDGE_METRICS_PORT"] == str(ports["metrics"])
    assert env["IOTEDGE_PORT"] == str(ports["http"])

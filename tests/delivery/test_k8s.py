"""deploy/k8s and its scale overlay: rendered by kustomize, valid against the schemas, restricted, wired.

deploy/k8s is the embedded edge (one StatefulSet, SQLite on a PersistentVolumeClaim);
deploy/k8s-scale replaces it with PostgreSQL, API replicas and collectors. Tests that hold for
both run on both renders (the ``manifests`` fixture); the others check one of them.
"""

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tests.conftest import require
from tests.delivery.compose_env import REPO, fill_placeholders, parse_env_file

_K8S = REPO / "deploy/k8s"
_SCALE = REPO / "deploy/k8s-scale"
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


def _copy_with_secrets(root: Path) -> None:
    """deploy/k8s and deploy/k8s-scale under ``root``, their env files made as `make k8s-secrets` does."""
    for source, example, target in (
        (_K8S, "secrets.env.example", "secrets.env"),
        (_SCALE, "postgres.env.example", "postgres.env"),
    ):
        copy = root / source.name
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns(target))
        (copy / target).write_text(fill_placeholders((copy / example).read_text()))


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding copies of deploy/k8s and deploy/k8s-scale with generated secrets."""
    root = tmp_path_factory.mktemp("deploy")
    _copy_with_secrets(root)
    return root


@pytest.fixture(scope="module")
def rendered(copies: Path) -> list[Doc]:
    """`kubectl kustomize deploy/k8s` (the base alone)."""
    return _render(copies / _K8S.name)


@pytest.fixture(scope="module")
def scaled(copies: Path) -> list[Doc]:
    """`kubectl kustomize deploy/k8s-scale` (the overlay on the base)."""
    return _render(copies / _SCALE.name)


@pytest.fixture(scope="module", params=["base", "scale"])
def manifests(request: pytest.FixtureRequest) -> list[Doc]:
    """Each render in turn: checks that hold for the base and for the overlay."""
    docs: list[Doc] = request.getfixturevalue("rendered" if request.param == "base" else "scaled")
    return docs


def _by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def _workloads(docs: list[Doc]) -> dict[str, Doc]:
    return {**_by_kind(docs, "Deployment"), **_by_kind(docs, "StatefulSet")}


def _pod_specs(docs: list[Doc]) -> dict[str, Doc]:
    return {name: d["spec"]["template"] for name, d in _workloads(docs).items()}


def _env(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def _edge_pods(docs: list[Doc]) -> dict[str, Doc]:
    """The pod templates that run our image (not PostgreSQL's)."""
    return {
        name: template
        for name, template in _pod_specs(docs).items()
        if template["spec"]["containers"][0]["image"].startswith("iotedge:")
    }


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_renders_every_kind_the_issue_asks_for(rendered: list[Doc]) -> None:
    """The base: namespace, config, secret, the simulator, the edge StatefulSet, policies."""
    kinds = {doc["kind"] for doc in rendered}
    assert kinds == {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "StatefulSet",
        "Service",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    }
    assert set(_by_kind(rendered, "Deployment")) == {"iotedge-sim"}
    assert set(_by_kind(rendered, "StatefulSet")) == {"iotedge-edge"}
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == _NAMESPACE, doc["metadata"]["name"]


def test_the_overlay_replaces_the_embedded_edge(scaled: list[Doc]) -> None:
    """The overlay: PostgreSQL, API and collector Deployments, budgets; no embedded edge left."""
    assert set(_by_kind(scaled, "Deployment")) == {"iotedge-sim", "iotedge-api", "iotedge-collector"}
    assert set(_by_kind(scaled, "StatefulSet")) == {"iotedge-postgres"}
    assert set(_by_kind(scaled, "PodDisruptionBudget")) == {"iotedge-api", "iotedge-collector"}
    assert set(_by_kind(scaled, "Service")) == {"iotedge-edge", "iotedge-sim", "iotedge-postgres"}
    for doc in scaled:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == _NAMESPACE, doc["metadata"]["name"]
            assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "iotedge"


@pytest.mark.parametrize("version", _VERSIONS)
def test_every_resource_matches_the_kubernetes_schema(manifests: list[Doc], version: str) -> None:
    """kubernetes-validate (strict: unknown fields fail) accepts each rendered resource."""
    for doc in manifests:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} ({version}): {exc.message}")


def test_the_schema_check_rejects_a_broken_resource(rendered: list[Doc]) -> None:
    """The same validation fails on a StatefulSet with a misspelt field: passing means something."""
    broken = yaml.safe_load(yaml.safe_dump(_by_kind(rendered, "StatefulSet")["iotedge-edge"]))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, _VERSIONS[-1], strict=True)


def test_pods_follow_the_restricted_profile(manifests: list[Doc]) -> None:
    """Non-root, seccomp RuntimeDefault, no escalation, read-only root, all capabilities dropped."""
    namespace = _by_kind(manifests, "Namespace")[_NAMESPACE]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, template in _pod_specs(manifests).items():
        spec = template["spec"]
        pod = spec["securityContext"]
        # PostgreSQL runs as its image's own postgres user (999); ours as the image's 10001.
        floor = 999 if name == "iotedge-postgres" else 1000
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] >= floor, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
            assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp"  # noqa: S108


def test_containers_have_probes_and_resources(manifests: list[Doc]) -> None:
    """Liveness on /healthz, readiness on /readyz (edge roles) or /healthz (sim), requests and limits."""
    for name, template in _edge_pods(manifests).items():
        (container,) = template["spec"]["containers"]
        ports = {port["name"] for port in container["ports"]}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] in ports, f"{name} {probe}"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        ready = "/healthz" if name == "iotedge-sim" else "/readyz"
        assert container["readinessProbe"]["httpGet"]["path"] == ready, name
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{name} {kind}"
        assert container["image"] == "iotedge:0.1.0"


def test_the_embedded_edge_keeps_its_data_on_a_claim(rendered: list[Doc]) -> None:
    """One SQLite writer: one replica, no autoscaler, no budget; /data is a PersistentVolumeClaim."""
    edge = _by_kind(rendered, "StatefulSet")["iotedge-edge"]
    assert edge["spec"]["replicas"] == 1
    assert edge["spec"]["serviceName"] in _by_kind(rendered, "Service")
    targets = {
        hpa["spec"]["scaleTargetRef"]["name"]
        for hpa in _by_kind(rendered, "HorizontalPodAutoscaler").values()
    }
    assert "iotedge-edge" not in targets
    assert not _by_kind(rendered, "PodDisruptionBudget")
    spec = edge["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    claims = {claim["metadata"]["name"]: claim for claim in edge["spec"]["volumeClaimTemplates"]}
    assert mounts["/data"] in claims
    assert mounts["/data"] not in {volume["name"] for volume in spec["volumes"]}
    assert claims[mounts["/data"]]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert _env(container).get("IOTEDGE_ROLE", {"value": "all"})["value"] == "all"
    assert "IOTEDGE_STORE" not in _env(container)


def test_edge_has_writable_data_and_rules_and_keys(manifests: list[Doc]) -> None:
    """Each edge role has /data, rules from the config map and keys from the secret."""
    config_maps = _by_kind(manifests, "ConfigMap")
    secrets = _by_kind(manifests, "Secret")
    edges = {name: t for name, t in _edge_pods(manifests).items() if name != "iotedge-sim"}
    assert edges
    for name, template in edges.items():
        spec = template["spec"]
        (container,) = spec["containers"]
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        assert "/data" in mounts, name
        rules_map = volumes[mounts["/etc/iotedge"]]["configMap"]["name"]
        assert "rules.json" in config_maps[rules_map]["data"]
        refs = container["envFrom"]
        settings = config_maps[next(ref["configMapRef"]["name"] for ref in refs if "configMapRef" in ref)]
        assert settings["data"]["IOTEDGE_RULES_FILE"] == "/etc/iotedge/rules.json"
        assert settings["data"]["IOTEDGE_DATA_DIR"] == "/data"
        secret = secrets[next(ref["secretRef"]["name"] for ref in refs if "secretRef" in ref)]
        assert set(secret["data"]) == {"IOTEDGE_API_KEYS", "IOTEDGE_METRICS_TOKEN"}


def test_the_example_secret_holds_only_placeholders() -> None:
    """secrets.env.example has the key layout and no real key; postgres.env.example likewise."""
    example = parse_env_file((_K8S / "secrets.env.example").read_text())
    pairs = dict(item.split("=", 1) for item in example["IOTEDGE_API_KEYS"].split(","))
    assert set(pairs) == {"client_1", "client_2", "client_3", "*"}
    assert set(pairs.values()) == {"change-me"}
    assert example["IOTEDGE_METRICS_TOKEN"] == "change-me"
    assert parse_env_file((_SCALE / "postgres.env.example").read_text()) == {"POSTGRES_PASSWORD": "change-me"}


def test_services_select_pods_and_name_their_ports(manifests: list[Doc]) -> None:
    """Each Service selects one workload's pods and targets named container ports."""
    templates = _pod_specs(manifests)
    for name, service in _by_kind(manifests, "Service").items():
        selected = [
            t for t in templates.values() if _matches(service["spec"]["selector"], t["metadata"]["labels"])
        ]
        assert len(selected) == 1, name
        ports = {p["name"] for c in selected[0]["spec"]["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{name}: {port}"


def test_the_edge_service_reaches_the_api_replicas_only(scaled: list[Doc]) -> None:
    """In the overlay, iotedge-edge (what Grafana and clients call) selects the API, not collectors."""
    service = _by_kind(scaled, "Service")["iotedge-edge"]
    templates = _pod_specs(scaled)
    selected = [
        name
        for name, t in templates.items()
        if _matches(service["spec"]["selector"], t["metadata"]["labels"])
    ]
    assert selected == ["iotedge-api"]


def test_edge_reaches_the_simulator_service(manifests: list[Doc]) -> None:
    """IOTEDGE_UPSTREAM names the simulator's Service and port."""
    settings = next(
        cm for name, cm in _by_kind(manifests, "ConfigMap").items() if name.startswith("iotedge-edge-")
    )
    service = _by_kind(manifests, "Service")["iotedge-sim"]
    port = service["spec"]["ports"][0]["port"]
    assert settings["data"]["IOTEDGE_UPSTREAM"] == f"http://iotedge-sim:{port}"


def test_autoscalers_and_budgets_target_real_workloads(manifests: list[Doc]) -> None:
    """HPAs scale existing Deployments within sane bounds; each PDB covers one Deployment's pods."""
    deployments = _by_kind(manifests, "Deployment")
    hpas = _by_kind(manifests, "HorizontalPodAutoscaler")
    for name, hpa in hpas.items():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments, name
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"], name
        assert "replicas" not in deployments[target["name"]]["spec"], "the HPA owns replicas"
    templates = _pod_specs(manifests)
    for name, pdb in _by_kind(manifests, "PodDisruptionBudget").items():
        covered = [
            workload
            for workload, t in templates.items()
            if _matches(pdb["spec"]["selector"]["matchLabels"], t["metadata"]["labels"])
        ]
        assert covered == [name], name


def test_the_overlay_runs_each_role_on_the_postgresql_store(scaled: list[Doc]) -> None:
    """API and collectors: their role, IOTEDGE_STORE on PostgreSQL's Service, its password a secret."""
    deployments = _by_kind(scaled, "Deployment")
    secrets = _by_kind(scaled, "Secret")
    postgres_port = _by_kind(scaled, "Service")["iotedge-postgres"]["spec"]["ports"][0]["port"]
    for name, role in (("iotedge-api", "api"), ("iotedge-collector", "collector")):
        template = deployments[name]["spec"]["template"]
        assert template["metadata"]["labels"]["app.kubernetes.io/component"] == role
        (container,) = template["spec"]["containers"]
        assert container["args"] == ["edge"]
        env = _env(container)
        assert env["IOTEDGE_ROLE"]["value"] == role
        names = list(env)
        # Kubernetes expands $(PGPASSWORD) only from a variable defined before it.
        assert names.index("PGPASSWORD") < names.index("IOTEDGE_STORE")
        ref = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref["name"].startswith("iotedge-postgres-") and ref["name"] in secrets
        assert ref["key"] in secrets[ref["name"]]["data"]
        store = urlsplit(env["IOTEDGE_STORE"]["value"])
        assert store.scheme == "postgresql"
        assert (store.hostname, store.port) == ("iotedge-postgres", postgres_port)
        assert store.password == "$(PGPASSWORD)"
        assert store.username == "iotedge" and store.path == "/iotedge"
    collectors = deployments["iotedge-collector"]["spec"]
    assert collectors["replicas"] >= 2
    target = _by_kind(scaled, "HorizontalPodAutoscaler")["iotedge-api"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "iotedge-api")
    assert not [
        h
        for h in _by_kind(scaled, "HorizontalPodAutoscaler").values()
        if h["spec"]["scaleTargetRef"]["name"] == "iotedge-collector"
    ], "collectors move shards on each change of membership: no CPU autoscaler"


def test_the_budgets_leave_a_serving_pod(scaled: list[Doc]) -> None:
    """A drain keeps an API replica below the HPA's floor and leaves at least one collector."""
    budgets = _by_kind(scaled, "PodDisruptionBudget")
    api_hpa = _by_kind(scaled, "HorizontalPodAutoscaler")["iotedge-api"]
    assert 1 <= budgets["iotedge-api"]["spec"]["minAvailable"] < api_hpa["spec"]["minReplicas"]
    collectors = _by_kind(scaled, "Deployment")["iotedge-collector"]["spec"]["replicas"]
    spec = budgets["iotedge-collector"]["spec"]
    left = collectors - spec["maxUnavailable"] if "maxUnavailable" in spec else spec["minAvailable"]
    assert left >= 1


def test_postgresql_keeps_its_data_and_its_password_secret(scaled: list[Doc]) -> None:
    """PostgreSQL: a pinned official image, a claim for PGDATA, the password from the generated secret."""
    postgres = _by_kind(scaled, "StatefulSet")["iotedge-postgres"]
    assert postgres["spec"]["replicas"] == 1
    assert postgres["spec"]["serviceName"] == "iotedge-postgres"
    (container,) = postgres["spec"]["template"]["spec"]["containers"]
    image, _, tag = container["image"].partition(":")
    assert image == "postgres" and tag and tag != "latest"
    env = _env(container)
    ref = env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    secret = _by_kind(scaled, "Secret")[ref["name"]]
    assert set(secret["data"]) == {ref["key"]} == {"POSTGRES_PASSWORD"}
    assert env["POSTGRES_USER"]["value"] == env["POSTGRES_DB"]["value"] == "iotedge"
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    claims = {claim["metadata"]["name"] for claim in postgres["spec"]["volumeClaimTemplates"]}
    assert mounts["/var/lib/postgresql/data"] in claims
    assert env["PGDATA"]["value"].startswith("/var/lib/postgresql/data/")
    assert {"/var/run/postgresql", "/tmp"} <= set(mounts)  # noqa: S108
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["exec"]["command"][0] == "pg_isready", probe
    assert [p["containerPort"] for p in container["ports"]] == [5432]


def test_network_policies_deny_by_default_and_open_the_needed_paths(manifests: list[Doc]) -> None:
    """Default-deny ingress; the simulator only from the edge; every policy selects real pods."""
    policies = _by_kind(manifests, "NetworkPolicy")
    assert policies["default-deny-ingress"]["spec"]["podSelector"] == {}
    templates = _pod_specs(manifests)
    for name, policy in policies.items():
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        assert any(_matches(selector, t["metadata"]["labels"]) for t in templates.values()), name
    sim_rule = policies["iotedge-sim-from-edge"]["spec"]["ingress"][0]
    (peer,) = sim_rule["from"]
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "iotedge-edge"}


def test_only_edge_pods_reach_postgresql(scaled: list[Doc]) -> None:
    """One policy opens PostgreSQL: to pods of the edge's roles (API and collectors) only, on 5432."""
    templates = _pod_specs(scaled)
    postgres_labels = templates["iotedge-postgres"]["metadata"]["labels"]
    opening = {
        name: policy
        for name, policy in _by_kind(scaled, "NetworkPolicy").items()
        if policy["spec"]["podSelector"]
        and _matches(policy["spec"]["podSelector"]["matchLabels"], postgres_labels)
    }
    assert list(opening) == ["iotedge-postgres-from-edge"]
    policy = opening["iotedge-postgres-from-edge"]["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}, "no namespaceSelector or ipBlock: this namespace's edge pods only"
    reached = {
        n
        for n, t in templates.items()
        if _matches(peer["podSelector"]["matchLabels"], t["metadata"]["labels"])
    }
    assert reached == {"iotedge-api", "iotedge-collector"}
    (container,) = templates["iotedge-postgres"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert [ports.get(p["port"], p["port"]) for p in rule["ports"]] == [5432]


def test_only_prometheus_reaches_the_metrics_port(manifests: list[Doc]) -> None:
    """The metrics port is opened to Prometheus's pods in its namespace, by no other policy."""
    policies = _by_kind(manifests, "NetworkPolicy")
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


def test_prometheus_annotations_point_at_the_metrics_port(manifests: list[Doc]) -> None:
    """Each edge role's pods carry scrape annotations for the container's metrics port and path."""
    edges = {name: t for name, t in _edge_pods(manifests).items() if name != "iotedge-sim"}
    for name, template in edges.items():
        annotations = template["metadata"]["annotations"]
        (container,) = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/path"] == "/metrics", name
        assert int(annotations["prometheus.io/port"]) == ports["metrics"], name
        assert env["IOTEDGE_METRICS_PORT"] == str(ports["metrics"]), name
        assert env["IOTEDGE_PORT"] == str(ports["http"]), name

"""deploy/k8s: each manifest validates offline against the Kubernetes schemas and keeps promises.

The promises: the kustomization applies every manifest (and no Secret); each container's args
parse as the `keel` command they name (a renamed flag fails here); the scoring pods' probes,
preStop sleep, drain and grace period agree; rolling updates keep every pod; the PDB, HPA and
Services select the Deployments; secrets come by reference; the spec in the ConfigMap is the
example's with a PostgreSQL registry.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import typer
import yaml

from keel.cli.main import app
from keel.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# A version whose schemas kubernetes-validate bundles; apps/v1, policy/v1 and autoscaling/v2
# are the same in every supported release since 1.25.
KUBERNETES_VERSION = "1.35.0"
NOT_RESOURCES = {"kustomization.yaml", "keel.yaml", "secrets.example.yaml"}
# Environment variables a pod may set that Keel's code does not read, and who reads them.
READ_ELSEWHERE = {
    "PGPASSWORD": "libpq, for the password-less PostgreSQL URLs in keel.yaml",
    "KEEL_HEALTHCHECK_URL": "the Dockerfile's HEALTHCHECK",
}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


@pytest.fixture(scope="module")
def resources() -> dict[tuple[str, str], dict[str, Any]]:
    """Every resource the kustomization applies, by (kind, name)."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    found = {}
    for name in kustomization["resources"]:
        for doc in _documents(K8S / name):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def _containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    pod = deployment["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def _main_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _flags(container: dict[str, Any]) -> dict[str, str]:
    """The container's `--name=value` args as {name: value}."""
    return dict(arg.removeprefix("--").split("=", 1) for arg in container["args"][1:])


def _env_names(container: dict[str, Any]) -> set[str]:
    return {item["name"] for item in container.get("env", [])}


def test_every_manifest_validates_strictly_against_the_kubernetes_schemas() -> None:
    files = sorted(K8S.glob("*.yaml"))
    checked = []
    for path in files:
        if path.name in ("kustomization.yaml", "keel.yaml"):
            continue
        for doc in _documents(path):
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            checked.append((path.name, doc["kind"]))
    kinds = {kind for _, kind in checked}
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Secret",
    } <= kinds


@pytest.mark.parametrize(
    ("where", "change", "complaint"),
    [
        (("spec", "template", "spec", "containers", 0), ("readinessProbe", "readynessProbe"), ""),
        (("spec",), ("replicas", "two"), "'two' is not of type 'integer'"),
        (("spec", "strategy"), ("rollingUpdate", "rolingUpdate"), ""),
    ],
)
def test_the_validator_refuses_a_broken_manifest(
    resources: dict[tuple[str, str], dict[str, Any]],
    where: tuple[str | int, ...],
    change: tuple[str, str],
    complaint: str,
) -> None:
    broken = copy.deepcopy(resources[("Deployment", "keel-scoring")])
    node: Any = broken
    for step in where:
        node = node[step]
    key, replacement = change
    if key in node and not complaint:  # a misspelt field: the same value under a wrong name
        node[replacement] = node.pop(key)
    else:  # a value of the wrong type
        node[key] = replacement
    expected = complaint or f"'{replacement}' was unexpected"
    with pytest.raises(kubernetes_validate.ValidationError, match=re.escape(expected)):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_applies_every_manifest_and_no_secret() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    manifests = {path.name for path in K8S.glob("*.yaml")} - NOT_RESOURCES
    assert sorted(kustomization["resources"]) == sorted(manifests)
    (generator,) = kustomization["configMapGenerator"]
    assert generator["name"] == "keel-spec" and generator["files"] == ["keel.yaml"]
    assert list(K8S.glob("*.yml")) == [], "name manifests *.yaml so the check above sees them"
    for name in kustomization["resources"]:
        assert all(doc["kind"] != "Secret" for doc in _documents(K8S / name)), name


def test_every_container_arg_is_an_option_of_the_keel_command_it_names(
    resources: dict[tuple[str, str], dict[str, Any]],
) -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    named = set()
    for (kind, _), doc in resources.items():
        if kind != "Deployment":
            continue
        container = _main_container(doc)
        command, *args = container["args"]
        named.add(command)
        # $(VAR) is expanded by Kubernetes from the container's env: each must be defined there.
        for variable in re.findall(r"\$\((\w+)\)", " ".join(args)):
            assert variable in _env_names(container), variable
        expanded = [re.sub(r"\$\(\w+\)", "redis://127.0.0.1:6379/0", arg) for arg in args]
        # parsed and type-checked as `keel COMMAND ARGS` would be, without running the command
        commands[command].make_context(command, expanded)
    assert named == {"serve", "server"}


def test_the_cli_check_fails_on_a_flag_the_command_does_not_have() -> None:
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="No such option: --drain-secs"):
        serve.make_context("serve", ["--drain-secs=10"])


def test_the_scoring_pods_probe_drain_and_stop_in_order(
    resources: dict[tuple[str, str], dict[str, Any]],
) -> None:
    deployment = resources[("Deployment", "keel-scoring")]
    pod = deployment["spec"]["template"]["spec"]
    container = _main_container(deployment)
    flags = _flags(container)
    (port,) = container["ports"]
    assert port["containerPort"] == int(flags["port"]) and flags["host"] == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": port["name"]}
    sleep, seconds = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep" and float(seconds) == float(flags["drain-seconds"])
    # preStop, then /readyz 503 while draining, then the last requests (each at most
    # --request-timeout) must all fit before the kubelet's SIGKILL.
    needed = float(seconds) + float(flags["drain-seconds"]) + float(flags["request-timeout"])
    assert pod["terminationGracePeriodSeconds"] > needed
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert deployment["spec"]["replicas"] >= 2


def test_every_pod_runs_as_the_images_user_with_a_read_only_root_and_bounded_resources(
    resources: dict[tuple[str, str], dict[str, Any]],
) -> None:
    user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert user is not None
    for (kind, name), doc in resources.items():
        if kind != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == int(user.group(1)), name
        assert pod["automountServiceAccountToken"] is False, name
        writable = {
            mount["mountPath"]
            for mount in pod["containers"][0]["volumeMounts"]
            if not mount.get("readOnly")
        }
        assert "/tmp" in writable, name  # numba's and matplotlib's caches (Dockerfile ENV)
        for container in _containers(doc):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}, name
        flags = _flags(_main_container(doc))
        assert flags["project-dir"] in writable, name  # predictions.db, governance files


def test_the_pdb_hpa_and_services_select_their_deployments(
    resources: dict[tuple[str, str], dict[str, Any]],
) -> None:
    scoring = resources[("Deployment", "keel-scoring")]
    labels = scoring["spec"]["template"]["metadata"]["labels"]
    selector = scoring["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    pdb = resources[("PodDisruptionBudget", "keel-scoring")]
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert pdb["spec"]["minAvailable"] < scoring["spec"]["replicas"]
    target = resources[("HorizontalPodAutoscaler", "keel-scoring")]["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "keel-scoring"}
    hpa = resources[("HorizontalPodAutoscaler", "keel-scoring")]["spec"]
    assert hpa["minReplicas"] >= pdb["spec"]["minAvailable"] + 1
    for name in ("keel-scoring", "keel-governance"):
        deployment = resources[("Deployment", name)]
        service = resources[("Service", name)]["spec"]
        assert service["selector"] == deployment["spec"]["selector"]["matchLabels"]
        ports = {port["name"] for port in _main_container(deployment)["ports"]}
        assert {port["targetPort"] for port in service["ports"]} <= ports
    claims = {
        volume["persistentVolumeClaim"]["claimName"]
        for doc in resources.values()
        if doc["kind"] == "Deployment"
        for volume in doc["spec"]["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in volume
    }
    assert claims == {name for kind, name in resources if kind == "PersistentVolumeClaim"}


def test_secrets_come_by_reference_and_every_setting_is_one_keel_reads(
    resources: dict[tuple[str, str], dict[str, Any]],
) -> None:
    source = "\n".join(path.read_text() for path in (ROOT / "src" / "keel").rglob("*.py"))

    def read_by_keel(name: str) -> bool:
        return f'"{name}"' in source

    examples = {doc["metadata"]["name"]: doc for doc in _documents(K8S / "secrets.example.yaml")}
    settings = resources[("ConfigMap", "keel-settings")]["data"]
    assert all(read_by_keel(name) for name in settings), settings
    secret_volumes = 0
    for (kind, _), doc in resources.items():
        if kind != "Deployment":
            continue
        for container in _containers(doc):
            expanded = set(re.findall(r"\$\((\w+)\)", " ".join(container.get("args", []))))
            for item in container.get("env", []):
                assert "value" in item or "valueFrom" in item, item
                if "valueFrom" in item:
                    ref = item["valueFrom"]["secretKeyRef"]
                    assert ref["key"] in examples[ref["name"]]["stringData"], ref
                name = item["name"]
                assert read_by_keel(name) or name in READ_ELSEWHERE or name in expanded, name
        for volume in doc["spec"]["template"]["spec"]["volumes"]:
            if "secret" in volume:
                secret_volumes += 1
                assert volume["secret"]["secretName"] in examples
    assert secret_volumes == 1  # the governance service's audit signing key


def test_the_spec_in_the_configmap_is_the_example_with_a_postgres_registry() -> None:
    deployed = yaml.safe_load((K8S / "keel.yaml").read_text(encoding="utf-8"))
    example = yaml.safe_load(
        (ROOT / "examples" / "credit_default" / "keel.yaml").read_text(encoding="utf-8")
    )
    registry = deployed.pop("registry")
    assert deployed == example
    spec = parse_spec({**deployed, "registry": registry}, source="keel.yaml", base_dir=K8S)
    for uri in (spec.registry.tracking_uri, spec.registry.governance_uri):
        assert uri is not None and uri.startswith("postgresql://")
        assert ":" not in uri.removeprefix("postgresql://").split("@")[0], "no password in a URL"

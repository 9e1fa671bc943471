"""examples/kubernetes: the RBAC grants exactly what the backend asks for; the example renders."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_darklaunch.backends.kubernetes.render import render
from pytest_darklaunch.core.config import load_spec
from pytest_darklaunch.errors import ProvisioningError

from .conftest import FAST, BackendFactory, make_spec
from .emulator import Emulator
from .emulator_controllers import READY, pending
from .schema_check import manifest_errors
from .test_k8s_portforward import prometheus  # noqa: F401 - fixture

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kubernetes"
Permission = tuple[str, str, str]  # namespace, resource.group, verb
# A WebSocket port-forward is a GET: API servers before 1.35 authorize it as "get" only, later
# ones as "create" too (the emulator asks for "create"); the example grants both.
OLDER_SERVERS: set[Permission] = {("istio-system", "pods/portforward", "get")}


def granted(path: Path) -> set[Permission]:
    out = set()
    for doc in yaml.safe_load_all(path.read_text()):
        if doc["kind"] != "Role":
            continue
        for rule in doc["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    name = f"{resource}.{group}" if group else resource
                    out |= {(doc["metadata"]["namespace"], name, verb) for verb in rule["verbs"]}
    return out


@pytest.fixture
def asked(
    emulator: Emulator,
    prometheus: tuple[str, int],  # noqa: F811 - fixture
    make_backend: BackendFactory,
) -> Iterator[set[Permission]]:
    """Everything the backend asks for over a whole run, the failure paths included."""
    # a run that passes: the port-forward to Prometheus, watches on the Knative Service
    emulator.controllers.knative["sample-app-v2"] = pending()

    def release(_: Any) -> None:
        if emulator.controllers.knative.pop("sample-app-v2", None):
            emulator.controllers.reconcile("default", "sample-app")

    emulator.on("watch", "services.serving.knative.dev", release, times=None)
    backend = make_backend(prometheus_url=None)
    backend.provision()
    emulator.controllers.hold_gc()  # its revisions outlive the Service: the next run waits
    backend.teardown()
    collect = emulator.controllers.release_gc
    emulator.on("watch", "revisions.serving.knative.dev", lambda _: collect())
    # a run whose traffic pod never starts: watches on pods, events in the error message
    emulator.controllers.job_pods = pending()
    failing = make_backend(run_id="run-b", settings=replace(FAST, job_timeout_s=1))
    with pytest.raises(ProvisioningError):
        failing.provision()
    failing.teardown()
    # the gateway-api provider, on a Gateway in the run's namespace (its address is read)
    emulator.controllers.job_pods = READY
    emulator.create({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "shared", "namespace": "default"},
        "status": {"addresses": [{"value": "10.96.0.7"}]},
    })
    # ... with a credential header, which travels in a Secret
    spec = make_spec(
        mirror={"percent": 5, "provider": "gateway-api", "gateway": "default/shared"},
        traffic={"rate": 20, "headers": {"Authorization": "Bearer t"}},
    )
    routed = make_backend(spec, run_id="run-c")
    routed.provision()
    routed.teardown()
    yield set(emulator.authorized)


def test_the_example_rbac_grants_exactly_what_the_backend_uses(asked: set[Permission]) -> None:
    grants = granted(EXAMPLE / "rbac.yaml")
    assert asked - grants == set(), "the backend needs permissions rbac.yaml does not grant"
    assert grants - asked - OLDER_SERVERS == set(), "rbac.yaml grants more than the backend uses"


def test_the_example_spec_renders_valid_manifests() -> None:
    spec = load_spec(spec_path=str(EXAMPLE / "darklaunch.yaml"))
    manifests = render(spec, "example")
    assert [m["kind"] for m in manifests] == [
        "Service",
        "Service",
        "VirtualService",
        "Job",
    ]
    for manifest in manifests:
        assert manifest_errors(manifest) == []
    # two scrapes of Istio's Prometheus addon (15 s) fit in every interval
    assert spec.duration.interval_s >= 30


@pytest.mark.parametrize("provider, rule", [("istio", "VirtualService"),
                                            ("gateway-api", "HTTPRoute")])
def test_the_workflows_spec_edit_picks_the_provider(
    provider: str, rule: str, tmp_path: Path
) -> None:
    # the workflow's sed: 's/^mirror: {/mirror: {provider: <provider>, /'
    text = (EXAMPLE / "darklaunch.yaml").read_text()
    edited = re.sub(r"(?m)^mirror: \{", f"mirror: {{provider: {provider}, ", text)
    assert edited != text
    (tmp_path / "darklaunch-ci.yaml").write_text(edited)
    spec = load_spec(spec_path=str(tmp_path / "darklaunch-ci.yaml"))
    manifests = render(spec, "example")
    assert manifests[2]["kind"] == rule
    for manifest in manifests:
        assert manifest_errors(manifest) == []


def test_the_kind_workflow_runs_the_example_with_the_kubernetes_backend() -> None:
    workflow = yaml.safe_load((EXAMPLE / "kind-workflow.yml").read_text())
    steps = workflow["jobs"]["darklaunch"]["steps"]
    scripts = "\n".join(str(step.get("run", "")) for step in steps)
    assert any(step.get("uses", "").startswith("helm/kind-action@") for step in steps)
    assert "kubectl apply -f examples/kubernetes/rbac.yaml" in scripts
    assert "net-istio.yaml" in scripts and "samples/addons/prometheus.yaml" in scripts
    assert "--darklaunch-kube-context=darklaunch" in scripts
    assert "python -m pytest_darklaunch render" in scripts
    # one Istio before 1.28 (mirrored hosts get "-shadow") and one after (they do not)
    matrix = workflow["jobs"]["darklaunch"]["strategy"]["matrix"]["include"]
    minors = {int(entry["istio"].split(".")[1]) for entry in matrix}
    assert min(minors) < 28 <= max(minors)
    assert {entry["provider"] for entry in matrix} == {"istio", "gateway-api"}
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert "darklaunch-report.json" in scripts and upload["with"]["path"].endswith("darklaunch/")
    ini = (EXAMPLE / "pytest.ini").read_text()
    assert "darklaunch_backend = kubernetes" in ini
    readme = (EXAMPLE / "README.md").read_text()
    assert "has **not** been run by this project" in readme

"""Fixtures of the kubernetes backend tests: specs, the API emulator, backends pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_darklaunch.backends import RunContext
from pytest_darklaunch.backends.kubernetes import KubernetesBackend, KubeSettings
from pytest_darklaunch.backends.kubernetes.api import RetryPolicy
from pytest_darklaunch.core.spec import Sources, Spec, build_spec

from .emulator import Emulator

HERE = Path(__file__).resolve().parent
SCHEMAS = HERE / "schemas"
RUN_LABEL = "darklaunch.dev/run-id"

# Short deadlines and backoffs: the emulator answers in milliseconds.
FAST = KubeSettings(
    ready_timeout_s=10.0,
    job_timeout_s=10.0,
    retry=RetryPolicy(attempts=4, initial_s=0.01, max_s=0.05),
    # No Prometheus behind the emulator: the mirror probe and the scrape interval read from
    # Prometheus have tests of their own (test_k8s_probe.py).
    mirror_probe_s=0,
    scrape_interval_s=15.0,
)


def make_spec(**overrides: Any) -> Spec:
    """The seed's experiment with images, as a user would write it in darklaunch.yaml."""
    raw: dict[str, Any] = {
        "target": "default/sample-app",
        "versions": {
            "live": {
                "image": "gcr.io/knative-samples/knative-route-demo:blue",
                "env": {"T_VERSION": "blue"},
            },
            "dark": {
                "image": "gcr.io/knative-samples/knative-route-demo:green",
                "env": {"T_VERSION": "green"},
            },
        },
        "mirror": {"percent": 40, "host": "customdomain.com"},
        "traffic": {"rate": 20},
    }
    raw.update(overrides)
    return build_spec(raw, Sources("test"))


def other_app_spec() -> Spec:
    """A second app in the same namespace, for runs side by side."""
    return make_spec(
        target="default/shop",
        mirror={"percent": 40, "host": "shop.example.test"},
        versions={
            "live": {"image": "a:1", "revision": "shop-v1"},
            "dark": {"image": "a:2", "revision": "shop-v2"},
        },
    )


@pytest.fixture
def spec() -> Spec:
    return make_spec()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator() as api:
        yield api


@pytest.fixture
def kubeconfig(emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig whose current context is the emulator, in ``KUBECONFIG``: what a process
    that loads credentials itself (the guardian's ``delete``, a pytest run) finds."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": emulator.url}}],
            "users": [{"name": "tester", "user": {}}],
            "contexts": [
                {"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}
            ],
            "current-context": "emulator",
        }),
        encoding="utf-8",
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return path


@pytest.fixture
def api_client(emulator: Emulator) -> Iterator[Any]:
    from kubernetes import client

    configuration = client.Configuration(host=emulator.url)
    with client.ApiClient(configuration) as api:
        yield api


BackendFactory = Callable[..., KubernetesBackend]


@pytest.fixture
def make_backend(api_client: Any, tmp_path: Path) -> Iterator[BackendFactory]:
    """Backends against the emulator; every one made is torn down after the test."""
    with backend_factory(api_client, tmp_path) as factory:
        yield factory


@contextmanager
def bare_cluster(tmp_path: Path, *without_groups: str) -> Iterator[tuple[Emulator, BackendFactory]]:
    """An emulator of its own that does not serve ``without_groups``, and backends against it
    (torn down at the end, while it still answers)."""
    from kubernetes import client

    with (
        Emulator(without_groups=without_groups) as bare,
        client.ApiClient(client.Configuration(host=bare.url)) as api,
        backend_factory(api, tmp_path) as factory,
    ):
        yield bare, factory


@contextmanager
def backend_factory(api_client: Any, tmp_path: Path) -> Iterator[BackendFactory]:
    """Backends through ``api_client``; every one made is torn down on exit."""
    made: list[KubernetesBackend] = []

    def factory(
        spec: Spec | None = None, run_id: str = "run-a", settings: KubeSettings = FAST, **run: Any
    ) -> KubernetesBackend:
        run.setdefault("prometheus_url", "http://prometheus.test:9090")
        context = RunContext(run_id=run_id, workdir=str(tmp_path), **run)
        backend = KubernetesBackend(
            spec or make_spec(), context, api_client=api_client, settings=settings
        )
        made.append(backend)
        return backend

    try:
        yield factory
    finally:
        for backend in made:
            backend.teardown()


def run_objects(emulator: Emulator, run_id: str) -> list[str]:
    """Every object in the emulator labelled with ``run_id``, as ``kind/name``, once the
    emulated controllers (the garbage collector among them) are done with what came before."""
    emulator.controllers.settle()
    found = []
    for plural, group in (
        ("services", "serving.knative.dev"),
        ("revisions", "serving.knative.dev"),
        ("virtualservices", "networking.istio.io"),
        ("httproutes", "gateway.networking.k8s.io"),
        ("jobs", "batch"),
        ("secrets", ""),
        ("pods", ""),
        ("services", ""),
    ):
        if not any((r.plural, r.group) == (plural, group) for r in emulator.resources):
            continue  # a cluster without that API
        for obj in emulator.objects(plural, group, labels=f"{RUN_LABEL}={run_id}"):
            found.append(f"{obj['kind']}/{obj['metadata']['name']}")
    return found

"""The rendered rules in the emulator's model of the mesh (:mod:`emulator_mesh`): mirrored
requests reach dark whether or not Istio appends ``-shadow``, and Knative's autoscaler scrapes
stay out of the counts. The model applies the upstream rules; it is not a mesh."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import BackendFactory
from .emulator import Emulator
from .emulator_mesh import LOCAL_GATEWAY, LOCAL_GATEWAY_HOST, Mesh

LIVE, DARK = "sample-app-v1-deployment", "sample-app-v2-deployment"


@pytest.mark.parametrize("shadow_suffix", [True, False], ids=["istio-1.27", "istio-1.28+"])
def test_mirrored_requests_reach_dark_with_and_without_the_shadow_suffix(
    shadow_suffix: bool, emulator: Emulator, make_backend: BackendFactory
) -> None:
    make_backend().provision()
    delivery = Mesh(emulator, shadow_suffix).fortio_delivery()
    assert (delivery.primary, delivery.mirror, delivery.percent) == (LIVE, DARK, 40)


def _host_routed_rules(emulator: Emulator) -> None:
    """The rules rendered before: mirror to the local gateway, route the copy by its host."""
    meta = {"namespace": "default", "labels": {"darklaunch.dev/run-id": "old"}}
    emulator.create({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "old-mirror", **meta},
        "spec": {
            "gateways": ["mesh"],
            "hosts": ["old.example.com"],
            "http": [{
                "route": [{"destination": {"host": LOCAL_GATEWAY_HOST}}],
                "mirror": {"host": LOCAL_GATEWAY_HOST},
                "mirrorPercentage": {"value": 40},
            }],
        },
    })
    route = lambda rev: [{"destination": {"host": f"{rev}.default.svc.cluster.local"}}]  # noqa: E731
    emulator.create({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "old-routing", **meta},
        "spec": {
            "gateways": [LOCAL_GATEWAY],
            "hosts": ["old.example.com", "old.example.com-shadow"],
            "http": [
                {"match": [{"authority": {"prefix": "old.example.com-shadow"}}],
                 "route": route("sample-app-v2")},
                {"match": [{"authority": {"prefix": "old.example.com"}}],
                 "route": route("sample-app-v1")},
            ],
        },
    })


@pytest.mark.parametrize(
    "shadow_suffix, mirror", [(True, DARK), (False, LIVE)], ids=["istio-1.27", "istio-1.28+"]
)
def test_the_model_reproduces_why_host_routed_mirroring_broke_on_istio_1_28(
    shadow_suffix: bool, mirror: str, emulator: Emulator, make_backend: BackendFactory
) -> None:
    make_backend().provision()
    _host_routed_rules(emulator)
    delivery = Mesh(emulator, shadow_suffix).send("default", LOCAL_GATEWAY_HOST, "old.example.com")
    assert (delivery.primary, delivery.mirror) == (LIVE, mirror)


def test_a_rule_exported_to_its_namespace_only_is_not_seen_from_another(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    make_backend().provision()
    mesh = Mesh(emulator)
    private = "sample-app-v1-private.default.svc.cluster.local"
    assert mesh.send("default", private, "customdomain.com").mirror == DARK
    elsewhere = mesh.send("payments", private, "customdomain.com")
    assert (elsewhere.primary, elsewhere.mirror) == (LIVE, None), "passed through, unmirrored"


def test_autoscaler_scrapes_are_excluded_from_capture_and_from_the_series(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    env = make_backend().provision()
    counts = Mesh(emulator).counts(seconds=10)
    job = ("sample-app-traffic-run-a", "default")
    assert counts == {(LIVE, *job): 200.0, (DARK, *job): 80.0}
    assert env.labels["dark"]["source_workload"] == job[0]


def test_without_the_exclusion_every_pod_counts_a_scrape_a_second(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    make_backend().provision()
    rt = emulator.resource("pods")
    for pod in emulator.objects("pods", labels="serving.knative.dev/revision"):
        del pod["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeInboundPorts"]
        emulator.store.replace(rt, pod)
    counts = Mesh(emulator).counts(seconds=10)
    assert counts[(DARK, "autoscaler", "knative-serving")] == 10.0
    # at 0.8 mirrored requests a second (the seed's 2 req/s at 40%) scrapes would be most
    # of dark's requests, all of them fast 200s
    share = counts[(DARK, "autoscaler", "knative-serving")] / sum(
        n for (w, *_), n in counts.items() if w == DARK
    )
    assert share == pytest.approx(10 / 90)


def test_a_gateway_api_route_mirrors_at_its_percent(emulator: Emulator) -> Any:
    from pytest_darklaunch.backends.kubernetes.names import Names
    from pytest_darklaunch.backends.kubernetes.routing import http_route

    names = Names("default", "sample-app", "sample-app-v1", "sample-app-v2", "run-a")
    for revision in ("sample-app-v1", "sample-app-v2"):
        emulator.create({
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Revision",
            "metadata": {"name": revision, "namespace": "default"},
        })
    emulator.create(http_route(names, "customdomain.com", 12.5, 2.0))
    delivery = Mesh(emulator).send(
        "default", "sample-app-v1-private.default.svc.cluster.local", "whatever"
    )
    assert (delivery.primary, delivery.mirror, delivery.percent) == (LIVE, DARK, 12.5)


@pytest.mark.parametrize("provider", ["istio", "gateway-api"])
def test_writes_are_not_mirrored_unless_mirror_methods_says_so(
    provider: str, emulator: Emulator, make_backend: BackendFactory
) -> None:
    from .conftest import make_spec

    make_backend(make_spec(mirror={"percent": 40, "host": "c.test", "provider": provider})
                 ).provision()
    mesh = Mesh(emulator)
    url = "sample-app-v1-private.default.svc.cluster.local"
    assert mesh.send("default", url, "c.test", "GET").mirror == DARK
    post = mesh.send("default", url, "c.test", "POST")
    assert (post.primary, post.mirror) == (LIVE, None)

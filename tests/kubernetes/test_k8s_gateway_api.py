"""``mirror.provider: gateway-api`` against the API emulator: an HTTPRoute with a percent
RequestMirror filter, on mesh traffic or on a named Gateway, removed first on teardown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_darklaunch.core.spec import Spec
from pytest_darklaunch.errors import ProvisioningError

from .conftest import RUN_LABEL, BackendFactory, bare_cluster, make_spec, run_objects
from .emulator import Emulator
from .emulator_mesh import Mesh

WRITES = {"create", "patch", "update", "delete", "deletecollection"}


def gateway_spec(**mirror: Any) -> Spec:
    return make_spec(mirror={"percent": 25, "host": "shop.example.org", "provider": "gateway-api",
                             **mirror})


def add_gateway(emulator: Emulator, address: str | None) -> None:
    emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "infra"}})
    emulator.create({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "shared", "namespace": "infra"},
        "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 80,
                                                             "protocol": "HTTP"}]},
        "status": {"addresses": [{"type": "IPAddress", "value": address}] if address else []},
    })


def test_mesh_traffic_is_mirrored_by_an_http_route_and_it_goes_first(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    backend = make_backend(gateway_spec())
    env = backend.provision()
    (route,) = emulator.objects("httproutes", "gateway.networking.k8s.io")
    assert route["metadata"]["labels"][RUN_LABEL] == "run-a"
    assert not emulator.objects("virtualservices", "networking.istio.io")
    assert env.details["mirror_provider"] == "gateway-api"
    assert env.details["mirror_rule"] == (
        "httproutes.gateway.networking.k8s.io/sample-app-mirror-run-a"
    )
    delivery = Mesh(emulator).fortio_delivery()
    assert (delivery.primary, delivery.mirror, delivery.percent) == (
        "sample-app-v1-deployment", "sample-app-v2-deployment", 25
    )
    assert "HTTPRoute sample-app-mirror-run-a" in backend.keep_instructions()
    backend.teardown()
    assert emulator.calls("deletecollection")[0].qualified == "httproutes.gateway.networking.k8s.io"
    assert run_objects(emulator, "run-a") == []


def test_a_named_gateway_gives_the_traffic_its_address(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    add_gateway(emulator, "10.96.0.7")
    make_backend(gateway_spec(gateway="infra/shared")).provision()
    (route,) = emulator.objects("httproutes", "gateway.networking.k8s.io")
    assert route["spec"]["parentRefs"][0]["name"] == "shared"
    (job,) = emulator.objects("jobs", "batch")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-3:] == ["-H", "Host:shop.example.org", "http://10.96.0.7/"]


def test_a_missing_gateway_is_named_before_anything_is_written(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    with pytest.raises(ProvisioningError, match=r"Gateway infra/shared \(mirror.gateway\) does "
                       r"not exist; create it, or leave mirror.gateway out"):
        make_backend(gateway_spec(gateway="infra/shared")).provision()
    assert not {r.verb for r in emulator.requests} & WRITES


def test_a_cluster_without_the_gateway_api_is_named(tmp_path: Path) -> None:
    with bare_cluster(tmp_path, "gateway.networking.k8s.io") as (bare, make_backend):
        backend = make_backend(gateway_spec())
        with pytest.raises(ProvisioningError, match=r"does not serve gateway.networking.k8s.io/v1 "
                           r"HTTPRoute: install the Gateway API CRDs, v1.3 or later"):
            backend.provision()
        assert not {r.verb for r in bare.requests} & WRITES
        # an istio-provider run's teardown on such a cluster skips the kind it does not serve
        istio = make_backend(run_id="run-b")
        istio.provision()
        istio.teardown()
        assert run_objects(bare, "run-b") == []

"""The checks before the kubernetes backend changes anything, against the API emulator:
served APIs, sidecars, host collisions, revisions left over from an earlier run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pytest_darklaunch.errors import ProvisioningError

from .conftest import FAST, BackendFactory, bare_cluster, make_spec, other_app_spec, run_objects
from .emulator import Emulator

WRITES = {"create", "patch", "update", "delete", "deletecollection"}


def label_namespace(emulator: Emulator, name: str, **labels: str) -> None:
    rt = emulator.resource("namespaces")
    ns = emulator.store.get(rt, "", name)
    assert ns is not None
    ns["metadata"]["labels"] = {**(ns["metadata"].get("labels") or {}), **labels}
    emulator.store.replace(rt, ns)


def test_a_cluster_without_istio_is_named_before_anything_is_written(tmp_path: Path) -> None:
    with bare_cluster(tmp_path, "networking.istio.io") as (bare, make_backend):
        backend = make_backend()
        with pytest.raises(
            ProvisioningError,
            match=r"does not serve networking.istio.io/v1 VirtualService: install Istio",
        ):
            backend.provision()
        backend.teardown()
        assert not {r.verb for r in bare.requests} & WRITES


def test_revision_pods_without_a_sidecar_fail_with_the_causes(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    label_namespace(emulator, "default", **{"istio-injection": "disabled"})
    backend = make_backend()
    with pytest.raises(ProvisioningError) as info:
        backend.provision()
    message = str(info.value)
    assert message.startswith("revision sample-app-v1: pod sample-app-v1-deployment-")
    assert "has no istio-proxy sidecar; the namespace disables injection" in message
    assert "ambient mode" in message
    assert not emulator.calls("patch", "jobs"), "stopped before any traffic"
    backend.teardown()
    assert run_objects(emulator, "run-a") == []


def test_native_sidecars_count_as_sidecars(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    emulator.controllers.native_sidecars = True
    make_backend().provision()
    pod = emulator.objects("pods", labels="serving.knative.dev/revision=sample-app-v2")[0]
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["istio-proxy"]


def test_a_second_run_for_the_same_mirror_host_is_refused(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    make_backend(run_id="run-a").provision()
    same_host = make_spec(
        target="default/shop",
        mirror={"percent": 40, "host": "customdomain.com"},
        versions={
            "live": {"image": "a:1", "revision": "shop-v1"},
            "dark": {"image": "a:2", "revision": "shop-v2"},
        },
    )
    second = make_backend(same_host, run_id="run-b")
    with pytest.raises(
        ProvisioningError,
        match="VirtualService default/sample-app-mirror-run-a of run run-a already routes "
        "mirror host customdomain.com; give each concurrent run its own mirror.host",
    ):
        second.provision()
    second.teardown()
    assert run_objects(emulator, "run-b") == []
    assert make_backend(other_app_spec(), run_id="run-c").provision().run_id == "run-c"


def test_a_rerun_waits_for_the_revisions_of_the_previous_run_to_be_collected(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    # Teardown deletes the Service in the Background: its revisions go later. A rerun that
    # applied at once met Knative's "revisions.serving.knative.dev ... already exists".
    emulator.controllers.hold_gc()
    first = make_backend(run_id="run-a")
    first.provision()
    first.teardown()
    assert emulator.objects("revisions", "serving.knative.dev"), "still being collected"

    def collect(_: Any) -> None:
        emulator.controllers.release_gc()

    emulator.on("watch", "revisions.serving.knative.dev", collect)
    env = make_backend(run_id="run-b").provision()
    assert env.run_id == "run-b"
    revisions = emulator.objects("revisions", "serving.knative.dev")
    assert {r["metadata"]["labels"]["darklaunch.dev/run-id"] for r in revisions} == {"run-b"}


def test_a_revision_that_is_never_collected_is_named(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    emulator.controllers.hold_gc()
    first = make_backend(run_id="run-a")
    first.provision()
    first.teardown()
    short = replace(FAST, ready_timeout_s=1.0)
    rerun = make_backend(run_id="run-b", settings=short)
    with pytest.raises(
        ProvisioningError,
        match=r"revision default/sample-app-v1 of an earlier Knative Service sample-app is still "
        r"being deleted .* not ready after 1s",
    ):
        rerun.provision()
    assert len(emulator.calls("patch", "services.serving.knative.dev")) == 2, "run-a's only"
    emulator.controllers.release_gc()

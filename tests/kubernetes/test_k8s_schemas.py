"""Every rendered manifest validates against the published schemas; the checks can fail."""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_darklaunch.backends.kubernetes.render import names_for, render
from pytest_darklaunch.backends.kubernetes.routing import http_route

from . import schema_check
from .conftest import make_spec
from .schema_check import SHARED, VENDORED, crd_errors, job_errors, manifest_errors

SPECS = {
    "seed": {},
    "fractional-mirror-post-headers": {
        "mirror": {"percent": 12.5, "host": "api.shop.example.org"},
        "traffic": {
            "rate": 350,
            "method": "POST",
            "path": "/cart/items?x=1",
            "headers": {"Authorization": "Bearer t", "X-Test": "1"},
        },
    },
    "no-env-tiny-rate": {
        "versions": {"live": {"image": "r/a:1"}, "dark": {"image": "r/a@sha256:" + "a" * 64}},
        "traffic": {"rate": 0.5},
        "duration": {"interval": "1m", "iterations": 30},
    },
    "gateway-api-mesh": {"mirror": {"percent": 5, "provider": "gateway-api"}},
    "gateway-api-gateway": {
        "mirror": {"percent": 0.5, "provider": "gateway-api", "gateway": "infra/shared-gw"}
    },
    "longest-names": {
        "target": "team-" + "x" * 53 + "/" + "s" * 40,
        "versions": {
            "live": {"image": "a:1", "revision": "s" * 40 + "-live"},
            "dark": {"image": "a:2", "revision": "s" * 40 + "-dark"},
        },
    },
}
RUN_IDS = ["run-a", "0f3c9a5e2b7d4c1a9e8f7a6b5c4d3e2f", "gw-" + "9" * 60]


@pytest.mark.parametrize("run_id", RUN_IDS)
@pytest.mark.parametrize("name", list(SPECS))
def test_every_rendered_manifest_validates(name: str, run_id: str) -> None:
    spec = make_spec(**SPECS[name])
    manifests = render(spec, run_id, namespace="ci-42")
    rule = "HTTPRoute" if spec.mirror.provider == "gateway-api" else "VirtualService"
    # credential headers (the Authorization of one spec here) travel in a Secret
    secret = ["Secret"] if "Authorization" in spec.traffic.headers else []
    assert [m["kind"] for m in manifests] == ["Service", "Service", rule, *secret, "Job"]
    for manifest in manifests:
        assert manifest_errors(manifest) == [], manifest["metadata"]["name"]


def test_istio_manifests_validate_in_every_served_version() -> None:
    for manifest in render(make_spec(), "run-a")[2:3]:
        for version in ("v1", "v1beta1", "v1alpha3"):
            other = dict(manifest, apiVersion=f"networking.istio.io/{version}")
            assert crd_errors(other) == []


@pytest.mark.parametrize("percent", [40, 12.5, 100])
@pytest.mark.parametrize("gateway", [None, "istio-ingress/shared"])
def test_http_routes_validate_in_every_served_version(
    percent: float, gateway: str | None
) -> None:
    names = names_for(make_spec(), "run-a", "ci-42")
    route = http_route(names, "api.shop.example.org", percent, 2.5, gateway)
    for version in ("v1", "v1beta1"):
        other = dict(route, apiVersion=f"gateway.networking.k8s.io/{version}")
        assert manifest_errors(other) == []


def test_the_http_route_check_catches_bad_manifests() -> None:
    names = names_for(make_spec(), "run-a")
    route = http_route(names, "shop.example.org", 40, 2.0)
    mirror = route["spec"]["rules"][0]["filters"][0]["requestMirror"]
    mirror["percent"] = "40"
    mirror["fractoin"] = {"numerator": 1}
    errors = crd_errors(route)
    assert any("'40' is not of type 'integer'" in e for e in errors)
    assert any("unknown field spec.rules[0].filters[0].requestMirror.fractoin" in e for e in errors)


def _knative(**change: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(render(make_spec(), "run-a")[1])
    manifest["spec"].update(change)
    return manifest


@pytest.mark.parametrize(
    "manifest, expected",
    [
        (
            _knative(traffic=[{"revisionName": "sample-app-v1", "percent": "100"}]),
            r"'100' is not of type 'integer'",
        ),
        (
            _knative(traffic=[{"revisonName": "sample-app-v1", "percent": 100}]),
            r"unknown field spec.traffic\[0\].revisonName",
        ),
        (
            _knative(template={"spec": {"containers": "image: x"}}),
            r"'image: x' is not of type 'array'",
        ),
    ],
)
def test_the_knative_check_catches_bad_manifests(manifest: dict[str, Any], expected: str) -> None:
    errors = crd_errors(manifest)
    assert any(re.search(expected, e) for e in errors), errors


def test_the_istio_check_catches_bad_manifests() -> None:
    mirror = copy.deepcopy(render(make_spec(), "run-a")[2])
    mirror["spec"]["http"][0]["mirrorPercentage"] = {"value": "40"}
    assert any("'40' is not of type 'number'" in e for e in crd_errors(mirror))
    mirror["spec"]["http"][0]["mirrorPercentage"] = {"valeu": 40}
    assert "unknown field spec.http[0].mirrorPercentage.valeu" in crd_errors(mirror)


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda job: job["spec"].update(activeDeadlineSecond=5),
            "spec.activeDeadlineSecond: 5 -> None",
        ),
        (lambda job: job["spec"].update(backoffLimit="0"), "Input should be a valid integer"),
        (lambda job: job["spec"]["template"]["spec"]["containers"][0].pop("name"), "name"),
    ],
)
def test_the_job_check_catches_bad_manifests(change: Any, expected: str) -> None:
    job = copy.deepcopy(render(make_spec(), "run-a")[3])
    assert job_errors(job) == []
    change(job)
    errors = job_errors(job)
    assert errors and expected in errors[0]


def test_the_metadata_check_catches_bad_names_and_labels() -> None:
    job = copy.deepcopy(render(make_spec(), "run-a")[3])
    job["metadata"]["name"] = "Traffic_Job"
    job["metadata"]["labels"]["darklaunch.dev/run-id"] = "x" * 64
    errors = schema_check.metadata_errors(job)
    assert len(errors) == 2


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_vendored_schemas_are_the_published_files() -> None:
    readme = (VENDORED / "README.md").read_text()
    for name in schema_check.CRD_FILES.values():
        recorded = re.search(rf"## {re.escape(name)}.*?sha256 ([0-9a-f]{{64}})", readme, re.S)
        assert recorded, f"{name} has no provenance entry"
        assert _sha256(VENDORED / name) == recorded.group(1)


def test_the_shared_schemas_dir_resolves_beside_the_repository(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # CI runs from anywhere: the path depends on this file only
    repo = Path(schema_check.__file__).resolve().parents[2]
    assert (repo / "pyproject.toml").is_file() and (repo / "pytest_darklaunch").is_dir()
    assert SHARED.resolve() == (repo.parent / "shared" / "schemas").resolve()
    # When shared/ is there (development machines, CI), the vendored copies equal it byte for
    # byte and validate the same; the vendored ones alone are what the other tests use.
    for name in schema_check.CRD_FILES.values():
        shared = SHARED / name
        if shared.is_file():
            assert shared.read_bytes() == (VENDORED / name).read_bytes()
            for manifest in render(make_spec(), "run-a")[:3]:
                assert manifest_errors(manifest, SHARED) == []

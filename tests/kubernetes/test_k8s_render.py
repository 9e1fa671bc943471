"""The rendered manifests: the seed's objects, generalised, labelled and named per run."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from pytest_darklaunch.backends.kubernetes.render import (
    FORTIO_IMAGE,
    fortio_args,
    names_for,
    render,
    render_yaml,
    run_suffix,
)
from pytest_darklaunch.core.spec import Sources, build_spec
from pytest_darklaunch.errors import ConfigError

from .conftest import make_spec

RUN_LABELS = {"app.kubernetes.io/managed-by": "pytest-darklaunch", "darklaunch.dev/run-id": "run-a"}


def test_two_service_documents_as_in_the_seed() -> None:
    live, dark = render(make_spec(), "run-a")[:2]
    assert live["metadata"]["name"] == dark["metadata"]["name"] == "sample-app"
    assert live["spec"]["template"]["metadata"]["name"] == "sample-app-v1"
    assert live["spec"]["template"]["spec"]["containers"] == [
        {
            "image": "gcr.io/knative-samples/knative-route-demo:blue",
            "env": [{"name": "T_VERSION", "value": "blue"}],
        }
    ]
    assert "traffic" not in live["spec"]
    assert dark["spec"]["template"]["metadata"]["name"] == "sample-app-v2"
    assert dark["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":green")
    assert dark["spec"]["traffic"] == [
        {"revisionName": "sample-app-v1", "percent": 100},
        {"revisionName": "sample-app-v2", "percent": 0, "tag": "dark"},
    ]
    for doc in (live, dark):
        assert doc["spec"]["template"]["metadata"]["labels"]["sidecar.istio.io/inject"] == "true"
        assert doc["spec"]["template"]["metadata"]["annotations"] == {
            "autoscaling.knative.dev/min-scale": "1"
        }


def test_mirroring_rules_generalise_the_seed() -> None:
    mirror, routing = render(
        make_spec(mirror={"percent": 12.5, "host": "shop.example.org"}), "run-a"
    )[2:4]
    rule = mirror["spec"]["http"][0]
    assert mirror["spec"]["hosts"] == ["shop.example.org"]
    assert mirror["spec"]["gateways"] == ["mesh", "knative-serving/knative-ingress-gateway"]
    assert rule["mirrorPercentage"] == {"value": 12.5}
    assert rule["rewrite"] == {"authority": "shop.example.org"}
    assert rule["mirror"] == {"host": "knative-local-gateway.istio-system.svc.cluster.local"}
    assert "mirrorPercent" not in rule, "the deprecated field is never used"

    shadow, live = routing["spec"]["http"]
    assert routing["spec"]["gateways"] == ["knative-serving/knative-local-gateway"]
    assert shadow["match"] == [{"authority": {"prefix": "shop.example.org-shadow"}}]
    assert shadow["route"][0]["destination"] == {
        "host": "sample-app-v2.default.svc.cluster.local",
        "port": {"number": 80},
    }
    assert shadow["route"][0]["headers"]["request"]["set"] == {
        "Knative-Serving-Namespace": "default",
        "Knative-Serving-Revision": "sample-app-v2",
    }
    assert live["match"] == [{"authority": {"prefix": "shop.example.org"}}]
    assert (
        live["route"][0]["headers"]["request"]["set"]["Knative-Serving-Revision"] == "sample-app-v1"
    )


def test_whole_percent_renders_as_an_integer() -> None:
    mirror = render(make_spec(), "run-a")[2]
    assert mirror["spec"]["http"][0]["mirrorPercentage"] == {"value": 40}


def test_traffic_job_is_an_injected_open_loop_fortio_bounded_in_time() -> None:
    spec = make_spec(
        traffic={"rate": 200, "warmup": "5s", "timeout": "500ms"},
        duration={"interval": "10s", "iterations": 6},
    )
    job = render(spec, "run-a")[4]
    pod = job["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "true"
    assert json.loads(pod["metadata"]["annotations"]["proxy.istio.io/config"]) == {
        "holdApplicationUntilProxyStarts": True
    }
    assert pod["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 0
    assert container["image"] == FORTIO_IMAGE and FORTIO_IMAGE.startswith("fortio/fortio:")
    args = container["args"]
    assert args[:11] == [
        "load",
        "-qps",
        "200",
        "-t",
        "66s",
        "-c",
        "50",
        "-uniform",
        "-timeout",
        "500ms",
        "-allow-initial-errors",
    ]
    assert args[-3:] == [
        "-H",
        "Host:customdomain.com",
        "http://knative-local-gateway.istio-system.svc.cluster.local/",
    ]
    assert job["spec"]["activeDeadlineSeconds"] == 66 + 120


def test_fortio_sends_method_headers_and_path() -> None:
    args = fortio_args(
        make_spec(
            traffic={"rate": 1, "method": "post", "path": "/api/x?q=1", "headers": {"X-Env": "ci"}}
        )
    )
    assert args[args.index("-X") + 1] == "POST"
    assert "X-Env:ci" in args
    assert args[args.index("-c") + 1] == "2"
    assert args[-1].endswith("/api/x?q=1")


def test_every_object_carries_the_run_labels_and_namespace() -> None:
    for manifest in render(make_spec(), "run-a", namespace="ci-7"):
        assert manifest["metadata"]["labels"].items() >= RUN_LABELS.items()
        assert manifest["metadata"]["namespace"] == "ci-7"
    routing = render(make_spec(), "run-a", namespace="ci-7")[3]
    assert (
        routing["spec"]["http"][0]["route"][0]["destination"]["host"]
        == "sample-app-v2.ci-7.svc.cluster.local"
    )
    job = render(make_spec(), "run-a")[4]
    assert job["spec"]["template"]["metadata"]["labels"].items() >= RUN_LABELS.items()


def test_names_unique_per_run_are_suffixed_and_stay_dns_labels() -> None:
    spec = make_spec()
    assert names_for(spec, "run-a").mirror_vs == "sample-app-mirror-run-a"
    uid = "0f3c9a5e2b7d4c1a9e8f7a6b5c4d3e2f"
    other = "0f3c9a5e2b7d4c1a9e8f7a6b5c4d3e2e"
    assert run_suffix(uid) != run_suffix(other) and len(run_suffix(uid)) == 8
    long = make_spec(
        target="default/" + "s" * 63,
        versions={
            "live": {"image": "a:1", "revision": "s" * 40 + "-v1"},
            "dark": {"image": "a:2", "revision": "s" * 40 + "-v2"},
        },
    )
    names = names_for(long, uid)
    for name in (names.mirror_vs, names.routing_vs, names.job):
        assert len(name) <= 63 and name.endswith(run_suffix(uid))
    assert len({names.mirror_vs, names.routing_vs, names.job}) == 3


def test_render_yaml_is_the_documents_of_render_in_order() -> None:
    spec = make_spec()
    text = render_yaml(spec, "run-a")
    assert list(yaml.safe_load_all(text)) == render(spec, "run-a")
    assert "kubectl delete virtualservices.networking.istio.io,jobs.batch," in text.splitlines()[2]


@pytest.mark.parametrize(
    "overrides, field",
    [
        (
            {"versions": {"live": {"revision": "sample-app-v1"}, "dark": {"image": "a:2"}}},
            "versions.live.image",
        ),
        (
            {"versions": {"live": {"image": "a:1", "revision": "live"}, "dark": {"image": "a:2"}}},
            "versions.live.revision",
        ),
    ],
)
def test_specs_the_cluster_would_refuse_are_refused_before_rendering(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        render(make_spec(**overrides), "run-a")
    assert info.value.field == field


@pytest.mark.parametrize("run_id", ["", "Run A", "x" * 64, "-a", "a/b"])
def test_bad_run_ids_are_refused(run_id: str) -> None:
    with pytest.raises(ConfigError, match="invalid run id"):
        render(make_spec(), run_id)


@pytest.mark.parametrize(
    "raw",
    [
        {"target": "Default/sample-app"},
        {"target": "default/sample_app"},
        {"target": "default/../etc"},
        {"target": "default/app", "versions": {"dark": {"revision": "App-V2", "image": "a:1"}}},
        {"target": "default/app", "mirror": {"host": "bad host"}},
        {"target": "default/app", "mirror": {"percent": 140}},
        {"target": "default/app", "traffic": {"path": "no-slash"}},
    ],
)
def test_invalid_specs_are_refused_by_build_spec(raw: dict[str, Any]) -> None:
    # build_spec is the only way to a Spec, so render never sees these (the CLI test checks the
    # same end to end).
    with pytest.raises(ConfigError) as info:
        build_spec(raw, Sources("darklaunch.yaml"))
    assert "(from darklaunch.yaml)" in str(info.value)

"""The rendered manifests: the seed's objects, generalised, labelled and named per run."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from pytest_darklaunch.backends.kubernetes.names import run_suffix
from pytest_darklaunch.backends.kubernetes.render import (
    FORTIO_IMAGE,
    Schedule,
    fortio_args,
    names_for,
    render,
    render_yaml,
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
        annotations = doc["spec"]["template"]["metadata"]["annotations"]
        assert annotations["autoscaling.knative.dev/min-scale"] == "1"


def test_revisions_leave_the_autoscaler_ports_out_of_inbound_capture() -> None:
    # Knative's autoscaler scrapes queue-proxy on 9090 every second, 9091 serves its request
    # metrics: through the sidecar each scrape was a request of the revision.
    for doc in render(make_spec(), "run-a")[:2]:
        annotations = doc["spec"]["template"]["metadata"]["annotations"]
        assert annotations["traffic.sidecar.istio.io/excludeInboundPorts"] == "9090,9091"


def test_revisions_ask_for_the_local_backends_latency_buckets() -> None:
    for doc in render(make_spec(), "run-a")[:2]:
        annotations = doc["spec"]["template"]["metadata"]["annotations"]
        buckets = json.loads(annotations["sidecar.istio.io/statsHistogramBuckets"])
        edges = buckets["istiocustom"]
        assert edges == sorted(edges) and len(edges) == 330
        # 1 ms wide to 100 ms: p99 <= 80 ms is decidable, not only 50, 100, 250 ...
        assert [round(e) for e in edges[:100]] == list(range(1, 101))


def test_mirroring_goes_straight_to_the_revisions_private_services() -> None:
    # Nothing routes on the mirrored copy's host, so Istio's -shadow suffix (gone by default
    # from 1.28) does not matter; the rule is seen only in its namespace, on sidecars only.
    mirror = render(make_spec(mirror={"percent": 12.5, "host": "shop.example.org"}), "run-a")[2]
    assert mirror["kind"] == "VirtualService"
    assert mirror["spec"]["hosts"] == ["shop.example.org"]
    assert mirror["spec"]["gateways"] == ["mesh"]
    assert mirror["spec"]["exportTo"] == ["."]
    rule, writes = mirror["spec"]["http"]
    # as on the local backend, only the methods that change nothing are mirrored by default
    assert rule["match"] == [{"method": {"exact": m}} for m in ("GET", "HEAD", "OPTIONS")]
    assert writes == {"route": rule["route"], "timeout": "2s"}, "the rest: live, no mirror"
    assert rule["route"] == [
        {
            "destination": {
                "host": "sample-app-v1-private.default.svc.cluster.local",
                "port": {"number": 80},
            }
        }
    ]
    assert rule["mirror"] == {
        "host": "sample-app-v2-private.default.svc.cluster.local",
        "port": {"number": 80},
    }
    assert rule["mirrorPercentage"] == {"value": 12.5}
    assert rule["timeout"] == "2s", "Envoy gives the shadow request the route's timeout"
    assert "mirrorPercent" not in rule, "the deprecated field is never used"
    assert "shadow" not in json.dumps(mirror)


def test_whole_percent_renders_as_an_integer() -> None:
    mirror = render(make_spec(), "run-a")[2]
    assert mirror["spec"]["http"][0]["mirrorPercentage"] == {"value": 40}


def test_traffic_job_is_an_injected_open_loop_fortio_bounded_in_time() -> None:
    spec = make_spec(
        traffic={"rate": 200, "warmup": "5s", "timeout": "500ms"},
        duration={"interval": "10s", "iterations": 6},
    )
    job = render(spec, "run-a", schedule=Schedule(scrape_interval_s=15))[3]
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
        "0",
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
        "http://sample-app-v1-private.default.svc.cluster.local/",
    ]
    # Fortio runs until teardown deletes the Job; the deadline is the effective schedule (each
    # 10 s interval lasts a 15 s scrape, the first waits up to 30 s) plus slack.
    assert job["spec"]["activeDeadlineSeconds"] == 5 + 30 + 6 * 15 + 120


def test_the_job_deadline_follows_the_scrape_interval() -> None:
    spec = make_spec(duration={"interval": "30s", "iterations": 6})
    deadline = [
        render(spec, "run-a", schedule=Schedule(scrape_interval_s=s))[3]["spec"][
            "activeDeadlineSeconds"
        ]
        for s in (15, 60)
    ]
    assert deadline == [30 + 6 * 30 + 120, 30 + 6 * 60 + 120]


def test_fortio_sends_method_headers_and_path() -> None:
    spec = make_spec(
        traffic={"rate": 1, "method": "post", "path": "/api/x?q=1", "headers": {"X-Env": "ci"}}
    )
    args = fortio_args(spec, names_for(spec, "run-a"))
    assert args[args.index("-X") + 1] == "POST"
    assert "X-Env:ci" in args
    assert args[args.index("-c") + 1] == "2"
    assert args[-1].endswith("/api/x?q=1")


def test_every_object_carries_the_run_labels_and_namespace() -> None:
    for manifest in render(make_spec(), "run-a", namespace="ci-7"):
        assert manifest["metadata"]["labels"].items() >= RUN_LABELS.items()
        assert manifest["metadata"]["namespace"] == "ci-7"
    mirror = render(make_spec(), "run-a", namespace="ci-7")[2]
    assert (
        mirror["spec"]["http"][0]["mirror"]["host"]
        == "sample-app-v2-private.ci-7.svc.cluster.local"
    )
    job = render(make_spec(), "run-a")[3]
    assert job["spec"]["template"]["metadata"]["labels"].items() >= RUN_LABELS.items()


def test_names_unique_per_run_are_suffixed_and_stay_dns_labels() -> None:
    spec = make_spec()
    assert names_for(spec, "run-a").mirror_route == "sample-app-mirror-run-a"
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
    for name in (names.mirror_route, names.job):
        assert len(name) <= 63 and name.endswith(run_suffix(uid))
    assert len({names.mirror_route, names.job}) == 2


def test_render_yaml_is_the_documents_of_render_in_order() -> None:
    spec = make_spec()
    text = render_yaml(spec, "run-a")
    assert list(yaml.safe_load_all(text)) == render(spec, "run-a")
    assert text.splitlines()[2] == (
        "# python -m pytest_darklaunch delete --namespace default --run-id run-a"
    )


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
        (
            # DNS-1123 admits it, Knative's DNS-1035 rule for revision names does not
            {
                "target": "default/1app",
                "versions": {
                    "live": {"image": "a:1", "revision": "1app-v1"},
                    "dark": {"image": "a:2", "revision": "1app-v2"},
                },
            },
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


def test_the_gateway_api_provider_mirrors_mesh_traffic_with_an_http_route() -> None:
    spec = make_spec(mirror={"percent": 40, "host": "shop.example.org", "provider": "gateway-api"})
    manifests = render(spec, "run-a")
    assert [m["kind"] for m in manifests] == ["Service", "Service", "HTTPRoute", "Job"]
    route = manifests[2]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["metadata"]["name"] == "sample-app-mirror-run-a"
    assert route["spec"]["parentRefs"] == [
        {"group": "", "kind": "Service", "name": "sample-app-v1-private", "port": 80}
    ]
    assert "hostnames" not in route["spec"], "a Service parent matches by destination"
    rule, writes = route["spec"]["rules"]
    assert rule["matches"] == [{"method": m} for m in ("GET", "HEAD", "OPTIONS")]
    assert writes == {"backendRefs": rule["backendRefs"], "timeouts": rule["timeouts"]}
    assert rule["backendRefs"] == [{"name": "sample-app-v1-private", "port": 80, "weight": 1}]
    assert rule["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": {"name": "sample-app-v2-private", "port": 80},
                "percent": 40,
            },
        }
    ]
    assert rule["timeouts"] == {"request": "2s"}
    args = manifests[3]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-1] == "http://sample-app-v1-private.default.svc.cluster.local/"
    assert not any(a.startswith("Host:") for a in args), "the route matches the Service"


@pytest.mark.parametrize("provider", ["istio", "gateway-api"])
def test_mirror_methods_all_is_one_rule_that_mirrors_everything(provider: str) -> None:
    spec = make_spec(mirror={"percent": 40, "methods": "all", "provider": provider})
    rule = render(spec, "run-a")[2]["spec"]
    rules = rule.get("http") or rule["rules"]
    assert len(rules) == 1 and "match" not in rules[0] and "matches" not in rules[0]
    spec = make_spec(mirror={"percent": 40, "methods": ["POST"], "provider": provider})
    rule = render(spec, "run-a")[2]["spec"]
    first = (rule.get("http") or rule["rules"])[0]
    assert first.get("match") == [{"method": {"exact": "POST"}}] or first.get("matches") == [
        {"method": "POST"}
    ]


def test_the_gateway_api_provider_attaches_to_a_named_gateway() -> None:
    spec = make_spec(
        mirror={
            "percent": 12.5,
            "host": "shop.example.org",
            "provider": "gateway-api",
            "gateway": "istio-ingress/shared",
        }
    )
    route, job = render(spec, "run-a")[2:]
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "namespace": "istio-ingress",
            "name": "shared",
        }
    ]
    assert route["spec"]["hostnames"] == ["shop.example.org"]
    mirror = route["spec"]["rules"][0]["filters"][0]["requestMirror"]
    assert mirror["fraction"] == {"numerator": 1250, "denominator": 10000}
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    # offline, Istio's Service for a Gateway it deploys; provisioning reads the real address
    assert args[-3:] == [
        "-H",
        "Host:shop.example.org",
        "http://shared-istio.istio-ingress.svc.cluster.local/",
    ]
    job = render(spec, "run-a", schedule=Schedule(15, "10.96.0.7"))[3]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "http://10.96.0.7/"


@pytest.mark.parametrize(
    "mirror, field",
    [
        ({"provider": "linkerd"}, "mirror.provider"),
        ({"gateway": "istio-ingress/shared"}, "mirror.gateway"),
        ({"provider": "gateway-api", "gateway": "shared"}, "mirror.gateway"),
    ],
)
def test_bad_mirror_providers_are_refused(mirror: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_spec({"target": "default/app", "mirror": mirror}, Sources("darklaunch.yaml"))
    assert info.value.field == field


def test_mirror_methods_is_accepted_with_the_kubernetes_backend(tmp_path: Any) -> None:
    from pytest_darklaunch.core.config import resolve

    (tmp_path / "darklaunch.yaml").write_text(
        "target: default/app\nversions: {live: {image: a:1}, dark: {image: a:2}}\n"
        "mirror: {percent: 40, methods: [GET, POST]}\n"
    )
    resolved = resolve({"backend": "kubernetes"}, {}, {}, "tox.ini", tmp_path)
    assert resolved.spec.mirror.methods == ("GET", "POST")
    rule = render(resolved.spec, "run-a")[2]["spec"]["http"][0]
    assert rule["match"] == [{"method": {"exact": "GET"}}, {"method": {"exact": "POST"}}]


def test_render_never_prints_credential_headers() -> None:
    spec = make_spec(traffic={"rate": 5, "headers": {"Authorization": "Bearer TOK-2"}})
    docs = render(spec, "run-a")
    assert [d["kind"] for d in docs][3:] == ["Secret", "Job"]
    assert docs[3]["stringData"] == {"h0": "Bearer TOK-2"}, "what the run applies"
    assert "TOK-2" not in str(docs[4])
    text = render_yaml(spec, "run-a")
    assert "TOK-2" not in text and "(withheld: the run sets it from the spec)" in text

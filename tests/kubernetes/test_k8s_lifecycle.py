"""The kubernetes backend's whole lifecycle against the in-process API emulator (not a cluster)."""

from __future__ import annotations

import _thread
import threading
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_darklaunch.backends.kubernetes.render import render
from pytest_darklaunch.errors import ProvisioningError

from .conftest import (
    FAST,
    RUN_LABEL,
    BackendFactory,
    bare_cluster,
    make_spec,
    other_app_spec,
    run_objects,
)
from .emulator import Emulator
from .emulator_controllers import failed, pending, unschedulable


def test_provision_applies_everything_and_reports_the_environment(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    backend = make_backend(run_id="run-a")
    env = backend.provision()

    assert env.backend == "kubernetes" and env.metric_source == "istio"
    assert env.prometheus_url == "http://prometheus.test:9090"
    # only what dark's sidecar received from the traffic Job: no autoscaler scrape, no probe
    assert env.labels["dark"] == {
        "destination_workload": "sample-app-v2-deployment",
        "destination_workload_namespace": "default",
        "reporter": "destination",
        "source_workload": "sample-app-traffic-run-a",
        "source_workload_namespace": "default",
    }
    assert env.labels["live"]["destination_workload"] == "sample-app-v1-deployment"
    assert env.endpoints == {
        "live": "http://sample-app.default.example.com",
        "dark": "http://dark-sample-app.default.example.com",
    }
    assert env.details["delete_command"] == (
        "python -m pytest_darklaunch delete --namespace default --run-id run-a"
    )
    assert env.details["mirror_rule"] == (
        "virtualservices.networking.istio.io/sample-app-mirror-run-a"
    )

    ksvc = emulator.objects("services", "serving.knative.dev")[0]
    assert ksvc["spec"]["template"]["metadata"]["name"] == "sample-app-v2"
    assert ksvc["spec"]["traffic"][1] == {
        "revisionName": "sample-app-v2",
        "percent": 0,
        "tag": "dark",
    }
    assert ksvc["status"]["latestReadyRevisionName"] == "sample-app-v2"
    revisions = [
        r["metadata"]["name"] for r in emulator.objects("revisions", "serving.knative.dev")
    ]
    assert revisions == ["sample-app-v1", "sample-app-v2"]
    vs_names = sorted(
        v["metadata"]["name"] for v in emulator.objects("virtualservices", "networking.istio.io")
    )
    assert vs_names == ["sample-app-mirror-run-a"]
    pods = emulator.objects("pods", namespace="default", labels="job-name=sample-app-traffic-run-a")
    assert [p["status"]["phase"] for p in pods] == ["Running"]
    started = pods[0]["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    assert (
        float(env.details["traffic_started_at"])
        == datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
    )


def test_applies_server_side_in_order_and_waits_with_watches(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    make_backend().provision()

    patches = emulator.calls("patch")
    assert [p.qualified for p in patches] == [
        "services.serving.knative.dev",
        "services.serving.knative.dev",
        "virtualservices.networking.istio.io",
        "jobs.batch",
    ]
    for call in patches:
        assert call.content_type == "application/apply-patch+yaml"
        assert call.query["fieldManager"] == "pytest-darklaunch"
        assert call.query["force"] == "true"
    # the first apply carries the live revision and no traffic block, as the seed's first doc
    assert patches[0].body["spec"]["template"]["metadata"]["name"] == "sample-app-v1"
    assert "traffic" not in patches[0].body["spec"]
    assert patches[1].body == render(make_spec(), "run-a")[1]
    assert not emulator.calls("create") and not emulator.calls("update")


def test_a_wait_that_needs_the_watch_sees_the_status_change(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    # The dark revision stays pending until the waiter's watch is open; the hook then lets the
    # controller succeed, so only the watch stream can deliver the Ready status.
    emulator.controllers.knative["sample-app-v2"] = pending()

    def release(_: Any) -> None:
        if emulator.controllers.knative.pop("sample-app-v2", None):
            emulator.controllers.reconcile("default", "sample-app")

    emulator.on("watch", "services.serving.knative.dev", release, times=None)
    make_backend().provision()
    watches = emulator.calls("watch", "services.serving.knative.dev")
    assert watches and all(w.query.get("resourceVersion") for w in watches)
    ksvc = emulator.objects("services", "serving.knative.dev")[0]
    assert ksvc["status"]["latestReadyRevisionName"] == "sample-app-v2"


def test_an_unschedulable_revision_is_waited_for_and_times_out_with_the_pods_events(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    # Knative reports a pod without a node as RevisionFailed at once; with node autoscaling
    # it recovers, so the wait goes on to its deadline and then shows the scheduler's event,
    # which is recorded on the pod (the old code raised at once, without the event).
    emulator.controllers.knative["sample-app-v2"] = unschedulable(
        "0/3 nodes are available: 3 Insufficient cpu."
    )
    backend = make_backend(settings=replace(FAST, ready_timeout_s=1.0))
    with pytest.raises(ProvisioningError) as info:
        backend.provision()
    message = str(info.value)
    assert (
        "Knative Service default/sample-app (revision sample-app-v2) not ready after 1s" in message
    )
    assert 'Ready=False (RevisionFailed: Revision "sample-app-v2" failed with message: 0/3' in (
        message
    )
    assert "latestReadyRevisionName=sample-app-v1" in message
    assert "Warning FailedScheduling: 0/3 nodes are available: 3 Insufficient cpu." in message
    backend.teardown()
    assert run_objects(emulator, "run-a") == []


def test_an_unschedulable_revision_that_gets_a_node_is_provisioned(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    emulator.controllers.knative["sample-app-v2"] = unschedulable()

    def node_arrives(_: Any) -> None:
        if emulator.controllers.knative.pop("sample-app-v2", None):
            emulator.controllers.reconcile("default", "sample-app")

    emulator.on("watch", "services.serving.knative.dev", node_arrives, times=None)
    make_backend().provision()
    ksvc = emulator.objects("services", "serving.knative.dev")[0]
    assert ksvc["status"]["latestReadyRevisionName"] == "sample-app-v2"


def test_a_service_still_saying_revision_failed_after_its_revision_recovered_is_waited_for(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    # Knative writes a Revision's status before its Service's (the emulator too: see
    # reconcile_service), so a wait can read the Service's RevisionFailed, left by the
    # unschedulable pod, and then the Revision already Ready. Forced here: the Revision alone
    # recovers just before the wait lists the Service; the Service catches up on the watch.
    emulator.controllers.knative["sample-app-v2"] = unschedulable()
    revisions = emulator.controllers.rt("revisions", "serving.knative.dev")
    services = emulator.controllers.rt("services", "serving.knative.dev")
    seen: list[str] = []

    def revision_recovers_alone(_: Any) -> None:
        emulator.controllers.settle()
        svc = emulator.store.get(services, "default", "sample-app")
        rev = emulator.store.get(revisions, "default", "sample-app-v2")
        status = (svc or {}).get("status") or {}
        if seen or rev is None or status.get("latestCreatedRevisionName") != "sample-app-v2":
            return
        assert any(c["reason"] == "RevisionFailed" for c in status["conditions"])
        ready = [{**c, "status": "True", "reason": "", "message": ""}
                 for c in rev["status"]["conditions"]]
        assert emulator.controllers.set_status(revisions, rev, {"conditions": ready})
        seen.append("revision ready, service RevisionFailed")

    def service_catches_up(_: Any) -> None:
        if seen == ["revision ready, service RevisionFailed"]:
            seen.append("service reconciled")
            emulator.controllers.knative.pop("sample-app-v2")
            emulator.controllers.reconcile("default", "sample-app")

    emulator.on("list", "services.serving.knative.dev", revision_recovers_alone, times=None,
                before=True)
    emulator.on("watch", "services.serving.knative.dev", service_catches_up, times=None)
    make_backend().provision()
    assert seen == ["revision ready, service RevisionFailed", "service reconciled"]
    ksvc = emulator.objects("services", "serving.knative.dev")[0]
    assert ksvc["status"]["latestReadyRevisionName"] == "sample-app-v2"


def test_an_image_still_pulling_times_out_with_the_kubelets_event(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    emulator.controllers.knative["sample-app-v2"] = pending('Back-off pulling image "acme/app:2"')
    backend = make_backend(settings=replace(FAST, ready_timeout_s=1.0))
    with pytest.raises(ProvisioningError) as info:
        backend.provision()
    message = str(info.value)
    assert 'Ready=Unknown (RevisionMissing: Configuration "sample-app" is waiting' in message
    assert 'Warning Failed: Back-off pulling image "acme/app:2"' in message


def test_a_crashing_revision_fails_at_once_although_ready_says_revision_missing(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    # The route's RevisionMissing overwrites the Service's Ready reason; the old check read
    # only that and waited the whole deadline.
    emulator.controllers.knative["sample-app-v2"] = failed("exit status 3")
    backend = make_backend(settings=replace(FAST, ready_timeout_s=30.0))
    with pytest.raises(
        ProvisioningError,
        match=r"\(revision sample-app-v2\) failed: ContainerHealthy=False \(ExitCode1: "
        r"Container failed with: exit status 3\)",
    ):
        backend.provision()
    # it did not wait for the deadline: one list was enough to see the failure
    assert len(emulator.calls("watch", "services.serving.knative.dev")) <= 2


def test_a_traffic_pod_that_cannot_start_fails_with_its_state_and_events(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    emulator.controllers.job_pods = pending('Back-off pulling image "fortio/fortio:1.69.5"')
    backend = make_backend(settings=replace(FAST, job_timeout_s=1.0))
    with pytest.raises(ProvisioningError) as info:
        backend.provision()
    message = str(info.value)
    assert "traffic Job default/sample-app-traffic-run-a not ready after 1s" in message
    assert "fortio waiting ImagePullBackOff" in message
    assert "Warning Failed: Back-off pulling image" in message


def test_forbidden_names_the_missing_verb_and_resource(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    emulator.fail("patch", "virtualservices", 403, times=None)
    with pytest.raises(ProvisioningError) as info:
        make_backend().provision()
    assert str(info.value).startswith(
        "forbidden: cannot patch virtualservices.networking.istio.io in namespace default; "
        "grant it (see examples/kubernetes/rbac.yaml)"
    )
    assert 'User "system:serviceaccount:ci:darklaunch"' in str(info.value)
    assert len(emulator.calls("patch", "virtualservices")) == 1, "a 403 is not retried"


@pytest.mark.parametrize("code", [409, 500, 503])
def test_conflicts_and_server_errors_are_retried(
    code: int, emulator: Emulator, make_backend: BackendFactory
) -> None:
    emulator.fail("patch", "jobs", code, times=2)
    emulator.fail("list", "pods", code, times=1)
    make_backend().provision()
    assert len(emulator.calls("patch", "jobs")) == 3
    assert len(emulator.objects("jobs", "batch")) == 1


def test_retries_give_up_with_the_last_answer(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    emulator.fail("patch", "jobs", 500, times=None, message="etcdserver: request timed out")
    with pytest.raises(
        ProvisioningError,
        match="cannot patch jobs.batch in namespace default: "
        "HTTP 500: etcdserver: request timed out",
    ):
        make_backend().provision()
    assert len(emulator.calls("patch", "jobs")) == FAST.retry.attempts


def test_teardown_deletes_by_run_label_in_order_and_leaves_nothing(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    backend = make_backend()
    backend.provision()
    assert len(run_objects(emulator, "run-a")) == 8  # ksvc, 2 revisions + pods, VS, job + pod
    backend.teardown()
    backend.teardown()  # idempotent

    assert run_objects(emulator, "run-a") == []
    deletes = emulator.calls("deletecollection")
    assert [d.qualified for d in deletes[:5]] == [
        "httproutes.gateway.networking.k8s.io",
        "virtualservices.networking.istio.io",
        "jobs.batch",
        "secrets",
        "services.serving.knative.dev",
    ]
    assert all(d.query["labelSelector"].endswith(f"{RUN_LABEL}=run-a") for d in deletes)
    assert deletes[2].query["propagationPolicy"] == "Foreground"


def test_credential_headers_travel_in_a_secret_and_go_with_the_run(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    spec = make_spec(traffic={"rate": 20, "headers": {"Authorization": "Bearer TOK-1", "X-A": "b"}})
    backend = make_backend(spec)
    backend.provision()
    (secret,) = emulator.objects("secrets", labels=f"{RUN_LABEL}=run-a")
    assert secret["stringData"] == {"h0": "Bearer TOK-1"}
    (job,) = emulator.objects("jobs", "batch")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert "TOK-1" not in str(job)
    assert "Authorization:$(DARKLAUNCH_HEADER_0)" in container["args"]
    assert "X-A:b" in container["args"]
    assert container["env"] == [{
        "name": "DARKLAUNCH_HEADER_0",
        "valueFrom": {"secretKeyRef": {"name": "sample-app-headers-run-a", "key": "h0"}},
    }]
    assert "TOK-1" not in backend.keep_instructions()
    backend.teardown()
    assert run_objects(emulator, "run-a") == []
    assert not emulator.calls("delete"), "never deletes by name"


def test_teardown_reports_what_it_could_not_delete_and_still_deletes_the_rest(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    backend = make_backend()
    backend.provision()
    emulator.fail("deletecollection", "jobs", 403, times=None)
    with pytest.raises(ProvisioningError) as info:
        backend.teardown()
    assert "cannot deletecollection jobs.batch in namespace default" in str(info.value)
    assert "remove the rest with: python -m pytest_darklaunch delete" in str(info.value)
    assert not emulator.objects("virtualservices", "networking.istio.io")
    assert not emulator.objects("services", "serving.knative.dev")
    assert emulator.objects("jobs", "batch")
    emulator.faults.clear()
    backend.teardown()  # granted now: the retry removes the rest
    assert run_objects(emulator, "run-a") == []


def test_keep_leaves_everything_and_says_how_to_remove_it(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    backend = make_backend(keep=True)
    backend.provision()
    backend.teardown()
    assert len(run_objects(emulator, "run-a")) == 8
    assert backend.keep_instructions().endswith(
        "python -m pytest_darklaunch delete --namespace default --run-id run-a"
    )
    assert not emulator.calls("deletecollection")


def test_provision_none_creates_nothing_but_checks_the_sidecars(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    for revision in ("sample-app-v1", "sample-app-v2"):
        emulator.controllers.admit_pod({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{revision}-deployment-x",
                "namespace": "default",
                "labels": {
                    "serving.knative.dev/revision": revision,
                    "sidecar.istio.io/inject": "true",
                },
            },
            "spec": {"containers": [{"name": "user-container", "image": "a:1"}]},
        })
    backend = make_backend(provision="none")
    env = backend.provision()
    backend.teardown()
    assert env.labels["live"]["destination_workload"] == "sample-app-v1-deployment"
    assert "source_workload" not in env.labels["live"], "every source counts: no Job of ours"
    assert env.prometheus_url == "http://prometheus.test:9090"
    assert {r.verb for r in emulator.requests} <= {"get", "list"}, "reads only"


def test_provision_none_refuses_revisions_without_sidecars(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    with pytest.raises(ProvisioningError, match="revision sample-app-v1 has no pod"):
        make_backend(provision="none").provision()


def test_two_concurrent_runs_never_touch_each_others_objects(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    one = make_backend(make_spec(target="default/cart"), run_id="run-a")
    two = make_backend(other_app_spec(), run_id="run-b")
    errors: list[BaseException] = []

    def provision(backend: Any) -> None:
        try:
            backend.provision()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=provision, args=(b,)) for b in (one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert errors == []
    before_b = sorted(run_objects(emulator, "run-b"))
    assert len(before_b) == 8 and len(run_objects(emulator, "run-a")) == 8

    one.teardown()
    assert run_objects(emulator, "run-a") == []
    assert sorted(run_objects(emulator, "run-b")) == before_b
    two.teardown()
    assert run_objects(emulator, "run-b") == []


def test_a_service_owned_by_another_run_is_never_taken_over(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    make_backend(run_id="run-a").provision()
    before = emulator.objects("services", "serving.knative.dev")[0]
    intruder = make_backend(run_id="run-b")
    with pytest.raises(ProvisioningError, match="already exists and belongs to run run-a"):
        intruder.provision()
    intruder.teardown()
    after = emulator.objects("services", "serving.knative.dev")[0]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert len(run_objects(emulator, "run-a")) == 8


@pytest.mark.parametrize(
    "verb, resource",
    [
        ("patch", "services.serving.knative.dev"),
        ("patch", "virtualservices"),
        ("patch", "jobs"),
        ("list", "pods"),
    ],
)
def test_an_interrupt_mid_provision_is_followed_by_a_complete_teardown(
    verb: str, resource: str, emulator: Emulator, make_backend: BackendFactory
) -> None:
    # The hook runs in the emulator after it processed the request and before it answers:
    # the object exists, the client never learns of it, and Ctrl-C lands in provision().
    emulator.on(verb, resource, lambda _: _thread.interrupt_main())
    backend = make_backend()
    with pytest.raises(KeyboardInterrupt):
        backend.provision()
    assert run_objects(emulator, "run-a") != []
    backend.teardown()
    assert run_objects(emulator, "run-a") == []


def test_a_cluster_without_knative_is_named(tmp_path: Path) -> None:
    with bare_cluster(tmp_path, "serving.knative.dev") as (bare, make_backend):
        backend = make_backend()
        with pytest.raises(
            ProvisioningError,
            match=r"does not serve serving.knative.dev/v1 Service, serving.knative.dev/v1 "
            r"Revision: install Knative Serving \(1.17 or later\)",
        ):
            backend.provision()
        assert not bare.calls("patch")


def test_an_apply_that_creates_needs_create_and_the_message_says_so(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    emulator.fail("create", "jobs", 403, times=None)
    with pytest.raises(ProvisioningError) as info:
        make_backend().provision()
    assert str(info.value).startswith(
        "forbidden: cannot create jobs.batch in namespace default; grant it"
    )


def test_a_spec_the_cluster_would_refuse_fails_before_any_api_call(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    from pytest_darklaunch.errors import ConfigError

    no_image = make_spec(versions={"live": {"image": "a:1"}, "dark": {"revision": "sample-app-v2"}})
    with pytest.raises(ConfigError, match="versions.dark.image"):
        make_backend(no_image)
    assert emulator.requests == []


def test_an_expired_or_broken_watch_is_listed_and_watched_again(
    emulator: Emulator, make_backend: BackendFactory
) -> None:
    emulator.controllers.knative["sample-app-v2"] = pending()

    def release(_: Any) -> None:
        if emulator.controllers.knative.pop("sample-app-v2", None):
            emulator.controllers.reconcile("default", "sample-app")

    # the first watch of the dark wait answers 410 Gone, the second 500; the third succeeds
    emulator.fail("watch", "services.serving.knative.dev", 410, times=1)
    emulator.fail("watch", "services.serving.knative.dev", 500, times=1)
    emulator.on("watch", "services.serving.knative.dev", release, times=None)
    make_backend().provision()
    watches = emulator.calls("watch", "services.serving.knative.dev")
    assert len(watches) >= 3
    assert len(emulator.calls("list", "services.serving.knative.dev")) >= 3

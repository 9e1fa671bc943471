"""Provisioning and teardown of the local stack: nothing left behind, clear errors, no clashes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from pytest_darklaunch.backends.local import LocalBackend, processes
from pytest_darklaunch.backends.local import envoy as envoy_module
from pytest_darklaunch.errors import ProvisioningError
from tests.local.helpers import make_spec, pid_alive, read_jsonl, wait_for, wait_for_sent

ROLES = {"live", "dark", "envoy", "prometheus", "generator"}


def read_pids(workdir: str) -> list[int]:
    with open(os.path.join(workdir, "pids"), encoding="utf-8") as handle:
        return [int(line) for line in handle if line.strip()]


def test_environment_describes_the_stack(stack: Callable[..., LocalBackend]) -> None:
    spec = make_spec(
        versions={"dark": {"env": {"T_VERSION": "green"}}}, traffic={"rate": 50, "warmup": "1s"}
    )
    backend = stack(spec)
    env = backend.provision()

    assert (env.backend, env.metric_source, env.scrape_interval_s) == ("local", "envoy", 1.0)
    assert env.labels == {
        "live": {"envoy_cluster_name": "live"},
        "dark": {"envoy_cluster_name": "dark"},
        # no "eligible" series: the generator sends GETs only, all mirrored, so every one of
        # live's requests is the mirror check's base
    }
    assert set(env.endpoints) == {"ingress", "live", "dark", "envoy_admin", "prometheus"}
    assert env.prometheus_url == env.endpoints["prometheus"]
    # Every server binds loopback only, on a port the kernel chose.
    assert all(url.startswith("http://127.0.0.1:") for url in env.endpoints.values())
    assert {env.details[f"{role}_pid"] for role in ROLES} == {str(p) for p in env.pids}
    assert sorted(read_pids(backend.workdir)) == sorted(env.pids) == sorted(backend.started_pids)
    assert oct(os.stat(backend.workdir).st_mode & 0o777) == "0o700"
    # Versions: T_VERSION defaults to the role; the spec's env wins.
    assert requests.get(env.endpoints["live"], timeout=2).text == "live\n"
    assert requests.get(env.endpoints["dark"], timeout=2).text == "green\n"
    assert requests.get(env.endpoints["ingress"], timeout=2).text == "live\n"
    assert requests.get(f"{env.endpoints['prometheus']}/-/ready", timeout=2).status_code == 200
    # Fine buckets once a stats flush (every second) has seen mirrored requests.
    bucket = 'envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="dark",le="%s"}'
    edges = ("1", "2", "37", "100", "110", "990", "1100", "60000")

    def dark_histogram() -> str | None:
        text = requests.get(env.details["envoy_metrics_url"], timeout=2).text
        return text if bucket % 0.9990234375 in text else None

    metrics = wait_for(dark_histogram, "dark's latency histogram in Envoy's metrics")
    # Bounds sit 1/1024 ms below Envoy's bin edges (see envoy.upstream_time_buckets).
    assert all(bucket % (int(edge) - 1 / 1024) in metrics for edge in edges)
    # Traffic: started during provisioning, warm-up first, then counted.
    started = float(env.details["traffic_started_at"])
    assert abs(started - (backend.traffic_details() or {})["started_at"]) < 1e-3
    assert env.details["traffic_warmup_s"] == "1"
    assert float(env.details["stack_ready_s"]) < 5.0


def test_teardown_stops_every_process_and_removes_workdir(
    stack: Callable[..., LocalBackend],
) -> None:
    backend = stack(make_spec(traffic={"rate": 50}))
    env = backend.provision()
    pids = read_pids(backend.workdir)
    assert len(pids) == 5 and all(pid_alive(pid) for pid in pids)
    guardian = backend.guardian_pid
    assert guardian is not None and guardian not in pids and pid_alive(guardian)

    backend.teardown()

    assert [pid for pid in pids if pid_alive(pid)] == []
    assert not pid_alive(guardian)  # dismissed: it exits without acting, and is reaped
    assert not os.path.exists(backend.workdir)
    assert set(pids) == set(env.pids)
    # The final counters survive teardown.
    stats = backend.traffic_stats()
    assert stats is not None and stats.target_rps == 50


def test_teardown_twice_is_harmless(stack: Callable[..., LocalBackend]) -> None:
    backend = stack(make_spec(traffic={"rate": 20}))
    backend.provision()
    pids = read_pids(backend.workdir)

    backend.teardown()
    backend.teardown()

    assert [pid for pid in pids if pid_alive(pid)] == []
    assert not os.path.exists(backend.workdir)
    with pytest.raises(ProvisioningError, match="torn down"):
        backend.provision()


def test_live_exiting_at_once_fails_provisioning_with_its_log(
    stack: Callable[..., LocalBackend],
) -> None:
    crash = "import sys; print('live: cannot open database', file=sys.stderr); sys.exit(3)"
    command = [sys.executable, "-c", crash, "{port}"]
    backend = stack(make_spec(versions={"live": {"command": command}}))

    with pytest.raises(ProvisioningError) as caught:
        backend.provision()

    message = str(caught.value)
    assert "live exited before live answering" in message
    assert "exited with status 3" in message
    assert "live: cannot open database" in message
    # Envoy, Prometheus, dark and the generator had started: all of them are gone again.
    assert len(backend.started_pids) == 5
    assert [pid for pid in backend.started_pids if pid_alive(pid)] == []
    assert not os.path.exists(backend.workdir)


def test_a_failed_provisioning_can_leave_the_logs_it_names_to_the_caller(
    stack: Callable[..., LocalBackend],
) -> None:
    """With ``keep_failed_workdir`` (what the plugin sets), the processes are stopped all the
    same, but the workdir stays: the log the error names is there to be read."""
    crash = "import sys; print('live: cannot open database', file=sys.stderr); sys.exit(3)"
    command = [sys.executable, "-c", crash, "{port}"]
    spec = make_spec(versions={"live": {"command": command}})
    backend = stack(spec, keep_failed_workdir=True)

    with pytest.raises(ProvisioningError) as caught:
        backend.provision()

    named = re.search(r"log (\S+live\.log), last lines", str(caught.value))
    assert named, str(caught.value)
    assert named.group(1).startswith(backend.workdir + os.sep)
    assert "live: cannot open database" in Path(named.group(1)).read_text(encoding="utf-8")
    assert [pid for pid in backend.started_pids if pid_alive(pid)] == []
    assert backend.guardian_pid is None or not pid_alive(backend.guardian_pid)


def test_envoy_rejecting_its_config_fails_with_envoy_log(
    stack: Callable[..., LocalBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = envoy_module.envoy_config

    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        config = real(*args, **kwargs)
        config["static_resources"]["clusters"][0]["type"] = "NO_SUCH_TYPE"
        return config

    monkeypatch.setattr(envoy_module, "envoy_config", broken)
    backend = stack(make_spec())

    with pytest.raises(ProvisioningError) as caught:
        backend.provision()

    message = str(caught.value)
    assert message.startswith("envoy exited before Envoy ready")
    assert "NO_SUCH_TYPE" in message
    assert [pid for pid in backend.started_pids if pid_alive(pid)] == []
    assert not os.path.exists(backend.workdir)


@pytest.mark.parametrize("how", ["option", "path"])
def test_missing_prometheus_is_one_line_with_install_hint(
    stack: Callable[..., LocalBackend], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, how: str
) -> None:
    options: dict[str, Any] = {}
    if how == "option":
        options["prometheus_bin"] = str(tmp_path / "no" / "prometheus")
    else:
        monkeypatch.setenv("PATH", str(tmp_path))
    backend = stack(make_spec(), **options)

    with pytest.raises(ProvisioningError) as caught:
        backend.provision()

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("Prometheus not found")
    assert "apt-get install -y --no-install-recommends prometheus" in message
    assert "--darklaunch-prometheus-bin" in message
    assert "--darklaunch-prometheus-url" in message
    assert backend.started_pids == ()
    assert not os.path.exists(backend.workdir)


def test_provision_none_is_refused_before_anything_starts(
    stack: Callable[..., LocalBackend],
) -> None:
    backend = stack(make_spec(), provision="none")
    with pytest.raises(ProvisioningError, match="--darklaunch-provision 'none' is not supported"):
        backend.provision()
    assert backend.started_pids == () and not os.path.exists(backend.workdir)


def test_existing_prometheus_url_starts_no_prometheus(stack: Callable[..., LocalBackend]) -> None:
    backend = stack(make_spec(traffic={"rate": 20}), prometheus_url="http://127.0.0.1:9/")
    env = backend.provision()

    assert env.prometheus_url == env.endpoints["prometheus"] == "http://127.0.0.1:9"
    assert "prometheus_pid" not in env.details and len(env.pids) == 4
    assert env.details["prometheus"] == "external"
    assert env.details["envoy_metrics_url"] in env.details["prometheus_scrape_hint"]
    body = requests.get(env.details["envoy_metrics_url"], timeout=2).text
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="live"}' in body


def test_two_runs_at_once_do_not_collide(stack: Callable[..., LocalBackend]) -> None:
    backends = [stack(make_spec(traffic={"rate": 100}), name=f"run{i}") for i in range(2)]
    envs: dict[int, Any] = {}
    errors: list[BaseException] = []

    def provision(i: int) -> None:
        try:
            envs[i] = backends[i].provision()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=provision, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    ports = [url.rsplit(":", 1)[1] for env in envs.values() for url in env.endpoints.values()]
    assert len(ports) == 10 and len(set(ports)) == 10
    for backend in backends:
        wait_for_sent(backend, 50)
        stats = backend.stop_traffic()
        assert stats is not None and stats.errors == 0


def test_keep_leaves_the_stack_and_says_how_to_remove_it(
    stack: Callable[..., LocalBackend],
) -> None:
    backend = stack(make_spec(traffic={"rate": 20}), keep=True)
    env = backend.provision()
    assert backend.guardian_pid is None  # what is kept must outlive pytest, however it ends

    backend.teardown()

    generator = int(env.details["generator_pid"])
    kept = [p for p in env.pids if p != generator]
    assert not pid_alive(generator)
    assert all(pid_alive(pid) for pid in kept)
    assert requests.get(env.endpoints["ingress"], timeout=2).status_code == 200
    text = backend.keep_instructions()
    kill_line = next(line for line in text.splitlines() if line.strip().startswith("kill "))
    assert f"rm -rf {backend.workdir}" in kill_line
    assert sorted(int(p) for p in kill_line.split("&&")[0].split()[1:]) == sorted(kept)
    subprocess.run(kill_line.strip(), shell=True, check=True)  # noqa: S602 - the user's command
    # They are this test process's children: reap them (as init would once pytest has exited)
    # through their kept handles, so those know they ended.
    handles = [p for p in processes._DETACHED if p.pid in kept]
    assert sorted(p.pid for p in handles) == sorted(kept)

    def all_reaped() -> bool:
        return all(p.poll() is not None for p in handles)

    wait_for(all_reaped, "kept processes ended after the kill command")
    assert [pid for pid in kept if pid_alive(pid)] == []
    assert not os.path.exists(backend.workdir)
    assert backend.keep_instructions() == "pytest-darklaunch left nothing running."


def test_sigint_during_provisioning_leaves_nothing(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import sys
        from pytest_darklaunch.backends import RunContext
        from pytest_darklaunch.backends.local import LocalBackend
        from pytest_darklaunch.core.spec import Sources, build_spec

        hang = [sys.executable, "-c", "import time; time.sleep(60)", "{{port}}"]
        spec = build_spec(
            {{"target": "default/app", "versions": {{"live": {{"command": hang}}}}}}, Sources("t")
        )
        backend = LocalBackend(spec, RunContext(run_id="t", workdir={str(workdir)!r}))
        try:
            backend.provision()
        except KeyboardInterrupt:
            print("PIDS", " ".join(map(str, backend.started_pids)), flush=True)
            raise
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: (workdir / "pids").exists() and len(read_pids(str(workdir))) == 5,
                 "all five processes started")
        started = read_pids(str(workdir))
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=15)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()

    assert "KeyboardInterrupt" in err
    reported = [int(p) for p in out.split("PIDS", 1)[1].split()]
    assert sorted(reported) == sorted(started)
    assert [pid for pid in started if pid_alive(pid)] == []
    assert not workdir.exists()


def test_generator_stats_file_is_json_at_any_time(stack: Callable[..., LocalBackend]) -> None:
    backend = stack(make_spec(traffic={"rate": 200, "warmup": "0.3s"}))
    backend.provision()
    seen = set()
    for _ in range(200):  # reads race the generator's replace(): never a partial file
        with open(backend.stats_path, encoding="utf-8") as handle:
            seen.add(json.load(handle)["updated_at"])
    wait_for(lambda: len({(backend.traffic_details() or {})["updated_at"]} | seen) > 1,
             "the stats file being rewritten")


def test_traffic_headers_arrive_and_stay_out_of_the_process_list(
    stack: Callable[..., LocalBackend], tmp_path: Path
) -> None:
    spec = make_spec(
        versions={"live": {"env": {"SAMPLEAPP_LOG": str(tmp_path / "live.jsonl")}}},
        traffic={"rate": 50, "warmup": "0s", "path": "/api/v1?q=1",
                 "headers": {"Authorization": "Bearer s3cr3t", "x-request-id": "fixed-1"}},
    )
    backend = stack(spec)
    env = backend.provision()
    generator = int(env.details["generator_pid"])
    with open(f"/proc/{generator}/cmdline", "rb") as handle:
        cmdline = handle.read().decode()
    wait_for_sent(backend, 10)
    backend.stop_traffic()

    assert "s3cr3t" not in cmdline and "s3cr3t" not in json.dumps(dict(env.details))
    lines = read_jsonl(tmp_path / "live.jsonl")
    assert len(lines) >= 10
    assert {(line["x-request-id"], line["path"]) for line in lines} == {("fixed-1", "/api/v1")}


def test_sigint_during_teardown_waits_until_everything_is_stopped(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import os, signal, threading, time
        from pytest_darklaunch.backends import RunContext
        from pytest_darklaunch.backends.local import LocalBackend
        from pytest_darklaunch.core.spec import Sources, build_spec

        spec = build_spec({{"target": "default/app", "traffic": {{"rate": 50}}}}, Sources("t"))
        backend = LocalBackend(spec, RunContext(run_id="t", workdir={str(workdir)!r}))
        backend.provision()
        sent = []
        timer = threading.Timer(
            0.02, lambda: (sent.append(time.monotonic()), os.kill(os.getpid(), signal.SIGINT))
        )
        began = time.monotonic()
        timer.start()
        try:
            backend.teardown()
        except KeyboardInterrupt:
            ended = time.monotonic()
            print("INTERRUPTED", began < sent[0] < ended, os.path.exists({str(workdir)!r}))
            print("PIDS", " ".join(map(str, backend.started_pids)), flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )

    assert "INTERRUPTED True False" in done.stdout, done.stdout + done.stderr
    pids = [int(p) for p in done.stdout.split("PIDS", 1)[1].split()]
    assert len(pids) == 5 and [pid for pid in pids if pid_alive(pid)] == []


def test_port_taken_meanwhile_is_retried_with_new_ports(
    stack: Callable[..., LocalBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_darklaunch.backends.local import stack as stack_module

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    handed_out: list[int] = []
    real_free_port = stack_module.free_port

    def racy_free_port() -> int:
        # The first port handed out (live's) is taken by someone else before live binds it.
        port = taken if not handed_out else real_free_port()
        handed_out.append(port)
        return port

    monkeypatch.setattr(stack_module, "free_port", racy_free_port)
    try:
        backend = stack(make_spec(traffic={"rate": 20}))
        env = backend.provision()
    finally:
        squatter.close()

    assert handed_out.count(taken) == 1
    assert int(env.endpoints["live"].rsplit(":", 1)[1]) != taken
    assert len(backend.started_pids) == 10  # the first attempt's five, all stopped, then five
    first, second = backend.started_pids[:5], backend.started_pids[5:]
    assert [pid for pid in first if pid_alive(pid)] == []
    assert all(pid_alive(pid) for pid in second)
    assert requests.get(env.endpoints["ingress"], timeout=2).text == "live\n"

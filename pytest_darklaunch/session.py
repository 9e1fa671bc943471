"""One experiment per pytest run: provisioning, the sampler thread, results and teardown.

The controller (or the only process) owns a :class:`DarklaunchSession` that provisions through
a backend, runs the experiment in a background thread and tears everything down. pytest-xdist
workers own a session too, but only read the controller's result file, named in
``workerinput``. This module imports nothing of the pytest layer; ``plugin.py`` drives it and
passes in how an interval is described on the terminal (``describe_interval``).
"""

from __future__ import annotations

import atexit
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pytest_darklaunch.errors import DarklaunchError, ProvisioningError

if TYPE_CHECKING:  # the modules behind a running experiment load only when one starts
    from pytest_darklaunch.backends import Backend, Environment
    from pytest_darklaunch.core.compare import Clean, Decide, Summary
    from pytest_darklaunch.core.config import Resolved
    from pytest_darklaunch.core.experiment import ExperimentData, Interval
    from pytest_darklaunch.core.loop import Runner
    from pytest_darklaunch.core.spec import Spec
    from pytest_darklaunch.core.verdict import Verdict

    # Formats the progress line of an interval (the pytest layer's ``progress_line``).
    DescribeInterval = Callable[[ExperimentData, Interval, list[Verdict]], str]

RESULT_FILE = "result.json"
PROVISIONING_FAILED = "provisioning failed"
# How often an xdist worker looks for the result file: a stat call, so cheap enough to keep the
# wait after the experiment's end short (half of this on average).
RESULT_POLL_S = 0.05
# A run whose error names files in its directory (log tails) keeps that directory, so they are
# where the message says; as pytest does with its temp dirs, only the newest few are kept,
# each marked by this file (which says what failed).
KEPT_FAILED_RUNS = 3
FAILED_MARK = "FAILED"


class DarklaunchSession:
    """The experiment of one pytest run, as the pytest layer sees it."""

    def __init__(
        self,
        resolved: Resolved,
        run_id: str | None = None,
        describe_interval: DescribeInterval | None = None,
        compare_rules: tuple[Decide | None, Clean | None] = (None, None),
    ) -> None:
        self.resolved = resolved
        self.describe_interval = describe_interval
        # Users' pytest_darklaunch_compare / _clean hooks as plain callables (plugin.py).
        self.compare_rules = compare_rules
        self.run_id = run_id or uuid.uuid4().hex[:10]
        self.workdir: str | None = None
        self.backend: Backend | None = None
        self.environment: Environment | None = None
        self.error: str | None = None
        self.data: ExperimentData | None = None
        self.result_path: str | None = None
        self.progress: queue.Queue[str] = queue.Queue()
        self.progress_sink: Callable[[str], None] | None = None
        # The verdicts asserted by the test now running (its JUnit properties, see plugin).
        self.asserted: list[Verdict] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._provisioned = threading.Event()
        self._torn_down = False
        self.started_at = time.time()
        self._stopped_first = False  # the provisioning error came after our own stop
        self.kept_dir: str | None = None  # where teardown kept the files the error names

    @property
    def started(self) -> bool:
        """True once :meth:`start` ran (not for --collect-only, workers, inert runs)."""
        return self.workdir is not None

    @property
    def spec(self) -> Spec:
        assert self.resolved.spec is not None
        return self.resolved.spec

    # -- controller ---------------------------------------------------------------------------

    def start(self) -> None:
        """Provision and run the experiment in a background thread.

        Provisioning overlaps collection (and pytest-xdist starting its workers); its errors
        are kept for the tests to report, and written to the result file for workers.
        """
        settings = self.resolved.settings
        self.workdir = tempfile.mkdtemp(prefix=f"darklaunch-{self.run_id}-")
        self.result_path = os.path.join(self.workdir, RESULT_FILE)
        atexit.register(self.teardown)
        from pytest_darklaunch.backends import RunContext, create_backend

        run = RunContext(
            run_id=self.run_id,
            workdir=os.path.join(self.workdir, "stack"),
            prometheus_url=settings.prometheus_url,
            prometheus_bin=settings.prometheus_bin,
            prometheus_service=settings.prometheus_service,
            scrape_interval_s=settings.scrape_interval_s,
            kube_context=settings.kube_context,
            namespace=settings.namespace,
            provision=settings.provision,
            keep=settings.keep,
            run_dir=self.workdir,
            keep_failed_workdir=True,
            compare_decide=self.compare_rules[0],
            compare_clean=self.compare_rules[1],
        )
        os.makedirs(run.workdir, mode=0o700)
        try:
            self.backend = create_backend(settings.backend, self.spec, run)
            _import_for_background(settings.backend)
        except DarklaunchError as exc:
            self._fail(f"{PROVISIONING_FAILED}: {exc}")
            return
        self._thread = threading.Thread(target=self._run, name="darklaunch", daemon=True)
        self._thread.start()

    def _fail(self, message: str) -> None:
        """Record an error that ends the experiment before it ran; workers read it from the file."""
        from pytest_darklaunch.core.experiment import Stage, new_data

        self.error = message
        self._stopped_first = self._stop.is_set()
        settings = self.resolved.settings
        self.data = new_data(self.spec, "envoy", {"live": {}, "dark": {}}, settings.full_duration)
        self.data.error, self.data.stage = message, Stage.FAILED
        self._provisioned.set()
        self._save_and_finish()

    def _save_and_finish(self) -> None:
        if self.data is not None and self.result_path:
            self.data.save(self.result_path)
        self._done.set()

    def _run(self) -> None:
        assert self.backend is not None
        try:
            self.environment = self.backend.provision()
        except Exception as exc:  # noqa: BLE001 - reported to every test, never swallowed
            what = "" if isinstance(exc, DarklaunchError) else f"{type(exc).__name__}: "
            self._fail(f"{PROVISIONING_FAILED}: {what}{exc}")
            return
        self._provisioned.set()
        try:
            runner = self._runner(self.environment)
            runner.run()
            self._keep_comparison()
        except Exception as exc:  # noqa: BLE001 - reported to every test, never swallowed
            if self.data is None:
                self._fail(f"{type(exc).__name__}: {exc}")
                return
            from pytest_darklaunch.core.experiment import Stage

            self.data.error = f"{type(exc).__name__}: {exc}"
            self.data.stage = Stage.FAILED
        self._save_and_finish()

    def _runner(self, env: Environment) -> Runner:
        from pytest_darklaunch.core.experiment import new_data
        from pytest_darklaunch.core.loop import Runner
        from pytest_darklaunch.core.prometheus import PrometheusClient

        settings = self.resolved.settings
        self.data = new_data(
            self.spec,
            env.metric_source,
            env.labels,
            settings.full_duration,
            settings.provision != "none",
            settings.fail_fast,
        )
        return Runner(
            self.spec,
            self.data,
            PrometheusClient(env.prometheus_url),
            self.spec.objectives,
            traffic_started_at=float(env.details.get("traffic_started_at", time.time())),
            template_values=_template_values(self.spec, env),
            on_interval=self._on_interval,
            traffic_stats=self._traffic_stats,
            stop=self._stop,
            scrape_interval_s=env.scrape_interval_s,
            counters_start_at_zero=env.counters_start_at_zero,
            comparison=self._comparison(),
        )

    def _comparison(self) -> Callable[[], Summary | None] | None:
        """The backend's pairing of live's and dark's answers, when it has one (local)."""
        found: Callable[[], Summary | None] | None = getattr(
            self.backend, "comparison_summary", None)
        return found

    def _keep_comparison(self) -> None:
        """The comparison as the experiment ended, for the reports (and xdist's workers)."""
        comparison = self._comparison()
        if comparison is None or self.data is None or self.data.error:
            return
        summary = comparison()
        if summary is not None:
            self.data.comparison = summary.to_json()

    def _traffic_stats(self) -> dict[str, Any] | None:
        stats = self.backend.traffic_stats() if self.backend is not None else None
        return None if stats is None else dict(stats.__dict__)

    def _on_interval(
        self, data: ExperimentData, interval: Interval, verdicts: list[Verdict]
    ) -> None:
        if self.describe_interval is None:
            return
        line = self.describe_interval(data, interval, verdicts)
        if self.progress_sink is not None:
            self.progress_sink(line)
        else:
            self.progress.put(line)

    def stop_experiment(self) -> None:
        """End the experiment (and a provisioning still under way) and wait for its thread."""
        self._stop.set()
        provisioning = self._thread is not None and not self._provisioned.is_set()
        if provisioning and self.backend is not None and not self.resolved.settings.keep:
            # Provisioning may wait many seconds on a version that never answers: stopping
            # what it started makes those waits fail at once.
            self.backend.teardown()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def teardown(self) -> str:
        """Stop everything; returns the keep instructions when ``--darklaunch-keep``."""
        if self._torn_down:
            return ""
        self._torn_down = True
        self.stop_experiment()
        instructions = ""
        try:
            if self.backend is not None:
                if self.resolved.settings.keep:
                    instructions = self.backend.keep_instructions()
                # With keep, a backend's teardown stops only what must not outlive the run
                # (the traffic, a port-forward) and leaves the rest to the instructions.
                self.backend.teardown()
        finally:
            if self.workdir and not self.resolved.settings.keep:
                if self.error and not self._stopped_first and self.workdir + os.sep in self.error:
                    self.kept_dir = keep_failed_run(self.workdir, self.error)
                else:
                    shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.teardown)
        return instructions

    def workerinput(self) -> dict[str, Any]:
        """What an xdist worker needs: the run id and the result file to read.

        Provisioning is still under way when workers start; its outcome, errors included,
        reaches them through the result file.
        """
        return {
            "run_id": self.run_id,
            "result_path": self.result_path,
            "deadline_s": self.max_duration_s(),
        }

    def wait_provisioned(self) -> None:
        """Block until provisioning ended (controller); raise its error, if any."""
        if self._thread is not None and not self._provisioned.wait(self.max_duration_s()):
            raise ProvisioningError(
                f"provisioning did not end within {self.max_duration_s():.0f} s"
            )
        if self.error:
            raise ProvisioningError(self.error)

    # -- both sides -----------------------------------------------------------------------------

    def max_duration_s(self) -> float:
        from pytest_darklaunch.core.loop import FIRST_SCRAPE_TIMEOUT_S

        spec = self.spec
        return (
            spec.traffic.warmup_s
            + FIRST_SCRAPE_TIMEOUT_S
            + spec.duration.total_s
            + 10 * spec.duration.iterations
            + 30
        )

    def wait(self, write: Callable[[str], None] | None = None) -> ExperimentData:
        """Block until the experiment finished, passing progress lines to ``write`` meanwhile;
        raise its provisioning error if any."""
        if self.error:
            raise ProvisioningError(self.error)
        if self._thread is not None or self._done.is_set():
            deadline = time.monotonic() + self.max_duration_s()
            while not self._done.wait(0.1 if write else 1.0):
                self.flush_progress(write)
                if time.monotonic() > deadline:
                    raise ProvisioningError(
                        f"the experiment did not finish within {self.max_duration_s():.0f} s"
                    )
            self.flush_progress(write)
            if self.error:
                raise ProvisioningError(self.error)
            assert self.data is not None
            return self.data
        return self._wait_for_file()

    def flush_progress(self, write: Callable[[str], None] | None) -> None:
        """Pass the progress lines queued so far to ``write`` (``None``: keep them queued)."""
        while write is not None:
            try:
                write(self.progress.get_nowait())
            except queue.Empty:
                return

    def _wait_for_file(self) -> ExperimentData:
        """xdist worker: the controller writes the result file when the experiment ends."""
        if self.data is not None:
            return self.data
        path = self.result_path
        if not path:
            raise ProvisioningError("no result file was handed to this worker")
        from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

        from pytest_darklaunch.core.experiment import ExperimentData

        retrying = Retrying(
            stop=stop_after_delay(self.max_duration_s()),
            wait=wait_fixed(RESULT_POLL_S),
            retry=retry_if_result(lambda found: not found),
            retry_error_callback=lambda state: False,
        )
        if not retrying(os.path.exists, path):
            raise ProvisioningError(
                f"the controller wrote no experiment result to {path} within "
                f"{self.max_duration_s():.0f} s"
            )
        self.data = ExperimentData.load(path)
        if self.data.error.startswith(PROVISIONING_FAILED):
            raise ProvisioningError(self.data.error)
        return self.data

    @classmethod
    def for_worker(cls, resolved: Resolved, info: Mapping[str, Any]) -> DarklaunchSession:
        session = cls(resolved, run_id=info["run_id"])
        session.result_path = info.get("result_path")
        session.error = info.get("error")
        session._torn_down = True  # the controller tears down, never a worker
        return session


def keep_failed_run(workdir: str, error: str, keep: int = KEPT_FAILED_RUNS) -> str:
    """Mark ``workdir`` as a failed run's, then remove all but the newest ``keep`` marked
    directories beside it (a running run's is never marked); returns ``workdir``."""
    with open(os.path.join(workdir, FAILED_MARK), "w", encoding="utf-8") as fh:
        fh.write(error + "\n")
    parent = os.path.dirname(workdir)
    kept = []
    for name in os.listdir(parent):
        try:  # another failing run may be removing it meanwhile
            marked = os.stat(os.path.join(parent, name, FAILED_MARK)).st_mtime_ns
        except OSError:
            continue
        if name.startswith("darklaunch-"):
            kept.append((marked, os.path.join(parent, name)))
    for _, directory in sorted(kept)[: max(len(kept) - keep, 0)]:
        shutil.rmtree(directory, ignore_errors=True)
    return workdir


def _import_for_background(backend: str) -> None:
    """Import, in the main thread, the packages the experiment's thread needs (the progress
    formatter came imported with ``describe_interval``).

    pytest goes on collecting test modules while that thread provisions, and they may import the
    same packages (requests, kubernetes, ...): a package imported for the first time by two
    threads at once can be seen half initialised ("cannot import name ... from partially
    initialized module"). Imported here, every one is complete before the thread starts.
    """
    import pytest_darklaunch.core.experiment
    import pytest_darklaunch.core.loop
    import pytest_darklaunch.core.prometheus  # noqa: F401 - requests

    if backend == "kubernetes":
        from pytest_darklaunch.backends.kubernetes.api import import_client

        import_client()


def _template_values(spec: Spec, env: Environment) -> dict[str, dict[str, str]]:
    """Values of a custom metric's placeholders, per role."""
    from pytest_darklaunch.core.spec import ROLES

    out: dict[str, dict[str, str]] = {}
    for role in ROLES:
        version = getattr(spec.versions, role)
        labels = env.labels.get(role, {})
        out[role] = {
            "version": role,
            "revision": version.revision,
            "namespace": env.details.get("namespace", spec.target.namespace),
            "service": spec.target.name,
            "cluster": labels.get("envoy_cluster_name", role),
        }
    return out

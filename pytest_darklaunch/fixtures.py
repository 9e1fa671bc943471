"""Fixtures: the session's ``darklaunch`` experiment and one parameter per spec objective."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pytest

if TYPE_CHECKING:
    from pytest_darklaunch.assertions import Experiment
    from pytest_darklaunch.core.spec import Objective


@pytest.fixture(scope="session")
def darklaunch(request: pytest.FixtureRequest) -> Experiment:
    """The session's dark-launch experiment.

    Provisioned once per run (once for all pytest-xdist workers); skipped with the reason when
    no experiment is configured.

    >>> def test_dark(darklaunch):                                   # doctest: +SKIP
    ...     darklaunch.assert_objective("error-rate", upper=0.01)
    """
    from pytest_darklaunch.assertions import NO_EXPERIMENT, Experiment
    from pytest_darklaunch.errors import DarklaunchError
    from pytest_darklaunch.plugin import _session
    from pytest_darklaunch.report import progress_writer

    state = _session(request.config)
    if state is None or not state.resolved.active:
        pytest.skip(NO_EXPERIMENT)
    try:
        state.wait_provisioned()
    except DarklaunchError as exc:
        # The message says it all (which process, its log tail): no traceback into the plugin.
        pytest.fail(f"darklaunch: {exc}", pytrace=False)
    return Experiment(state, uncaptured(request.config, progress_writer(request.config)))


@pytest.fixture
def darklaunch_objective(request: pytest.FixtureRequest) -> Objective:
    """One objective of the spec; tests using it are generated once per objective.

    >>> def test_objective(darklaunch, darklaunch_objective):        # doctest: +SKIP
    ...     darklaunch.assert_objective(darklaunch_objective)
    """
    if not hasattr(request, "param"):
        from pytest_darklaunch.assertions import NO_EXPERIMENT
        from pytest_darklaunch.plugin import _session

        state = _session(request.config)
        if state is None or not state.resolved.active:
            pytest.skip(NO_EXPERIMENT)
        pytest.skip("darklaunch: the spec declares no objectives")
    objective: Objective = request.param
    return objective


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "darklaunch_objective" not in metafunc.fixturenames:
        return
    from pytest_darklaunch.plugin import _session

    state = _session(metafunc.config)
    if state is None or not state.resolved.active or not state.spec.objectives:
        return
    objectives = state.spec.objectives
    metafunc.parametrize(
        "darklaunch_objective", objectives, ids=objective_ids(objectives), indirect=True
    )


def uncaptured(
    config: pytest.Config, write: Callable[[str], None] | None
) -> Callable[[str], None] | None:
    """``write`` with pytest's output capture suspended, so progress reaches the terminal
    while a test waits for the experiment (as live logging does)."""
    capman = config.pluginmanager.getplugin("capturemanager")
    if write is None or capman is None:
        return write

    def write_uncaptured(line: str) -> None:
        with capman.global_and_fixture_disabled():
            write(line)

    return write_uncaptured


def objective_ids(objectives: tuple[Objective, ...]) -> list[str]:
    """Test ids: the metric name, numbered when a metric has several objectives."""
    names = [o.metric for o in objectives]
    seen: dict[str, int] = {}
    ids = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        ids.append(name if names.count(name) == 1 else f"{name}-{seen[name]}")
    return ids


def check_markers(item: pytest.Item, markers: list[Any]) -> None:
    """Require each ``@pytest.mark.darklaunch(...)`` objective after the test body passed."""
    __tracebackhide__ = True
    from pytest_darklaunch.assertions import Experiment
    from pytest_darklaunch.plugin import _session
    from pytest_darklaunch.report import progress_writer

    state = _session(item.config)
    experiment = Experiment(state, uncaptured(item.config, progress_writer(item.config)))
    for mark in markers:
        if not mark.args:
            raise pytest.UsageError(
                f"invalid @pytest.mark.darklaunch on {item.nodeid}: expected a metric name "
                "first, such as @pytest.mark.darklaunch('p99', upper=200)"
            )
        experiment.assert_objective(*mark.args, **mark.kwargs)

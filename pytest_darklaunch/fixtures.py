"""Fixtures: the session's ``darklaunch`` experiment and one parameter per spec objective."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_darklaunch.assertions import Experiment
    from pytest_darklaunch.core.spec import Objective


# The functions are named *_fixture so that ``plugin``, which imports them to register them,
# can call the session object ``darklaunch`` as everywhere else.
@pytest.fixture(scope="session", name="darklaunch")
def darklaunch_fixture(request: pytest.FixtureRequest) -> Experiment:
    """The session's dark-launch experiment.

    Provisioned once per run (once for all pytest-xdist workers); skipped with the reason when
    no experiment is configured.

    >>> def test_dark(darklaunch):                                   # doctest: +SKIP
    ...     darklaunch.assert_objective("error-rate", upper=0.01)
    """
    from pytest_darklaunch.assertions import Experiment
    from pytest_darklaunch.errors import DarklaunchError
    from pytest_darklaunch.report.progress import progress_writer, uncaptured
    from pytest_darklaunch.runstate import active_or_skip

    darklaunch = active_or_skip(request.config)
    try:
        darklaunch.wait_provisioned()
    except DarklaunchError as exc:
        failure = f"darklaunch: {exc}"
    else:
        return Experiment(darklaunch, uncaptured(request.config, progress_writer(request.config)))
    # The message says it all (which process, its log tail): no traceback into the plugin, and
    # raised outside the handler, so pytest does not show the error a second time as context.
    pytest.fail(failure, pytrace=False)


@pytest.fixture(name="darklaunch_objective")
def darklaunch_objective_fixture(request: pytest.FixtureRequest) -> Objective:
    """One objective of the spec; tests using it are generated once per objective.

    >>> def test_objective(darklaunch, darklaunch_objective):        # doctest: +SKIP
    ...     darklaunch.assert_objective(darklaunch_objective)
    """
    if not hasattr(request, "param"):
        from pytest_darklaunch.runstate import active_or_skip

        active_or_skip(request.config)
        pytest.skip("darklaunch: the spec declares no objectives")
    objective: Objective = request.param
    return objective


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "darklaunch_objective" not in metafunc.fixturenames:
        return
    from pytest_darklaunch.runstate import session_of

    darklaunch = session_of(metafunc.config)
    if darklaunch is None or not darklaunch.resolved.active or not darklaunch.spec.objectives:
        return
    from pytest_darklaunch.core.spec import objective_ids

    objectives = darklaunch.spec.objectives
    metafunc.parametrize(
        "darklaunch_objective", objectives, ids=objective_ids(objectives), indirect=True
    )

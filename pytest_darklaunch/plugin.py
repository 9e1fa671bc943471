"""pytest hooks of pytest-darklaunch: options, the session's experiment, reports.

Thin by design: settings are resolved by ``core.config``, the experiment lives in
``session.DarklaunchSession``, fixtures in ``fixtures``, output in ``report``. Heavy modules are
imported inside hooks, and only when an experiment is configured.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Optional

import pytest

from pytest_darklaunch.core.config import OPTIONS, resolve
from pytest_darklaunch.errors import ConfigError
from pytest_darklaunch.fixtures import (  # noqa: F401 - fixtures and a hook, by name
    darklaunch,
    darklaunch_objective,
    pytest_generate_tests,
)

STATE = pytest.StashKey["Any"]()
# The module-level assert_objective gets no config: it finds the running session here.
_current: list[Any] = []


def current_session() -> Optional[Any]:
    """The running pytest session's experiment (for the module-level ``assert_objective``)."""
    return _current[-1] if _current else None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("darklaunch", "dark launch experiments (pytest-darklaunch)")
    for opt in OPTIONS:
        default = f" (default: {opt.default})" if opt.default and not opt.flag else ""
        choices = f"; one of {', '.join(opt.choices)}" if opt.choices else ""
        help_text = f"{opt.help}{choices}{default}. Also env {opt.env} and ini {opt.ini}."
        if opt.flag:
            group.addoption(
                opt.cli, action="store_true", default=None, dest=opt.dest, help=help_text
            )
        else:
            group.addoption(
                opt.cli,
                action="store",
                default=None,
                dest=opt.dest,
                metavar=opt.metavar or None,
                help=help_text,
            )
        parser.addini(opt.ini, f"{opt.help} (same as {opt.cli})", default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "darklaunch(metric, upper=None, lower=None, max_increase=None, judge='experiment', "
        "failure_limit=0): after the test passes, require this objective of the dark version",
    )
    cli = {o.name: config.getoption(o.dest) for o in OPTIONS}
    ini: dict[str, Any] = {}
    for opt in OPTIONS:
        try:
            value = config.getini(opt.ini)
        except (TypeError, ValueError):
            # pytest's native TOML table keeps types: accept numbers and booleans as written.
            value = _native_ini(config, opt.ini)
        if value not in (None, "", []):
            ini[opt.name] = value
    ini_source = str(config.inipath.name) if config.inipath else "ini file"
    try:
        resolved = resolve(cli, os.environ, ini, ini_source, config.rootpath)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None

    from pytest_darklaunch.session import DarklaunchSession

    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and resolved.active and "darklaunch" in workerinput:
        session = DarklaunchSession.for_worker(resolved, workerinput["darklaunch"])
    else:
        # xdist's --testrunuid, when given, names the run everywhere (ports, dirs, labels).
        uid = (
            config.getoption("testrunuid", None)
            if config.pluginmanager.hasplugin("xdist")
            else None
        )
        safe = "".join(c for c in str(uid or "").lower() if c.isalnum() or c == "-")[:32].strip("-")
        session = DarklaunchSession(resolved, run_id=safe or None)
    config.stash[STATE] = session
    _current.append(session)
    if resolved.active and workerinput is None:
        config.pluginmanager.register(_ProgressHooks(config, session), "darklaunch-progress")
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(_XdistHooks(session), "darklaunch-xdist")


def _native_ini(config: pytest.Config, name: str) -> Any:
    raw = config.inicfg.get(name)
    value = getattr(raw, "value", raw)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise pytest.UsageError(
        f"invalid {name} {value!r} (from {config.inipath}): expected a string, number or boolean"
    )


class _XdistHooks:
    """Registered only with pytest-xdist present: hands the experiment to the workers."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["darklaunch"] = self.session.workerinput()


class _ProgressHooks:
    """Registered on the controller of an active run: prints the progress lines the sampler
    produced while a test ran (``pytest_runtest_logfinish`` is given no config)."""

    def __init__(self, config: pytest.Config, session: Any) -> None:
        self.config = config
        self.session = session

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        from pytest_darklaunch.report import progress_writer

        self.session._drain(progress_writer(self.config))


def _session(config: pytest.Config) -> Any:
    return config.stash.get(STATE, None)


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = _session(config)
    if session is None:
        return []
    if not session.resolved.active:
        if config.get_verbosity() > 0:
            return ["darklaunch: inactive (no target, spec file or Iter8 experiment)"]
        return []
    from pytest_darklaunch.report import header_lines

    return header_lines(session.resolved, config.get_verbosity(), session.run_id)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    state = _session(config)
    if state is None or not state.resolved.active or not _is_controller(config):
        return
    if config.option.collectonly or config.option.help:
        return
    _install_sigterm()
    if config.pluginmanager.hasplugin("dsession"):
        # xdist's controller runs no test that could print between intervals: print directly.
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and config.get_verbosity() >= 0:
            state.progress_sink = reporter.write_line
    state.start()


_previous_sigterm: list[Any] = []
_finishing: list[bool] = []
_late_signals: list[int] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Any:
    try:
        return (yield)
    finally:
        state = _session(session.config)
        if state is not None and state.started:
            _finishing.append(True)


def _install_sigterm() -> None:
    """SIGTERM ends the run like Ctrl-C does, so teardown runs in both cases; once the tests
    are over, either signal lets teardown finish and marks the run interrupted."""

    def interrupt(signum: int, frame: Any) -> None:
        if _finishing:
            # The tests are over and teardown is under way: let it finish, then report the
            # run as interrupted (raising now could escape from any sessionfinish hook).
            _late_signals.append(signum)
            return
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            _previous_sigterm.append((signum, signal.signal(signum, interrupt)))
    except ValueError:  # not the main thread (pytest embedded somewhere): leave it alone
        pass


def _restore_sigterm() -> None:
    _finishing.clear()
    _late_signals.clear()
    while _previous_sigterm:
        signum, previous = _previous_sigterm.pop()
        try:
            signal.signal(signum, previous)
        except (ValueError, TypeError):
            pass


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    state = _session(item.config)
    if state is None or not state.resolved.active:
        return (yield)
    from pytest_darklaunch.report import junit_recording

    with junit_recording(item):  # asserted objectives become --junitxml properties
        result = yield
        markers = list(item.iter_markers("darklaunch"))
        if markers:
            from pytest_darklaunch.fixtures import check_markers

            check_markers(item, markers)
    return result


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("darklaunch") is None:
        return
    state = _session(item.config)
    if state is None or not state.resolved.active:
        from pytest_darklaunch.assertions import NO_EXPERIMENT

        pytest.skip(NO_EXPERIMENT)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = _session(config)
    if state is None or not state.started or not _is_controller(config):
        return
    from pytest_darklaunch.report import terminal_summary

    terminal_summary(terminalreporter, state)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = _session(config)
    if state is None or not state.started or not _is_controller(config):
        return
    state.stop_experiment()
    from pytest_darklaunch.report import write_reports

    instructions = ""
    try:
        write_reports(config, state)
    finally:
        try:
            instructions = state.teardown()
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM during teardown: the backend finished tearing down first.
            session.exitstatus = pytest.ExitCode.INTERRUPTED
    if _late_signals:
        session.exitstatus = pytest.ExitCode.INTERRUPTED
    if instructions:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("-", "darklaunch: left running (--darklaunch-keep)")
            reporter.write_line(instructions)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None:
        if _is_controller(config):
            state.teardown()
            _restore_sigterm()
        if state in _current:
            _current.remove(state)

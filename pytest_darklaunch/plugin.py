"""pytest hooks of pytest-darklaunch: options, the run's experiment, its reports.

Hooks only: settings are resolved by ``core.config``, the experiment runs in
``session.DarklaunchSession`` (kept in ``config.stash`` by ``runstate``), signals are handled by
``interrupts.SignalGuard``, fixtures are in ``fixtures``, objectives checked by ``assertions``,
output written by ``report``. Heavy modules are imported inside hooks, and only when an
experiment is configured.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from pytest_darklaunch.core.config import OPTIONS, resolve
from pytest_darklaunch.errors import ConfigError
from pytest_darklaunch.fixtures import (  # noqa: F401 - registered with this module
    darklaunch_fixture,
    darklaunch_objective_fixture,
    pytest_generate_tests,
)
from pytest_darklaunch.runstate import INACTIVE, SIGNALS, activate, deactivate, session_of

if TYPE_CHECKING:
    from pytest_darklaunch.core.config import Resolved
    from pytest_darklaunch.session import DarklaunchSession


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_darklaunch import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


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
        "failure_limit=0, route=None): after the test passes, require this objective of the "
        "dark version",
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

    darklaunch = _new_session(config, resolved)
    activate(config, darklaunch)
    if resolved.active and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_ProgressHooks(config, darklaunch), "darklaunch-progress")
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(_XdistHooks(darklaunch), "darklaunch-xdist")
        if config.pluginmanager.hasplugin("html"):
            # pytest-html's hooks exist only with it: implementing them otherwise is an error
            from pytest_darklaunch.report.html import HtmlHooks

            config.pluginmanager.register(HtmlHooks(darklaunch), "darklaunch-html")


def _new_session(config: pytest.Config, resolved: Resolved) -> DarklaunchSession:
    """The run's experiment: the controller's own, or on an xdist worker, the controller's."""
    from pytest_darklaunch.session import DarklaunchSession

    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and resolved.active and "darklaunch" in workerinput:
        return DarklaunchSession.for_worker(resolved, workerinput["darklaunch"])
    # xdist's --testrunuid, when given, names the run everywhere (ports, dirs, labels).
    uid = config.getoption("testrunuid", None) if config.pluginmanager.hasplugin("xdist") else None
    safe = "".join(c for c in str(uid or "").lower() if c.isalnum() or c == "-")[:32].strip("-")
    describe = None
    rules: tuple[Any, Any] = (None, None)
    if resolved.active:
        from pytest_darklaunch.hookspecs import comparison_callables
        from pytest_darklaunch.report.progress import progress_line

        describe = progress_line
        rules = comparison_callables(config)
    return DarklaunchSession(
        resolved, run_id=safe or None, describe_interval=describe, compare_rules=rules
    )


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

    def __init__(self, darklaunch: DarklaunchSession) -> None:
        self.darklaunch = darklaunch

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["darklaunch"] = self.darklaunch.workerinput()


class _ProgressHooks:
    """Registered on the controller of an active run: prints the progress lines the sampler
    produced while a test ran (``pytest_runtest_logfinish`` is given no config)."""

    def __init__(self, config: pytest.Config, darklaunch: DarklaunchSession) -> None:
        self.config = config
        self.darklaunch = darklaunch

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        from pytest_darklaunch.report.progress import progress_writer

        self.darklaunch.flush_progress(progress_writer(self.config))


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def _running(config: pytest.Config) -> DarklaunchSession | None:
    """The controller's experiment once started (none on workers, inert or collect-only runs)."""
    darklaunch = session_of(config)
    if darklaunch is None or not darklaunch.started or not _is_controller(config):
        return None
    return darklaunch


def pytest_report_header(config: pytest.Config) -> list[str]:
    darklaunch = session_of(config)
    if darklaunch is None:
        return []
    if not darklaunch.resolved.active:  # before any import: most runs have no experiment
        return [INACTIVE] if config.get_verbosity() > 0 else []
    from pytest_darklaunch.report.terminal import header_lines

    return header_lines(darklaunch.resolved, darklaunch.run_id)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    darklaunch = session_of(config)
    if darklaunch is None or not darklaunch.resolved.active or not _is_controller(config):
        return
    if config.option.collectonly or config.option.help:
        return
    from pytest_darklaunch.interrupts import SignalGuard

    guard = config.stash[SIGNALS] = SignalGuard()
    guard.install()
    if config.pluginmanager.hasplugin("dsession"):
        # xdist's controller runs no test that could print between intervals: print directly.
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and config.get_verbosity() >= 0:
            darklaunch.progress_sink = reporter.write_line
    darklaunch.start()


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Any:
    try:
        return (yield)
    finally:
        guard = session.config.stash.get(SIGNALS, None)
        if guard is not None:
            guard.tests_over()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    darklaunch = session_of(item.config)
    if darklaunch is None or not darklaunch.resolved.active:
        return (yield)
    from pytest_darklaunch.report.junit import junit_properties

    darklaunch.asserted.clear()
    try:
        result = yield
        markers = list(item.iter_markers("darklaunch"))
        if markers:
            from pytest_darklaunch.assertions import check_markers

            check_markers(item, markers)
    finally:
        # Asserted objectives become --junitxml properties, those of a failed test too.
        for verdict in darklaunch.asserted:
            item.user_properties.extend(junit_properties(verdict))
        darklaunch.asserted.clear()
    return result


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("darklaunch") is not None:
        from pytest_darklaunch.runstate import active_or_skip

        active_or_skip(item.config)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    darklaunch = _running(config)
    if darklaunch is None:
        return
    from pytest_darklaunch.report.files import OUTPUTS, Outputs
    from pytest_darklaunch.report.terminal import terminal_summary

    terminal_summary(terminalreporter, darklaunch, config.stash.get(OUTPUTS, Outputs()))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    darklaunch = _running(config)
    if darklaunch is None:
        return
    darklaunch.stop_experiment()
    from pytest_darklaunch.report.files import OUTPUTS, write_reports

    instructions = ""
    try:
        config.stash[OUTPUTS] = write_reports(darklaunch)
    finally:
        try:
            instructions = darklaunch.teardown()
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM during teardown: the backend finished tearing down first.
            session.exitstatus = pytest.ExitCode.INTERRUPTED
    guard = config.stash.get(SIGNALS, None)
    if guard is not None and guard.interrupted_late:
        session.exitstatus = pytest.ExitCode.INTERRUPTED
    if instructions:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("-", "darklaunch: left running (--darklaunch-keep)")
            reporter.write_line(instructions)


def pytest_unconfigure(config: pytest.Config) -> None:
    darklaunch = session_of(config)
    if darklaunch is None:
        return
    if _is_controller(config):
        darklaunch.teardown()
        guard = config.stash.get(SIGNALS, None)
        if guard is not None:
            guard.restore()
    deactivate(darklaunch)

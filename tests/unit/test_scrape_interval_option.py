"""--darklaunch-scrape-interval: the cluster Prometheus's scrape interval (kubernetes backend),
checked when options are resolved, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_darklaunch.core.config import resolve
from pytest_darklaunch.errors import ConfigError


def settings_with(tmp_path: Path, **cli: str) -> object:
    return resolve({"target": "default/app", **cli}, {}, {}, "tox.ini", tmp_path).settings


@pytest.mark.parametrize("given, seconds", [("30s", 30.0), ("1m", 60.0), ("15", 15.0)])
def test_a_scrape_interval_is_a_duration(tmp_path: Path, given: str, seconds: float) -> None:
    assert settings_with(tmp_path, **{"scrape-interval": given}).scrape_interval_s == seconds


def test_without_it_the_backend_finds_it_out(tmp_path: Path) -> None:
    assert settings_with(tmp_path).scrape_interval_s is None


def test_from_the_environment(tmp_path: Path) -> None:
    env = {"PYTEST_DARKLAUNCH_SCRAPE_INTERVAL": "1m"}
    resolved = resolve({"target": "default/app"}, env, {}, "tox.ini", tmp_path)
    assert resolved.settings.scrape_interval_s == 60.0


@pytest.mark.parametrize("given", ["0s", "fast", "2h", "500ms"])
def test_bad_scrape_intervals_are_one_line_errors(tmp_path: Path, given: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_with(tmp_path, **{"scrape-interval": given})
    message = str(info.value)
    assert "--darklaunch-scrape-interval" in message and given in message
    assert "a duration from 1s to 10m" in message and "\n" not in message

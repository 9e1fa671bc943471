"""Durations, quantities and Kubernetes names: the parsers every input source goes through."""

from __future__ import annotations

import math

import pytest

from pytest_darklaunch.core.units import (
    format_duration,
    is_dns1123_label,
    is_host,
    parse_duration,
    parse_quantity,
)

# --- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("1m", 60.0),
        ("2h", 7200.0),
        ("1.5s", 1.5),
        (" 10s ", 10.0),
        ("10 s", 10.0),
        ("10", 10.0),
        ("0.25", 0.25),
        (10, 10.0),
        (2.5, 2.5),
        ("1ms", 0.001),
    ],
)
def test_parse_duration_accepts(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad",
    [
        "0",
        "0s",
        "0ms",
        0,
        0.0,  # zero
        "-1s",
        "-5",
        -1,
        -0.5,  # negative
        "5x",
        "ten seconds",
        "",
        "   ",
        "s",
        "1d",
        "1.s",
        "1e3s",
        "10ss",
        "1m30s",  # garbage
        True,
        False,
        None,
        [10],
        {"s": 10},  # wrong types
        math.nan,
        math.inf,
        -math.inf,
    ],
)
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.5, "500ms"), (10, "10s"), (60, "1m"), (90, "90s"), (120, "2m"), (1.5, "1500ms")],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


# --- quantities --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("0.01", 0.01),
        ("50m", 0.05),
        ("500m", 0.5),
        ("100", 100.0),
        ("2k", 2000.0),
        ("2K", 2000.0),
        (" 7 ", 7.0),
        (50, 50.0),
        (0.01, 0.01),
        ("-3", -3.0),  # a lower bound may be negative; callers decide what is allowed
        (0, 0.0),
    ],
)
def test_parse_quantity_accepts(value: object, number: float) -> None:
    assert parse_quantity(value) == pytest.approx(number)


@pytest.mark.parametrize(
    "bad",
    ["", "lots", "m", "0.0.1", "1%", "nan", "inf", "-inf", True, None, [1], {"a": 1}, math.nan],
)
def test_parse_quantity_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_quantity(bad)


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["default", "sample-app", "sample-app-v2", "a", "0", "a1-b2", "x" * 63],
)
def test_dns1123_label_valid(name: str) -> None:
    assert is_dns1123_label(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Default",
        "sample_app",
        "-a",
        "a-",
        "..",
        "../x",
        "a/b",
        "a.b",
        "a b",
        "ä",
        "x" * 64,
        "a\n",
    ],
)
def test_dns1123_label_invalid(name: str) -> None:
    assert not is_dns1123_label(name)


@pytest.mark.parametrize("host", ["customdomain.com", "a", "sample-app.default.example.com"])
def test_host_valid(host: str) -> None:
    assert is_host(host)


@pytest.mark.parametrize(
    "host",
    ["", "Bad.Host", "a..b", ".a", "a.", "has space.com", "a_b.com", "x" * 254, "-a.com"],
)
def test_host_invalid(host: str) -> None:
    assert not is_host(host)

"""Parsing of durations, quantities and Kubernetes names, shared by every input source; the
one way values are printed."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
DURATION_HINT = "a positive duration such as 500ms, 10s or 1m"

# Kubernetes DNS-1123 label (namespaces, services, revisions) and subdomain (hosts). Matched
# with fullmatch: "$" alone also matches before a trailing newline.
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_HINT = (
    "a DNS-1123 label: lower-case letters, digits and '-', starting and ending alphanumeric, "
    "at most 63 characters"
)
_HOST = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
HOST_HINT = "a DNS-1123 host name such as customdomain.com"


BOOLEAN_HINT = "true or false (1/0, yes/no, on/off)"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def parse_boolean(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case, blank is false).

    >>> parse_boolean(" Yes "), parse_boolean("")
    (True, False)

    Raises ``ValueError`` for anything else.
    """
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(text)


def parse_duration(value: object) -> float:
    """Seconds in a duration: ``500ms``, ``10s``, ``1m``, ``1h`` or a bare number of seconds.

    >>> parse_duration("500ms"), parse_duration("1m"), parse_duration(10)
    (0.5, 60.0, 10.0)

    Raises ``ValueError`` for anything else, zero and negatives included.
    """
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(value)
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    else:
        raise ValueError(value)
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(value)
    return seconds


def format_value(value: float | None, units: str = "") -> str:
    """``7.075 ms``, ``1400``, ``n/a``: four significant digits, integers as integers; counts
    (``requests``, ``errors``) without their unit.

    >>> format_value(7.07512, "ms"), format_value(1400.0, "requests"), format_value(None)
    ('7.075 ms', '1400', 'n/a')
    """
    if value is None or not math.isfinite(value):
        return "n/a"
    if float(value).is_integer() and abs(value) < 1e12:
        text = str(int(value))
    elif abs(value) >= 1000:
        text = f"{value:.1f}"
    else:
        text = f"{value:.4g}"
    unit = shown_units(units)
    return f"{text} {unit}" if unit else text


def shown_units(units: str) -> str:
    """The unit printed after a value: none for counts (``requests``, ``errors``)."""
    return "" if units in ("requests", "errors") else units


def format_duration(seconds: float) -> str:
    """The shortest of ``500ms``, ``10s``, ``1m`` that states ``seconds`` exactly.

    >>> format_duration(0.5), format_duration(10), format_duration(90)
    ('500ms', '10s', '90s')
    """
    if seconds < 1 or seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{int(seconds)}s"


def parse_quantity(value: object) -> float:
    """A number, or a Kubernetes quantity string as Iter8 writes limits (``"0.01"``, ``"50m"``).

    >>> parse_quantity("0.01"), parse_quantity("500m"), parse_quantity(50)
    (0.01, 0.5, 50.0)
    """
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        scale = 1.0
        if text.endswith("m") and not text.endswith("em"):
            text, scale = text[:-1], 0.001
        elif text[-1:] in ("k", "K"):
            text, scale = text[:-1], 1000.0
        try:
            number = float(text) * scale
        except ValueError:
            raise ValueError(value) from None
    else:
        raise ValueError(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(value)
    return number


def is_dns1123_label(name: str) -> bool:
    """True for a valid Kubernetes DNS-1123 label.

    >>> is_dns1123_label("sample-app"), is_dns1123_label("Default"), is_dns1123_label("../x")
    (True, False, False)
    """
    return len(name) <= 63 and bool(_DNS1123_LABEL.fullmatch(name))


def is_host(name: str) -> bool:
    """True for a DNS-1123 subdomain usable as an HTTP host."""
    return bool(_HOST.fullmatch(name))

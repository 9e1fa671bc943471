"""The spec's ``compare:`` section (local backend), validated into :class:`Settings`.

Every bad value is the spec's usual one-line error:

>>> from pytest_darklaunch.core.spec.reader import Reader, Sources
>>> parse_compare(Reader(Sources("darklaunch.yaml")), {"responses": "body", "max_body": "1MiB"})
... # doctest: +ELLIPSIS
Settings(responses='body', body='json', ignore=(), noise=False, max_body=1048576, ...)
>>> parse_compare(Reader(Sources("darklaunch.yaml")), {"ignore": ["ts"]})
Traceback (most recent call last):
...
pytest_darklaunch.errors.ConfigError: invalid compare.ignore[0] 'ts' (from darklaunch.yaml): \
expected a JSON path starting with $ (such as $.ts or $.items[*].id) or header:NAME
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pytest_darklaunch.core.compare.model import (
    DEFAULT_ABSOLUTE_THRESHOLD,
    DEFAULT_EXAMPLES,
    DEFAULT_MAX_BODY,
    DEFAULT_RELATIVE_THRESHOLD,
    Settings,
)
from pytest_darklaunch.core.spec.reader import Reader

KEYS = ("responses", "body", "ignore", "noise", "max_body", "examples", "redact",
        "noise_relative", "noise_absolute", "baseline")
BASELINES = ("live-2", "live")
RESPONSES = ("status", "body")
BODIES = ("json", "text", "bytes")
MAX_BODY_LIMIT = 1024 * 1024  # Envoy buffers a captured body: its default buffer limit
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|kB|KB|MB)?\s*$")
_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "kB": 1000, "KB": 1000, "MB": 1000**2}
_PATH = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_-]*|\[(\d+|\*|\"[^\"]*\")\])*$")
_HEADER = re.compile(r"^header:[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
IGNORE_HINT = "a JSON path starting with $ (such as $.ts or $.items[*].id) or header:NAME"



def parse_size(value: object) -> int:
    """Bytes from ``65536``, ``"64KiB"``, ``"1MiB"``, ``"100kB"``.

    >>> parse_size("64KiB"), parse_size(100)
    (65536, 100)
    """
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value)) if isinstance(value, str) else None
    if not match:
        raise ValueError(value)
    return int(match.group(1)) * _UNITS[match.group(2)]


def _share(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, str) and value.strip().endswith("%"):
        number = float(value.strip()[:-1]) / 100
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        raise ValueError(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(value)
    return number


def _choice(r: Reader, raw: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = raw.get(key, allowed[0])
    if value not in allowed:
        raise r.fail(("compare", key), value, "one of " + ", ".join(allowed))
    return str(value)


def _strings(r: Reader, raw: Mapping[str, Any], key: str, pattern: re.Pattern[str],
             hint: str) -> tuple[str, ...]:
    value = raw.get(key) or []
    if not isinstance(value, list):
        raise r.fail(("compare", key), value, f"a list of {hint}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not pattern.match(item):
            raise r.fail(("compare", f"{key}[{i}]"), item, hint)
    return tuple(value)


def parse_compare(r: Reader, value: object) -> Settings:
    """The section's settings; a :class:`ConfigError` naming the key for a bad value."""
    if value is True:
        value = {}
    raw = r.mapping(value, ("compare",), KEYS)
    noise = raw.get("noise", False)
    if not isinstance(noise, bool):
        raise r.fail(("compare", "noise"), noise, "true or false")
    max_body = r.convert(raw.get("max_body", DEFAULT_MAX_BODY), ("compare", "max_body"),
                         parse_size, "a size such as 64KiB, at most 1MiB")
    if not 1 <= max_body <= MAX_BODY_LIMIT:
        raise r.fail(("compare", "max_body"), raw.get("max_body"),
                     "a size such as 64KiB, from 1 byte to 1MiB (larger bodies compare by hash)")
    examples = raw.get("examples", DEFAULT_EXAMPLES)
    if isinstance(examples, bool) or not isinstance(examples, int) or not 0 <= examples <= 100:
        raise r.fail(("compare", "examples"), examples, "a whole number of examples, 0..100")
    share = "a share such as 20% or 0.2, in 0..1"
    baseline = raw.get("baseline", "")
    if baseline != "" and baseline not in BASELINES:
        raise r.fail(("compare", "baseline"), baseline, "one of " + ", ".join(BASELINES))
    return Settings(
        responses=_choice(r, raw, "responses", RESPONSES),
        body=_choice(r, raw, "body", BODIES),
        ignore=_strings(r, raw, "ignore", re.compile(f"{_PATH.pattern}|{_HEADER.pattern}"),
                        IGNORE_HINT),
        noise=noise,
        max_body=max_body,
        examples=examples,
        redact=_strings(r, raw, "redact", _NAME, "a header or field name such as x-api-key"),
        relative_threshold=r.convert(raw.get("noise_relative", DEFAULT_RELATIVE_THRESHOLD),
                                     ("compare", "noise_relative"), _share, share),
        absolute_threshold=r.convert(raw.get("noise_absolute", DEFAULT_ABSOLUTE_THRESHOLD),
                                     ("compare", "noise_absolute"), _share, share),
        baseline=str(baseline),
    )

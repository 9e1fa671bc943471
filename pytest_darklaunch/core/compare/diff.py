"""Field-by-field differences between live's and dark's answers to one request.

Paths follow JSONPath's dot notation (``$.items[2].price``); a path's *field* is the same
path with array indices as ``[*]``: noise is learned per field, so that a nonce in every item
of a list is one noisy field, not one per index. Ignores match a path, its field, or any
ancestor of either (``$.meta`` ignores ``$.meta.ts``).

>>> from pytest_darklaunch.core.compare.model import Response, Settings
>>> s = Settings(responses="body", ignore=("$.ts",))
>>> live = Response(200, body=b'{"total": 17, "ts": 1, "items": [{"id": 1}]}')
>>> dark = Response(200, body=b'{"total": 18, "ts": 2, "items": [{"id": 2}]}')
>>> [(d.path, d.field, d.live, d.dark) for d in differences(live, dark, s)]
[('$.total', '$.total', '17', '18'), ('$.items[0].id', '$.items[*].id', '1', '2')]
"""

from __future__ import annotations

import json
import re
from typing import Any

from pytest_darklaunch.core.compare.model import HIDDEN, Difference, Response, Settings
from pytest_darklaunch.core.compare.redact import hide_text

MAX_DIFFERENCES_PER_PAIR = 50  # bounds the work on two unrelated documents
SHOWN_VALUE_CHARS = 80
_INDEX = re.compile(r"\[\d+\]")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_ABSENT = object()


def field_of(path: str) -> str:
    """The field a path belongs to: array indices become ``[*]``.

    >>> field_of("$.items[12].tags[0]")
    '$.items[*].tags[*]'
    """
    return _INDEX.sub("[*]", path)


def _ignored(path: str, patterns: tuple[str, ...]) -> bool:
    candidates = (path, field_of(path))
    for pattern in patterns:
        for candidate in candidates:
            if candidate == pattern or candidate.startswith((pattern + ".", pattern + "[")):
                return True
    return False


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if _IDENTIFIER.match(key) else f"{path}[{json.dumps(key)}]"


def _shown(value: Any, hidden: bool) -> str:
    if hidden:
        return HIDDEN
    if value is _ABSENT:
        return "(absent)"
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 3] + "..."


class _Walker:
    """Walks two JSON documents together, collecting differences up to a bound."""

    def __init__(self, settings: Settings) -> None:
        self.ignored = settings.ignored_paths
        self.redacted = settings.redacted
        self.found: list[Difference] = []

    def walk(self, live: Any, dark: Any, path: str, hidden: bool) -> None:
        if len(self.found) >= MAX_DIFFERENCES_PER_PAIR or _ignored(path, self.ignored):
            return
        if isinstance(live, dict) and isinstance(dark, dict):
            for key in list(live) + [k for k in dark if k not in live]:
                secret = hidden or key.lower() in self.redacted
                self.walk(live.get(key, _ABSENT), dark.get(key, _ABSENT), _child(path, key), secret)
        elif isinstance(live, list) and isinstance(dark, list):
            for index in range(max(len(live), len(dark))):
                a = live[index] if index < len(live) else _ABSENT
                b = dark[index] if index < len(dark) else _ABSENT
                self.walk(a, b, f"{path}[{index}]", hidden)
        elif type(live) is not type(dark) or live != dark:
            # type() as well: JSON's 1 and 1.0 and true are different answers.
            self.found.append(
                Difference(path, field_of(path), _shown(live, hidden), _shown(dark, hidden))
            )


def _body_summary(response: Response, settings: Settings) -> str:
    if not response.complete:
        return f"{response.length} bytes, hash {response.digest}"
    if settings.body == "bytes":
        return f"{len(response.body)} bytes, starting {response.body[:24].hex()}"
    text = hide_text(response.body.decode("utf-8", errors="replace"), settings.redacted)
    return _shown(text, False)


def _body_difference(live: Response, dark: Response, settings: Settings) -> Difference:
    return Difference("body", "body", _body_summary(live, settings), _body_summary(dark, settings))


def _body_differences(live: Response, dark: Response, settings: Settings) -> list[Difference]:
    if not (live.complete and dark.complete):
        same = live.complete == dark.complete and (live.length, live.digest) == (
            dark.length, dark.digest)
        return [] if same else [_body_difference(live, dark, settings)]
    if live.body == dark.body:
        return []  # the same bytes are the same document: nothing to parse
    if settings.body == "json":
        try:
            live_doc, dark_doc = json.loads(live.body), json.loads(dark.body)
        except ValueError:
            pass  # not both JSON: compared as text below, one field "body"
        else:
            walker = _Walker(settings)
            walker.walk(live_doc, dark_doc, "$", False)
            return walker.found
    # text and bytes are both exact; they differ in how a difference is shown
    return [] if live.body == dark.body else [_body_difference(live, dark, settings)]


def _header_values(response: Response, ignored: frozenset[str]) -> dict[str, str]:
    values: dict[str, list[str]] = {}
    for name, value in response.headers:
        key = name.lower()
        if key not in ignored:
            values.setdefault(key, []).append(value)
    return {key: ", ".join(parts) for key, parts in values.items()}


def _header_differences(live: Response, dark: Response, settings: Settings) -> list[Difference]:
    ignored = settings.ignored_headers
    a, b = _header_values(live, ignored), _header_values(dark, ignored)
    found = []
    for name in list(a) + [n for n in b if n not in a]:
        if a.get(name) != b.get(name):
            hidden = name in settings.redacted
            found.append(Difference(
                f"header:{name}", f"header:{name}",
                _shown(a.get(name, _ABSENT), hidden), _shown(b.get(name, _ABSENT), hidden),
            ))
    return found


def differences(live: Response, dark: Response, settings: Settings) -> list[Difference]:
    """What differs between two answers: ``status``, then headers, then the body's fields."""
    found = []
    if live.status != dark.status:
        found.append(Difference("status", "status", str(live.status), str(dark.status)))
    if settings.responses == "body":
        found += _header_differences(live, dark, settings)
        found += _body_differences(live, dark, settings)
    return found[:MAX_DIFFERENCES_PER_PAIR]

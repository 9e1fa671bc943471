"""One request of a traffic mix, and the rules every source of targets shares.

A :class:`Target` is what the generator sends: method, path (with its query), headers, body.
Targets come from the spec's ``traffic.targets`` list or from a recorded file (see
:mod:`~pytest_darklaunch.core.traffic.loaders`); both go through :func:`clean_headers` and
:func:`path_of`, so an imported request keeps its path and query while its scheme, host,
hop-by-hop headers and Content-Length are left to the experiment (the entry point, the mirror
host, and a length recomputed from the body).

>>> t = Target("GET /items", "GET", "/items?page=2")
>>> t.name, t.path, t.body, t.weight
('GET /items', '/items?page=2', b'', 1.0)
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import BinaryIO

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
METHODS_HINT = "one of " + ", ".join(HTTP_METHODS)
# Mirrored by default: the methods that do not change anything on the server (RFC 9110 safe).
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

# RFC 9110 7.6.1 hop-by-hop fields, plus what the experiment sets itself: Host (the mirror
# host), Content-Length (recomputed from the body), HTTP/2 pseudo-headers of browser exports.
DROPPED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "host",
    }
)
# Sent, never shown: our logs, stats and errors name these headers but withhold their values.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})

# RFC 9110 field names are tokens; values must not smuggle in CR/LF or other controls.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
HEADER_NAME_HINT = "an HTTP header name (letters, digits, '-', no spaces or ':')"
PATH_HINT = "a path starting with / (or an http(s) URL) without spaces"

Headers = tuple[tuple[str, str], ...]
# Builds the one-line error for a bad ``field`` of the entry at hand: (field, value, allowed).
Fail = Callable[[str, object, str], Exception]


@dataclass(frozen=True)
class Target:
    """One request of the mix.

    ``weight`` is its share of the mix (relative to the others); ``offset_s`` is its recorded
    time since the first request of a recording, ``None`` when the source has no times.
    """

    name: str
    method: str
    path: str
    headers: Headers = ()
    body: bytes = b""
    weight: float = 1.0
    offset_s: float | None = None


def default_name(method: str, path: str) -> str:
    """``METHOD /path``, query dropped: ``GET /items?page=2`` is named ``GET /items``."""
    return f"{method} {path.split('?', 1)[0]}"


def check_method(value: object, fail: Fail, field: str = "method") -> str:
    if not isinstance(value, str) or value.strip().upper() not in HTTP_METHODS:
        raise fail(field, value, METHODS_HINT)
    return value.strip().upper()


def path_of(value: object, fail: Fail, field: str = "path") -> str:
    """The path and query of ``value``: a path as is, an absolute URL without scheme and host.

    >>> path_of("https://shop.example.com/items?page=2#top", ValueError)
    '/items?page=2'
    """
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise fail(field, value, PATH_HINT)
    if value.startswith("/"):
        return value.split("#", 1)[0]
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise fail(field, value, PATH_HINT)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def shown_header(name: str, value: str) -> str:
    """A header value as our output may show it: secrets withheld."""
    return "(withheld)" if name.lower() in SECRET_HEADERS else value


def clean_headers(
    pairs: Iterable[tuple[object, object]], fail: Fail, field: str, keep_host: bool = False
) -> Headers:
    """Validated headers, without the ones the experiment sets (see :data:`DROPPED_HEADERS`).

    ``keep_host``: a Host written in the spec itself is meant (it replaces the mirror host); one
    in a recorded file is the recorded service's. Values are never echoed in an error: headers
    are where tokens end up.
    """
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        if not isinstance(name, str) or not isinstance(value, (str, int, float)):
            raise fail(f"{field}.{name}", "(value withheld)", "a header name with a string value")
        text = str(value)
        if name.startswith(":") or name.lower() in DROPPED_HEADERS:
            if not (keep_host and name.lower() == "host"):
                continue
        if not HEADER_NAME.match(name):
            raise fail(f"{field}.{name}", name, HEADER_NAME_HINT)
        bad = HEADER_VALUE_BAD.search(text)
        if bad:
            shown = f"control character U+{ord(bad.group()):04X} at offset {bad.start()}"
            raise fail(
                f"{field}.{name}",
                f"{shown} (value withheld)",
                "a header value without line breaks or control characters",
            )
        out.append((name, text))
    return tuple(out)


def check_weight(value: object, fail: Fail, field: str = "weight") -> float:
    allowed = "a number greater than 0"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise fail(field, value, allowed)
    try:
        weight = float(value)
    except ValueError:
        raise fail(field, value, allowed) from None
    if not 0 < weight < float("inf"):
        raise fail(field, value, allowed)
    return weight


def check_offset(value: object, fail: Fail, field: str = "time") -> float:
    allowed = "seconds since the recording started, a number >= 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(field, value, allowed)
    if not 0 <= float(value) < float("inf"):
        raise fail(field, value, allowed)
    return float(value)


def with_offsets_from_zero(targets: list[Target]) -> list[Target]:
    """Recorded offsets shifted so that the first request is at 0 (absolute times in HAR)."""
    offsets = [t.offset_s for t in targets if t.offset_s is not None]
    if not offsets:
        return targets
    first = min(offsets)
    return [
        t if t.offset_s is None else replace(t, offset_s=round(t.offset_s - first, 6))
        for t in targets
    ]


def dump_targets(targets: Iterable[Target], path: str) -> None:
    """The hand-off to the generator process: ``path`` (JSON, header pairs in order) and
    ``path.bodies`` (every body, back to back), both readable by the owner only (headers may
    carry credentials). Bodies stay binary: base64 in JSON would triple the reader's peak
    memory on a large recording.
    """
    index: list[dict[str, object]] = []
    with _private(path + ".bodies") as bodies:
        offset = 0
        for t in targets:
            bodies.write(t.body)
            index.append(
                {
                    "name": t.name,
                    "method": t.method,
                    "path": t.path,
                    "headers": [list(pair) for pair in t.headers],
                    "body": [offset, len(t.body)],
                    "weight": t.weight,
                    "offset_s": t.offset_s,
                }
            )
            offset += len(t.body)
    with _private(path) as handle:
        handle.write(json.dumps(index).encode("utf-8"))


def load_targets(path: str) -> tuple[list[Target], list[memoryview]]:
    """What :func:`dump_targets` wrote: the targets without their bodies, and the bodies as
    views into one buffer (no copy per body).

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "t.json")
    >>> dump_targets([Target("a", "PUT", "/", (("X", "1"),), b"\\0\\1", 2.0)], p)
    >>> targets, bodies = load_targets(p)
    >>> targets[0].headers, targets[0].weight, bytes(bodies[0])
    ((('X', '1'),), 2.0, b'\\x00\\x01')
    """
    with open(path, encoding="utf-8") as handle:
        index = json.load(handle)
    with open(path + ".bodies", "rb") as handle:
        blob = memoryview(handle.read())
    targets, bodies = [], []
    for d in index:
        start, length = d["body"]
        bodies.append(blob[start : start + length])
        targets.append(
            Target(
                name=str(d["name"]),
                method=str(d["method"]),
                path=str(d["path"]),
                headers=tuple((str(k), str(v)) for k, v in d["headers"]),
                weight=float(d["weight"]),
                offset_s=None if d["offset_s"] is None else float(d["offset_s"]),
            )
        )
    return targets, bodies


def _private(path: str) -> BinaryIO:
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")

"""Diverging requests as users read them: secrets hidden, bodies cut short.

Authorization, Cookie and Set-Cookie, and every name under ``redact:`` (headers, JSON keys at
any depth, query parameters, ``name=value`` and ``"name": "value"`` in text bodies) show as
``***``; bodies are cut to :data:`SHOWN_BODY_BYTES`.

>>> hide_text('{"user": "ann", "password": "hunter2"}', frozenset({"password"}))
'{"user": "ann", "password": "***"}'
>>> hide_path("/login?user=ann&token=abc", frozenset({"token"}))
'/login?user=ann&token=***'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from pytest_darklaunch.core.compare.model import HIDDEN, Difference, Pair, Response

SHOWN_BODY_BYTES = 300


def _hide_json(doc: Any, names: frozenset[str]) -> Any:
    if isinstance(doc, dict):
        return {k: HIDDEN if k.lower() in names else _hide_json(v, names) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_hide_json(item, names) for item in doc]
    return doc


def hide_text(text: str, names: frozenset[str]) -> str:
    """``text`` with the values of secret names hidden (JSON parsed when it parses)."""
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, (dict, list)):
        return json.dumps(_hide_json(doc, names), ensure_ascii=False)
    for name in names:
        quoted = re.escape(name)
        text = re.sub(rf'(?i)("{quoted}"\s*:\s*)"(?:[^"\\]|\\.)*"', rf'\1"{HIDDEN}"', text)
        text = re.sub(rf"(?i)(\b{quoted}=)[^&\s;,]*", rf"\1{HIDDEN}", text)
    return text


def hide_path(path: str, names: frozenset[str]) -> str:
    """A request path with secret query parameters hidden."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    pairs = [(k, HIDDEN if k.lower() in names else v) for k, v in parse_qsl(query, True)]
    return base + "?" + urlencode(pairs, safe="*/")


def shown_body(response: Response, names: frozenset[str]) -> str:
    """The body as shown: secrets hidden, then cut to :data:`SHOWN_BODY_BYTES`."""
    text = hide_text(response.body.decode("utf-8", errors="replace"), names)
    cut = text.encode()[:SHOWN_BODY_BYTES].decode("utf-8", errors="ignore")
    if len(cut) < len(text) or not response.complete:
        size = len(response.body) if response.complete else response.length
        cut += f"... ({size} bytes)"
    return cut


@dataclass(frozen=True)
class Example:
    """One diverging request, ready to show."""

    method: str
    path: str
    request_id: str
    live_status: int
    dark_status: int
    differences: tuple[Difference, ...]
    live_body: str
    dark_body: str

    def line(self) -> str:
        """``GET /cart id=... status 200 -> 200: $.total: 17 -> 18``"""
        fields = "; ".join(f"{d.path}: {d.live} -> {d.dark}" for d in self.differences[:5])
        more = f" (+{len(self.differences) - 5} more)" if len(self.differences) > 5 else ""
        return (
            f"{self.method} {self.path} id={self.request_id} status {self.live_status} -> "
            f"{self.dark_status}: {fields}{more}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "path": self.path, "request_id": self.request_id,
            "live_status": self.live_status, "dark_status": self.dark_status,
            "differences": [
                {"path": d.path, "field": d.field, "live": d.live, "dark": d.dark}
                for d in self.differences
            ],
            "live_body": self.live_body, "dark_body": self.dark_body,
        }


def example_of(pair: Pair, names: frozenset[str]) -> Example:
    return Example(
        method=pair.request.method,
        path=hide_path(pair.request.path, names),
        request_id=pair.request.request_id,
        live_status=pair.live.status,
        dark_status=pair.dark.status,
        differences=tuple(pair.differences),
        live_body=shown_body(pair.live, names),
        dark_body=shown_body(pair.dark, names),
    )

"""Recorded traffic files: HAR 1.2, vegeta JSON targets, vegeta http format, JSON lines.

The format follows the file's ending: ``.har``; ``.json`` / ``.jsonl`` (one JSON object a
line: vegeta's ``{"method", "url", "header", "body" (base64)}`` or ours ``{"method", "path",
"headers", "body", "time", "name", "weight"}``, told apart by ``url`` / ``path``); ``.txt``
(vegeta's http format: ``METHOD URL``, header lines, an optional ``@file`` body, a blank line
between requests). Every bad entry is one line naming the file, the entry or line, the field,
the value and what is allowed.

>>> import pathlib, tempfile
>>> p = pathlib.Path(tempfile.mkdtemp(), "t.txt")
>>> _ = p.write_text("GET http://a.example/x?q=1\\nX-A: 1\\n\\nDELETE /y\\n")
>>> [(t.method, t.path, t.headers) for t in load_targets_file(str(p), "t.txt", str(p.parent))]
[('GET', '/x?q=1', (('X-A', '1'),)), ('DELETE', '/y', ())]
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from pytest_darklaunch.core.traffic.entries import (
    RECORD_KEYS,
    check_keys,
    read_body_file,
    target_from_mapping,
)
from pytest_darklaunch.core.traffic.model import (
    HEADER_NAME,
    Fail,
    Target,
    check_method,
    clean_headers,
    default_name,
    path_of,
    with_offsets_from_zero,
)
from pytest_darklaunch.errors import ConfigError

FORMATS = {".har": "har", ".json": "jsonl", ".jsonl": "jsonl", ".txt": "http"}
FORMATS_HINT = "a file ending in .har (HAR 1.2), .json/.jsonl (JSON lines) or .txt (vegeta http)"


FileFail = Callable[[object, str], Exception]


def _file_fail(value: object, allowed: str) -> Exception:
    return ConfigError("traffic.targets_file", value, "spec", allowed)


def _failer(shown: str, where: str) -> Fail:
    def fail(field: str, value: object, allowed: str) -> Exception:
        return ConfigError(field, value, f"{shown}, {where}", allowed)

    return fail


def load_targets_file(
    path: str, shown: str, base_dir: str, fail: FileFail = _file_fail
) -> list[Target]:
    """The targets in ``path`` (``shown`` names it in errors; ``@file`` bodies of the vegeta
    http format are relative to ``base_dir``). ``fail(value, allowed)`` builds the errors about
    the file as a whole (the spec names where ``targets_file`` came from).
    """
    ending = os.path.splitext(path)[1].lower()
    if ending not in FORMATS:
        raise fail(shown, FORMATS_HINT)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise fail(shown, f"a readable UTF-8 file ({reason}: {path})") from None
    kind = FORMATS[ending]
    if kind == "har":
        targets = _har(text, shown)
    elif kind == "jsonl":
        targets = _json_lines(text, shown, base_dir)
    else:
        targets = _vegeta_http(text, shown, base_dir)
    if not targets:
        raise fail(shown, "a file with at least one request")
    return with_offsets_from_zero(targets)


def _json(text: str, shown: str, what: str, line_offset: int = 0) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"{shown}, line {exc.lineno + line_offset} column {exc.colno}"
        raise ConfigError("JSON", exc.msg, where, what) from None


def _har(text: str, shown: str) -> list[Target]:
    data = _json(text, shown, "a HAR 1.2 file: JSON with log.entries")
    log = data.get("log") if isinstance(data, dict) else None
    entries = log.get("entries") if isinstance(log, dict) else None
    if not isinstance(entries, list):
        raise ConfigError("log.entries", "missing", shown, "a HAR 1.2 file: JSON with log.entries")
    return [_har_entry(e, _failer(shown, f"entry {i}")) for i, e in enumerate(entries, 1)]


def _har_entry(entry: object, fail: Fail) -> Target:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("request"), Mapping):
        request = entry.get("request") if isinstance(entry, Mapping) else entry
        raise fail("request", request, "an entry with a request (method, url)")
    request = entry["request"]
    method = check_method(request.get("method"), fail, "request.method")
    path = path_of(request.get("url"), fail, "request.url")
    headers_raw = request.get("headers") or []
    if not isinstance(headers_raw, list) or not all(isinstance(h, Mapping) for h in headers_raw):
        raise fail("request.headers", "(withheld)", "a list of {name, value}")
    headers = clean_headers(
        ((h.get("name"), h.get("value")) for h in headers_raw), fail, "request.headers"
    )
    return Target(
        default_name(method, path),
        method,
        path,
        headers,
        _har_body(request.get("postData"), fail),
        offset_s=_har_time(entry, fail),
    )


def _har_body(post: object, fail: Fail) -> bytes:
    if post is None:
        return b""
    if not isinstance(post, Mapping) or not isinstance(post.get("text", ""), str):
        raise fail("request.postData", "(withheld)", "a mapping with the body as text")
    text: str = post.get("text", "")
    if post.get("encoding") == "base64":  # written by browsers' exports for binary bodies
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise fail("request.postData.text", text[:40], "base64 text") from None
    return text.encode("utf-8")


def _har_time(entry: Mapping[str, Any], fail: Fail) -> float | None:
    value = entry.get("startedDateTime")
    if value is None:
        return None
    allowed = "an ISO 8601 date-time with its offset, such as 2024-05-01T10:00:00.123Z"
    text = str(value)
    # fromisoformat takes "Z" and any number of fraction digits, but not a lower-case "z".
    if text.endswith("z"):
        text = text[:-1] + "Z"
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise fail("startedDateTime", value, allowed) from None
    if moment.tzinfo is None:
        raise fail("startedDateTime", value, allowed)
    return moment.timestamp()


def _json_lines(text: str, shown: str, base_dir: str) -> list[Target]:
    out: list[Target] = []
    # Not splitlines(): it also splits on U+2028 and other characters JSON strings may hold.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        record = _json(line, shown, "one JSON object a line", line_offset=number - 1)
        fail = _failer(shown, f"line {number}")
        if isinstance(record, Mapping) and "url" in record:
            out.append(_vegeta_json(record, fail))
        else:
            if isinstance(record, Mapping) and "path" not in record:
                raise fail("request", "no url or path", "an entry with a request (method, path)")
            out.append(target_from_mapping(record, fail, base_dir, RECORD_KEYS))
    return out


def _vegeta_json(record: Mapping[str, Any], fail: Fail) -> Target:
    check_keys(record, ("method", "url", "header", "body"), fail)
    method = check_method(record.get("method", "GET"), fail)
    path = path_of(record["url"], fail, "url")
    header = record.get("header") or {}
    if not isinstance(header, Mapping) or not all(isinstance(v, list) for v in header.values()):
        raise fail("header", "(withheld)", "a mapping of header names to lists of values")
    headers = clean_headers(
        ((name, value) for name, values in header.items() for value in values), fail, "header"
    )
    body = record.get("body") or ""
    try:
        data = base64.b64decode(body, validate=True) if isinstance(body, str) else None
    except (binascii.Error, ValueError):
        data = None
    if data is None:
        raise fail("body", str(body)[:40], "the body as base64 text (vegeta's JSON format)")
    return Target(default_name(method, path), method, path, headers, data)


def _vegeta_http(text: str, shown: str, base_dir: str) -> list[Target]:
    """Vegeta's http format; ``#`` lines are comments."""
    out: list[Target] = []
    block: list[tuple[int, str]] = []
    for number, raw in enumerate([*text.split("\n"), ""], 1):
        line = raw.strip()
        if line.startswith("#"):
            continue
        if line:
            block.append((number, line))
        elif block:
            out.append(_http_block(block, shown, base_dir))
            block = []
    return out


def _http_block(block: list[tuple[int, str]], shown: str, base_dir: str) -> Target:
    number, first = block[0]
    fail = _failer(shown, f"line {number}")
    method, _, url = first.partition(" ")
    method = check_method(method, fail)
    path = path_of(url.strip(), fail, "url")
    pairs: list[tuple[object, object]] = []
    body = b""
    for index, (number, line) in enumerate(block[1:], 1):
        fail = _failer(shown, f"line {number}")
        if line.startswith("@"):
            if index != len(block) - 1:
                raise fail("body", line, "an @file line after the headers, ending the request")
            body = read_body_file(line[1:].strip(), base_dir, fail, "body")
            continue
        name, sep, value = line.partition(":")
        if not sep:
            shown_name = name if HEADER_NAME.match(name) else "(line withheld)"
            raise fail(
                "header", shown_name, "a header line NAME: VALUE, an @file body or a blank line"
            )
        pairs.append((name.strip(), value.strip()))
    headers = clean_headers(pairs, _failer(shown, f"lines {block[0][0]}-{block[-1][0]}"), "header")
    return Target(default_name(method, path), method, path, headers, body)

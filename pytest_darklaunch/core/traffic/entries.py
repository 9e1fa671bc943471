"""A target from a mapping: the spec's ``traffic.targets`` entries and JSON-lines records.

Both take the same keys; a JSON-lines record may also carry its recorded ``time`` (seconds).
``fail(field, value, allowed)`` builds the error for the entry at hand, so the same checks
name ``traffic.targets[2].weight`` in a spec and ``weight (from mix.jsonl, line 3)`` in a file.

>>> t = target_from_mapping({"method": "post", "path": "/items", "body": "{}"}, _fail, ".")
>>> t.name, t.method, t.body
('POST /items', 'POST', b'{}')
"""

from __future__ import annotations

import base64
import binascii
import difflib
import os
from collections.abc import Mapping
from typing import Any

from pytest_darklaunch.core.traffic.model import (
    Fail,
    Target,
    check_method,
    check_offset,
    check_weight,
    clean_headers,
    default_name,
    path_of,
)

TARGET_KEYS = ("name", "method", "path", "weight", "headers", "body", "body_file")
RECORD_KEYS = (*TARGET_KEYS, "time", "body_base64")


def _fail(field: str, value: object, allowed: str) -> Exception:
    return ValueError(f"{field} {value!r}: expected {allowed}")


def check_keys(entry: Mapping[Any, Any], keys: tuple[str, ...], fail: Fail) -> None:
    for key in entry:
        if key not in keys:
            near = difflib.get_close_matches(str(key), keys, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise fail(str(key), "an unknown key", f"one of {', '.join(keys)}{hint}")


def read_body_file(value: object, base_dir: str, fail: Fail, field: str = "body_file") -> bytes:
    """The bytes of ``value`` (relative to ``base_dir``); a one-line error when unreadable."""
    if not isinstance(value, str) or not value.strip():
        raise fail(field, value, "the path of a readable file")
    path = os.path.join(base_dir, os.path.expanduser(value))
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise fail(field, value, f"the path of a readable file ({reason}: {path})") from None


def _body(entry: Mapping[str, object], base_dir: str, fail: Fail) -> bytes:
    given = [k for k in ("body", "body_file", "body_base64") if entry.get(k) is not None]
    if len(given) > 1:
        raise fail(given[1], "given with " + given[0], f"only one of {' or '.join(given)}")
    if not given:
        return b""
    key = given[0]
    value = entry[key]
    if key == "body_file":
        return read_body_file(value, base_dir, fail)
    if not isinstance(value, str):
        raise fail(key, value, "a string" if key == "body" else "base64 text")
    if key == "body":
        return value.encode("utf-8")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise fail(key, value[:40], "base64 text") from None


def target_from_mapping(
    entry: object, fail: Fail, base_dir: str, keys: tuple[str, ...] = TARGET_KEYS
) -> Target:
    """One target; ``keys`` are the keys allowed (:data:`RECORD_KEYS` for files)."""
    if not isinstance(entry, Mapping):
        raise fail("request", entry, "a mapping with method and path (and headers, body...)")
    check_keys(entry, keys, fail)
    if entry.get("path") is None:
        raise fail("path", None, "a request: a path starting with /")
    method = check_method(entry.get("method", "GET"), fail)
    path = path_of(entry["path"], fail)
    headers_raw = entry.get("headers") or {}
    if not isinstance(headers_raw, Mapping):
        raise fail("headers", headers_raw, "a mapping of header names to values")
    headers = clean_headers(headers_raw.items(), fail, "headers", keep_host=keys == TARGET_KEYS)
    name = entry.get("name")
    if name is None:
        name = default_name(method, path)
    elif not isinstance(name, str) or not name.strip():
        raise fail("name", name, "a non-empty string")
    time_s = entry.get("time")
    return Target(
        name=name,
        method=method,
        path=path,
        headers=headers,
        body=_body(entry, base_dir, fail),
        weight=check_weight(entry.get("weight", 1), fail),
        offset_s=None if time_s is None else check_offset(time_s, fail),
    )

"""Typed reads of the raw mapping; every failure names the field, its value and its source."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pytest_darklaunch.core.units import (
    DNS1123_HINT,
    is_dns1123_label,
)
from pytest_darklaunch.errors import ConfigError

T = TypeVar("T")
Path = tuple[str, ...]


class Sources:
    """Where each key of the raw mapping came from, for error messages.

    A key path maps to ``(field label, source label)``; unknown paths fall back to the path in
    dotted form and ``default`` source.
    """

    def __init__(self, default_source: str = "defaults") -> None:
        self.default_source = default_source
        self._by_path: dict[Path, tuple[str, str]] = {}

    def set(self, path: Path, field_label: str, source: str) -> None:
        self._by_path[path] = (field_label, source)

    def of(self, path: Path) -> tuple[str, str]:
        for end in range(len(path), 0, -1):
            found = self._by_path.get(path[:end])
            if found is not None:
                label, source = found
                return (label if end == len(path) else dotted(path), source)
        return dotted(path), self.default_source


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += part if part.startswith("[") else ("." if out else "") + part
    return out


class Reader:
    def __init__(self, sources: Sources) -> None:
        self.sources = sources

    def fail(self, path: Path, value: object, allowed: str) -> ConfigError:
        label, source = self.sources.of(path)
        return ConfigError(label, value, source, allowed)

    def mapping(self, value: object, path: Path, keys: tuple[str, ...]) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(path, value, f"a mapping with keys {', '.join(keys)}")
        for key in value:
            if key not in keys:
                near = difflib.get_close_matches(str(key), keys, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                label, source = self.sources.of(path + (str(key),))
                raise ConfigError(
                    f"key {label}", "unknown", source, f"one of {', '.join(keys)}{hint}"
                )
        return value

    def convert(self, value: object, path: Path, parse: Callable[[object], T], allowed: str) -> T:
        try:
            return parse(value)
        except (ValueError, TypeError):
            raise self.fail(path, value, allowed) from None

    def string(self, value: object, path: Path, allowed: str = "a non-empty string") -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, value, allowed)
        return value

    def name(self, value: object, path: Path) -> str:
        text = self.string(value, path, DNS1123_HINT)
        if not is_dns1123_label(text):
            raise self.fail(path, value, DNS1123_HINT)
        return text

    def number(self, value: object, path: Path, low: float, high: float, allowed: str) -> float:
        number = self.convert(value, path, to_float, allowed)
        if not low <= number <= high:
            raise self.fail(path, value, allowed)
        return number

    def str_map(self, value: object, path: Path) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(path, value, "a mapping of names to string values")
        out = {}
        for key, item in value.items():
            if (
                not isinstance(key, str)
                or not key
                or isinstance(item, (Mapping, list))
                or item is None
            ):
                raise self.fail(path + (str(key),), item, "a string value under a non-empty name")
            out[key] = str(item)
        return out


def to_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(value)
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(value)
    return number


def to_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, str):
        value = value.strip()
        if not re.fullmatch(r"\d+", value):
            raise ValueError(value)
    if isinstance(value, float) and value != int(value):
        raise ValueError(value)
    if not isinstance(value, (int, float, str)):
        raise ValueError(value)
    return int(value)

"""The spec's traffic section as a mix: the single-target form, ``targets`` or ``targets_file``.

``fail(path, value, allowed)`` builds the spec's error for a key path under ``traffic`` (the
spec reader knows where each value came from); files are read relative to ``base_dir`` (the
spec file's directory).

>>> def fail(path, value, allowed):
...     return ValueError(f"traffic.{'.'.join(path)} {value!r}: expected {allowed}")
>>> mix = build_mix({"targets": [{"path": "/a", "weight": 3}, {"path": "/b"}]}, fail, ".")
>>> [(t.name, t.weight) for t in mix.targets], mix.timing
([('GET /a', 3.0), ('GET /b', 1.0)], 'rate')
>>> build_mix({"targets": [{"path": "/a"}], "path": "/b"}, fail, ".")
Traceback (most recent call last):
ValueError: traffic.path '/b': expected either path (one target) or targets, not both
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_darklaunch.core.traffic.entries import TARGET_KEYS, check_keys, target_from_mapping
from pytest_darklaunch.core.traffic.loaders import load_targets_file
from pytest_darklaunch.core.traffic.model import HTTP_METHODS, SAFE_METHODS, Target
from pytest_darklaunch.core.traffic.schedule import TIMINGS

PathFail = Callable[[tuple[str, ...], object, str], Exception]
SINGLE_KEYS = ("path", "method", "headers", "body", "body_file")


@dataclass(frozen=True)
class Mix:
    """What the generator sends: ``targets`` and how they are timed."""

    targets: tuple[Target, ...]
    timing: str = "rate"
    speed: float = 1.0
    source: str = "path"  # "path" (single target), "targets", or the targets file as given

    @property
    def single(self) -> bool:
        return self.source == "path"


def build_mix(t: Mapping[str, Any], fail: PathFail, base_dir: str) -> Mix:
    """Validate the mix keys of ``t`` (the ``traffic`` mapping); other keys are not looked at."""
    given = [k for k in ("targets", "targets_file") if t.get(k) is not None]
    if len(given) == 2:
        raise fail(("targets_file",), t["targets_file"], "either targets or targets_file")
    single = [k for k in SINGLE_KEYS if t.get(k) is not None]
    if given and single:
        raise fail(
            (single[0],), t[single[0]], f"either {single[0]} (one target) or {given[0]}, not both"
        )
    if not given:
        source = "path"
        targets = [_single(t, fail, base_dir)]
    elif given[0] == "targets":
        source = "targets"
        targets = _inline(t["targets"], fail, base_dir)
    else:
        source = t["targets_file"]
        targets = _file(source, fail, base_dir)
    timing, speed = _timing(t, fail, targets)
    return Mix(tuple(targets), timing, speed, str(source))


def _single(t: Mapping[str, Any], fail: PathFail, base_dir: str) -> Target:
    entry = {k: t[k] for k in SINGLE_KEYS if t.get(k) is not None}
    entry.setdefault("path", "/")
    return target_from_mapping(entry, lambda f, v, a: fail((f,), v, a), base_dir)


def _inline(value: object, fail: PathFail, base_dir: str) -> list[Target]:
    if not isinstance(value, list) or not value:
        raise fail(("targets",), value, "a non-empty list of {name, method, path, weight, ...}")
    out = []
    for i, entry in enumerate(value):
        def fail_at(field: str, v: object, allowed: str, i: int = i) -> Exception:
            return fail(("targets", f"[{i}]", field), v, allowed)

        if isinstance(entry, Mapping):
            check_keys(entry, TARGET_KEYS, fail_at)
        out.append(target_from_mapping(entry, fail_at, base_dir))
    return out


def _file(value: object, fail: PathFail, base_dir: str) -> list[Target]:
    if not isinstance(value, str) or not value.strip():
        raise fail(("targets_file",), value, "the path of a .har, .json, .jsonl or .txt file")
    path = os.path.join(base_dir, os.path.expanduser(value))
    if not os.path.isfile(path):
        why = "not a file" if os.path.exists(path) else "No such file or directory"
        raise fail(("targets_file",), value, f"the path of a readable file ({why}: {path})")
    return load_targets_file(
        path, value, os.path.dirname(path), lambda v, a: fail(("targets_file",), v, a)
    )


def _timing(t: Mapping[str, Any], fail: PathFail, targets: list[Target]) -> tuple[str, float]:
    timing = t.get("timing", "rate")
    if timing not in TIMINGS:
        raise fail(("timing",), timing, "one of " + ", ".join(TIMINGS))
    speed_raw = t.get("speed", 1.0)
    allowed = "a speed factor greater than 0, such as 1.0 or 2"
    if isinstance(speed_raw, bool) or not isinstance(speed_raw, (int, float)):
        raise fail(("speed",), speed_raw, allowed)
    speed = float(speed_raw)
    if not 0 < speed < float("inf"):
        raise fail(("speed",), speed_raw, allowed)
    if timing == "recorded":
        untimed = next((i for i, target in enumerate(targets) if target.offset_s is None), None)
        if untimed is not None:
            where = t.get("targets_file") or "targets"
            raise fail(
                ("timing",),
                timing,
                f"rate: request {untimed + 1} of {where} has no recorded time (HAR "
                "startedDateTime, or \"time\" in JSON lines)",
            )
    return str(timing), speed


def mirror_methods(value: object, fail: PathFail) -> tuple[str, ...]:
    """``mirror.methods``: a list of methods, or ``all``; default GET, HEAD, OPTIONS.

    ``fail`` takes a path under ``mirror``.
    """
    allowed = f"all, or a list of methods among {', '.join(HTTP_METHODS)}"
    if value is None:
        return SAFE_METHODS
    if isinstance(value, str) and value.strip().lower() == "all":
        return HTTP_METHODS
    items = value if isinstance(value, list) else [value] if isinstance(value, str) else None
    if not items:
        raise fail(("methods",), value, allowed)
    methods: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or item.strip().upper() not in HTTP_METHODS:
            raise fail(("methods", f"[{i}]"), item, allowed)
        if item.strip().upper() not in methods:
            methods.append(item.strip().upper())
    return tuple(m for m in HTTP_METHODS if m in methods)


def traffic_command(t: Mapping[str, Any], fail: PathFail, base_dir: str) -> tuple[str, ...] | None:
    """``traffic.command``: an argv list or a shell-like string whose program exists now.

    It sends its own requests, so it excludes the built-in generator's targets.
    """
    value = t.get("command")
    if value is None:
        return None
    allowed = "an argv list or a command string, its program on PATH or a path to it"
    if isinstance(value, str):
        try:
            argv = tuple(shlex.split(value))
        except ValueError:
            raise fail(("command",), value, allowed) from None
    elif isinstance(value, list) and all(isinstance(a, (str, int, float)) for a in value):
        argv = tuple(str(a) for a in value)
    else:
        raise fail(("command",), value, allowed)
    if not argv:
        raise fail(("command",), value, allowed)
    for key in ("targets", "targets_file", "body", "body_file"):
        if t.get(key) is not None:
            raise fail((key,), t[key], "no targets with traffic.command: it sends its own requests")
    program = argv[0]
    found = shutil.which(os.path.join(base_dir, program) if os.sep in program else program)
    if found is None:
        where = "not executable or missing" if os.sep in program else "not found on PATH"
        raise fail(("command",), program, f"{allowed} ({program!r} {where})")
    return argv

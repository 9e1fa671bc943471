"""Reading spec files: YAML whose errors name the file and line, and a deep merge that records
where every key it sets came from (so an error can name the file a bad value was written in)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_darklaunch.core.spec import Sources, dotted
from pytest_darklaunch.errors import ConfigError


def load_yaml(path: str, label: str, source: str) -> Any:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(label, path, source, "an existing YAML file") from None
    except IsADirectoryError:
        raise ConfigError(label, path, source, "a YAML file, not a directory") from None
    except OSError as exc:
        raise ConfigError(label, path, source, f"a readable YAML file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            label, path, source, f"a UTF-8 YAML file (undecodable byte at offset {exc.start})"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "?"
        problem = getattr(exc, "problem", None) or "malformed"
        raise ConfigError("YAML", f"{problem} at {where}", path, "well-formed YAML") from None


def merge_sourced(
    into: dict[str, Any],
    data: Mapping[str, Any],
    path: tuple[str, ...],
    sources: Sources,
    source: str,
    fields: Mapping[tuple[str, ...], str],
) -> None:
    """Deep-merge ``data`` into ``into``, recording the source of every key it sets."""
    for key, value in data.items():
        key_path = path + (str(key),)
        sources.set(key_path, fields.get(key_path, dotted(key_path)), source)
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            merge_sourced(into[key], value, key_path, sources, source, fields)
        elif isinstance(value, Mapping):
            into[key] = {}
            merge_sourced(into[key], value, key_path, sources, source, fields)
        else:
            into[key] = value
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, Mapping):
                        for sub in item:
                            p = key_path + (f"[{i}]", str(sub))
                            sources.set(p, fields.get(p, dotted(p)), source)

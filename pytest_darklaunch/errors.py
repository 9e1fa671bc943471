"""The one error hierarchy of pytest-darklaunch.

Every error a user reads is one line: what failed, the value, where it came from and what to
do next. An objective that is breached is an ``AssertionError``, not one of these.
"""

from __future__ import annotations


class DarklaunchError(Exception):
    """Base of every error raised by pytest-darklaunch."""


class ConfigError(DarklaunchError):
    """A bad option, environment variable, ini value, spec file or Iter8 file.

    >>> str(ConfigError("--darklaunch-interval", "5x", "tox.ini", "a duration such as 10s or 1m"))
    "invalid --darklaunch-interval '5x' (from tox.ini): expected a duration such as 10s or 1m"
    """

    def __init__(self, field: str, value: object, source: str, allowed: str) -> None:
        self.field = field
        self.value = value
        self.source = source
        self.allowed = allowed
        shown = repr(value) if isinstance(value, str) else str(value)
        super().__init__(f"invalid {field} {shown} (from {source}): expected {allowed}")


class ProvisioningError(DarklaunchError):
    """The app, the mirroring, the generator or Prometheus could not be brought up or torn down."""


class MetricsError(DarklaunchError):
    """Prometheus could not be queried, or answered with an error.

    The message names the URL, the query and the response; credentials are never part of it.
    """

    def __init__(self, message: str, *, url: str = "", query: str = "", response: str = "") -> None:
        self.url = url
        self.query = query
        self.response = response
        parts = [message]
        if url:
            parts.append(f"url={url}")
        if query:
            parts.append(f"query={query!r}")
        if response:
            parts.append(f"response={response[:300]!r}")
        super().__init__("; ".join(parts))

"""Credentials from the environment, and keeping them out of every message.

Only the environment holds them (never the URL or an option), and nothing this module builds
shows one: the auth objects' reprs, :class:`Redactor` and :func:`redact_url` replace them with
:data:`HIDDEN`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.auth import AuthBase, HTTPBasicAuth

from pytest_darklaunch.core.redaction import HIDDEN
from pytest_darklaunch.core.units import parse_boolean
from pytest_darklaunch.errors import ConfigError

ENV_TOKEN = "PYTEST_DARKLAUNCH_PROMETHEUS_TOKEN"


ENV_USER = "PYTEST_DARKLAUNCH_PROMETHEUS_USER"


ENV_PASSWORD = "PYTEST_DARKLAUNCH_PROMETHEUS_PASSWORD"


ENV_INSECURE = "PYTEST_DARKLAUNCH_PROMETHEUS_INSECURE"


# Extra request headers, for Prometheus-compatible endpoints that want them (X-Scope-OrgID for
# Mimir, Cortex and Thanos' receive/query frontends): "Name: value" entries separated by
# newlines or ";". Their values are treated as secrets (a tenant id can be one).
ENV_HEADERS = "PYTEST_DARKLAUNCH_PROMETHEUS_HEADERS"
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers the client sets itself, or that would change where or how the request goes.
_RESERVED = frozenset({"authorization", "host", "content-type", "content-length", "accept"})


class _BearerAuth(AuthBase):
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(***)"


class Redactor:
    """Replaces known secrets in text; its repr shows none of them."""

    def __init__(self, *secrets: str) -> None:
        self._secrets = tuple(s for s in secrets if s)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, HIDDEN)
        return text

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secrets)"

    def extended(self, *secrets: str) -> Redactor:
        """A redactor for these secrets too."""
        return Redactor(*self._secrets, *secrets)


class _NoAuth(AuthBase):
    """Sends no credentials, and keeps requests from reading ~/.netrc behind our back."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


def redact_url(url: str) -> str:
    """The URL with any ``user:password@`` replaced, fit for messages.

    >>> redact_url("https://admin:s3cret@prom.example:9090/prom")
    'https://***@prom.example:9090/prom'
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{HIDDEN}@{host}"))


class _WithHeaders(AuthBase):
    """Another auth plus extra headers; its repr names the headers, never their values."""

    def __init__(self, inner: AuthBase, headers: Mapping[str, str]) -> None:
        self._inner = inner
        self._headers = dict(headers)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.update(self._headers)
        return self._inner(request)

    def __repr__(self) -> str:
        return f"_WithHeaders({self._inner!r}, {', '.join(self._headers)}: {HIDDEN})"


def headers_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """The extra headers of :data:`ENV_HEADERS`; a one-line ConfigError naming the bad entry
    by its header name only.

    >>> headers_from_env({ENV_HEADERS: "X-Scope-OrgID: team-a; X-Extra:1"})
    {'X-Scope-OrgID': 'team-a', 'X-Extra': '1'}
    """
    out: dict[str, str] = {}
    for entry in re.split(r"[;\n]", env.get(ENV_HEADERS, "")):
        if not entry.strip():
            continue
        name, sep, value = entry.partition(":")
        name = name.strip()
        shown = name if _HEADER_NAME.match(name) else HIDDEN
        if not sep or not _HEADER_NAME.match(name) or not value.strip():
            raise ConfigError(
                ENV_HEADERS, f"{shown}: {HIDDEN}", "the environment",
                "'Name: value' entries separated by ';' or newlines, "
                "such as 'X-Scope-OrgID: tenant-a'",
            )
        if name.lower() in _RESERVED:
            raise ConfigError(
                ENV_HEADERS, f"{name}: {HIDDEN}", "the environment",
                f"a header other than {', '.join(sorted(_RESERVED))} "
                f"(credentials go in {ENV_TOKEN}, or {ENV_USER} and {ENV_PASSWORD})",
            )
        out[name] = value.strip()
    return out


def auth_from_env(env: Mapping[str, str]) -> tuple[AuthBase, str, Redactor]:
    """(auth, kind, redactor) from the environment, extra headers (:data:`ENV_HEADERS`)
    included; ConfigError for a conflicting setup.

    Errors are raised before any credential is bound to a local variable, so a traceback
    that shows locals shows none.
    """
    auth, kind, redactor = _credentials_from_env(env)
    headers = headers_from_env(env)
    if not headers:
        return auth, kind, redactor
    return _WithHeaders(auth, headers), kind, redactor.extended(*headers.values())


def _credentials_from_env(env: Mapping[str, str]) -> tuple[AuthBase, str, Redactor]:
    has_token, has_user, has_password = (
        bool(env.get(n)) for n in (ENV_TOKEN, ENV_USER, ENV_PASSWORD)
    )
    if has_token and (has_user or has_password):
        raise ConfigError(
            ENV_TOKEN,
            HIDDEN,
            "the environment",
            f"either a bearer token or {ENV_USER} and {ENV_PASSWORD}, not both",
        )
    if has_user != has_password:
        raise ConfigError(
            ENV_PASSWORD if has_user else ENV_USER,
            "",
            "the environment",
            f"a value: basic auth needs both {ENV_USER} and {ENV_PASSWORD}",
        )
    if has_token:
        return _BearerAuth(env[ENV_TOKEN]), "bearer", Redactor(env[ENV_TOKEN])
    if has_user:
        pair = base64.b64encode(f"{env[ENV_USER]}:{env[ENV_PASSWORD]}".encode()).decode()
        redactor = Redactor(env[ENV_PASSWORD], pair)
        return HTTPBasicAuth(env[ENV_USER], env[ENV_PASSWORD]), "basic", redactor
    return _NoAuth(), "none", Redactor()


def env_flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "")
    try:
        return parse_boolean(raw)
    except ValueError:
        pass
    raise ConfigError(name, raw, "the environment", "1 to turn TLS verification off, or 0")

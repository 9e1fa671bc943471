"""Credentials from the environment, and keeping them out of every message.

Only the environment holds them (never the URL or an option), and nothing this module builds
shows one: the auth objects' reprs, :class:`Redactor` and :func:`redact_url` replace them with
:data:`HIDDEN`.
"""

from __future__ import annotations

import base64
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


def auth_from_env(env: Mapping[str, str]) -> tuple[AuthBase, str, Redactor]:
    """(auth, kind, redactor) from the environment; ConfigError for a conflicting setup.

    Errors are raised before any credential is bound to a local variable, so a traceback
    that shows locals shows none.
    """
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

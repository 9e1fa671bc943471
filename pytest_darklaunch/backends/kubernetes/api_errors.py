"""What a failed Kubernetes API call means: retry it, or tell the user in one line.

409, 429 and 5xx answers and broken connections are transient (:func:`is_transient`); the rest
become a :class:`ProvisioningError` a user can act on (:func:`translate`), e.g. for a 403::

    forbidden: cannot patch virtualservices.networking.istio.io in namespace default; grant it
    (see examples/kubernetes/rbac.yaml)

The ``kubernetes`` package and urllib3 are imported inside functions only.
"""

from __future__ import annotations

import json
import re

from pytest_darklaunch.errors import ProvisioningError

RBAC_HINT = "grant it (see examples/kubernetes/rbac.yaml)"
TRANSIENT_STATUS = frozenset({409, 429, 500, 502, 503, 504})
_RBAC_DENIAL = re.compile(r'cannot (\w+) resource "')


def transport_errors() -> tuple[type[BaseException], ...]:
    """The exceptions an API call fails with: the API server's answer, or no answer at all."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    return (ApiException, HTTPError, ConnectionError)


def status_of(exc: BaseException) -> int | None:
    """The HTTP status the API server answered with, ``None`` when there was no answer."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """Whether the same call may succeed when retried: a 409/429/5xx or a connection error."""
    import urllib3

    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError)):
        return True
    return status_of(exc) in TRANSIENT_STATUS


def server_message(exc: BaseException) -> str:
    """The ``message`` of the Status object the API server answered with, else the reason."""
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body:
        try:
            message = json.loads(body).get("message")
        except (ValueError, AttributeError):
            message = None
        return str(message or body[:300])
    return str(getattr(exc, "reason", None) or exc)


def translate(exc: BaseException, verb: str, what: str, namespace: str | None) -> ProvisioningError:
    """A one-line :class:`ProvisioningError` for a failed API call.

    >>> class Denied(Exception):
    ...     status, body = 403, '{"message": "User \\\\"ci\\\\" cannot patch resource"}'
    >>> print(translate(Denied(), "patch", "jobs.batch", "default"))
    ... # doctest: +NORMALIZE_WHITESPACE
    forbidden: cannot patch jobs.batch in namespace default; grant it
    (see examples/kubernetes/rbac.yaml) (API server: User "ci" cannot patch resource)
    """
    where = f" in namespace {namespace}" if namespace else ""
    status = status_of(exc)
    detail = server_message(exc)
    if status == 403:
        # RBAC says which verb was missing: an apply that creates also needs "create".
        denied = _RBAC_DENIAL.search(detail)
        if denied:
            verb = denied.group(1)
        return ProvisioningError(
            f"forbidden: cannot {verb} {what}{where}; {RBAC_HINT} (API server: {detail})"
        )
    if status == 401:
        return ProvisioningError(
            f"unauthorized: the API server refused the credentials to {verb} {what}{where}; "
            "check the kubeconfig context (--darklaunch-kube-context)"
        )
    if status:
        return ProvisioningError(f"cannot {verb} {what}{where}: HTTP {status}: {detail}")
    return ProvisioningError(f"cannot {verb} {what}{where}: cannot reach the API server: {exc}")

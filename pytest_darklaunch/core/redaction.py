"""What stands in for a credential in anything we print or write, and which names look like one.

Light on purpose (no ``requests``): the Prometheus client and the reports both use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

HIDDEN = "***"
SENSITIVE = re.compile(
    r"auth|cookie|token|secret|passw|api[-_]?key|credential|session", re.IGNORECASE
)


def hide_sensitive(values: Mapping[str, str]) -> dict[str, str]:
    """``values`` with the secret-looking keys' values replaced by :data:`HIDDEN`.

    >>> hide_sensitive({"Authorization": "Bearer x", "Accept": "text/plain"})
    {'Authorization': '***', 'Accept': 'text/plain'}
    """
    return {k: HIDDEN if SENSITIVE.search(k) else v for k, v in values.items()}


def hide_query(path: str) -> str:
    """``path`` with the values of secret-looking query parameters replaced by :data:`HIDDEN`.

    >>> hide_query("/items?api_key=abc&page=2")
    '/items?api_key=***&page=2'
    """
    base, sep, query = path.partition("?")
    if not sep:
        return path
    pairs = [p.partition("=") for p in query.split("&")]
    shown = (k + eq + (HIDDEN if eq and SENSITIVE.search(k) else v) for k, eq, v in pairs)
    return f"{base}?{'&'.join(shown)}"

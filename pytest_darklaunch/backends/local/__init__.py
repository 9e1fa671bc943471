"""The local backend: the experiment on this machine, with the same mechanics as Istio.

Live and dark run as processes (the bundled sample app unless the spec gives commands), a real
Envoy routes every request to live and mirrors a share to dark, a real Prometheus scrapes
Envoy every second, and an open-loop generator sends the traffic. See :class:`LocalBackend`.
"""

from __future__ import annotations

from pytest_darklaunch.backends.local.stack import LocalBackend

__all__ = ["LocalBackend"]

"""Hooks for users' own comparison rules (GitHub Scientist's ``compare`` and ``clean``).

Implement them in a ``conftest.py``; both are ``firstresult``: the first implementation that
returns something other than ``None`` wins. They run for every paired request while the
experiment goes on (in a background thread of the pytest process), so keep them quick and
free of side effects::

    # conftest.py
    import json
    from dataclasses import replace

    def pytest_darklaunch_clean(response):
        # ignore the server's clock in every answer before anything is compared
        body = json.loads(response.body or b"{}")
        body.pop("served_at", None)
        return replace(response, body=json.dumps(body).encode())

    def pytest_darklaunch_compare(request, live, dark):
        if request.path.startswith("/search"):
            # a search may rank equal scores in any order: compare as sets
            return sorted(json.loads(live.body)) == sorted(json.loads(dark.body))
        return None  # the default comparison

``request`` is a :class:`pytest_darklaunch.core.compare.Request` (``method``, ``path``,
``request_id``), ``live`` and ``dark`` are :class:`~pytest_darklaunch.core.compare.Response`
(``status``, ``headers``, ``body`` as bytes; bodies over ``compare.max_body`` hold their first
bytes only, ``complete`` is false).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_darklaunch.core.compare import Clean, Decide, Request, Response


@pytest.hookspec(firstresult=True)
def pytest_darklaunch_compare(request: Request, live: Response, dark: Response) -> bool | None:
    """Decide whether dark's answer to ``request`` is the same as live's: ``True`` (same: no
    mismatch of any kind for this request), ``False`` (different: a mismatch, its fields
    listed when the default comparison finds any) or ``None`` (the default comparison)."""


@pytest.hookspec(firstresult=True)
def pytest_darklaunch_clean(response: Response) -> Response | None:
    """Return a normalised copy of ``response`` (for example without a volatile field) to
    compare instead of it, or ``None`` to compare it as captured. Called for live's, dark's
    and live-2's answers alike."""


class _Rule:
    """One hook as the plain callable the comparer takes; :meth:`applies` says whether any
    plugin or conftest.py implements it (the comparer skips decoding answers that are the same
    bytes when no user's rule would see them)."""

    def __init__(self, caller: Any) -> None:
        self._caller = caller

    def applies(self) -> bool:
        return bool(self._caller.get_hookimpls())


class _Decide(_Rule):
    def __call__(self, request: Request, live: Response, dark: Response) -> bool | None:
        result = self._caller(request=request, live=live, dark=dark)
        return None if result is None else bool(result)


class _Clean(_Rule):
    def __call__(self, response: Response) -> Response | None:
        result: Response | None = self._caller(response=response)
        return result


def comparison_callables(config: pytest.Config) -> tuple[Decide, Clean]:
    """The two hooks as the plain callables the comparer takes. They look the hooks up on each
    call: a conftest.py below the rootdir is loaded only during collection, after the
    experiment has started."""
    hook = config.hook
    return _Decide(hook.pytest_darklaunch_compare), _Clean(hook.pytest_darklaunch_clean)

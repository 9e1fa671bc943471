"""Per-request comparison of dark's answers with live's (pure: no I/O, no pytest).

:mod:`model` holds the values, :mod:`diff` finds differing fields, :mod:`fields` tells noise
from regressions (Diffy's rule), :mod:`redact` makes examples safe to show, :mod:`latency`
keeps paired durations, and :class:`Comparer` ties them together.
"""

from __future__ import annotations

from pytest_darklaunch.core.compare.comparer import Clean, Comparer, Decide, Summary
from pytest_darklaunch.core.compare.model import Request, Response, Settings

__all__ = ["Clean", "Comparer", "Decide", "Request", "Response", "Settings", "Summary"]

"""Verdicts: pass, fail or inconclusive, with the reason, from exact windows.

Every estimate carries a confidence interval: binomial for rates, order statistics mapped
through the histogram buckets for percentiles (so bucket interpolation error is inside it), a
bucket-based standard error for means. An objective passes only when the whole interval lies
within its bounds and fails only when the whole interval lies outside; otherwise the experiment
goes on, and at its end the objective is inconclusive. Repeated looks are paid for with a
Bonferroni split of ``1 - confidence`` over the planned intervals, except for upper bounds on
``error-rate`` and on percentiles, which an exact group-sequential test on a count decides
(errors; observations above the bound), with Pocock-type alpha-spending over the planned
sampling time: it keeps the same guarantee and needs far fewer samples.

:mod:`.model` holds the values, :mod:`.judge` decides, :mod:`.sequential` runs the exact
sequential test.
"""

from __future__ import annotations

from pytest_darklaunch.core.verdict.judge import (
    MIN_RATE_SHARE,
    judge,
    precheck,
)
from pytest_darklaunch.core.verdict.model import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    UNDECIDED,
    Context,
    Estimate,
    IntervalPoint,
    Verdict,
    bounds_text,
    estimate,
)
from pytest_darklaunch.core.verdict.sequential import (
    judge_sequentially,
)

__all__ = [
    "Context",
    "Estimate",
    "FAIL",
    "INCONCLUSIVE",
    "IntervalPoint",
    "MIN_RATE_SHARE",
    "PASS",
    "UNDECIDED",
    "Verdict",
    "bounds_text",
    "estimate",
    "judge",
    "judge_sequentially",
    "precheck",
]

"""The statistics behind verdicts: binomial bounds, histogram quantiles and their errors, looks.

Pure functions on plain numbers, standard library only (normal quantiles come from
:class:`statistics.NormalDist`). Every interval is *two-sided* at the given confidence, so each
of its ends errs with probability at most ``(1 - confidence) / 2``; a one-sided decision at 95%
(``error-rate <= 1%``) therefore uses a two-sided interval at 90%. Three subjects, one module
each: :mod:`.intervals` (binomial bounds and :func:`decide`), :mod:`.histograms` (quantiles
and means from Prometheus buckets) and :mod:`.boundaries` (several looks at one test).

>>> lo, hi = binomial_interval(0, 300, 0.90)
>>> decide(lo, hi, upper=0.01)
'pass'
"""

from __future__ import annotations

from pytest_darklaunch.core.stats.boundaries import (
    RateBoundary,
    bonferroni_alpha,
    pocock_spending,
    sequential_rate_boundaries,
)
from pytest_darklaunch.core.stats.histograms import (
    Buckets,
    count_above,
    histogram_mean_interval,
    histogram_quantile,
    quantile_bucket,
    quantile_interval,
)
from pytest_darklaunch.core.stats.intervals import (
    Decision,
    binomial_interval,
    decide,
    min_samples_for_upper,
    mirror_share_check,
)

__all__ = [
    "Buckets",
    "Decision",
    "RateBoundary",
    "binomial_interval",
    "bonferroni_alpha",
    "count_above",
    "decide",
    "histogram_mean_interval",
    "histogram_quantile",
    "min_samples_for_upper",
    "mirror_share_check",
    "pocock_spending",
    "quantile_bucket",
    "quantile_interval",
    "sequential_rate_boundaries",
]

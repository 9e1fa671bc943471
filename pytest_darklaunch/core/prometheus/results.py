"""What an instant query returns: samples, with empty, NaN and a value kept apart."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pytest_darklaunch.errors import MetricsError


@dataclass(frozen=True)
class Sample:
    """One series of an instant query: its labels and its value (NaN and ±Inf kept as such)."""

    labels: Mapping[str, str] = field(hash=False)
    value: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))


@dataclass(frozen=True)
class QueryResult:
    """The answer to an instant query evaluated at ``at`` (unix seconds).

    >>> result = QueryResult("up", 1.7e9, "vector", (Sample({"job": "envoy"}, 1.0),))
    >>> result.is_empty, result.scalar(), result.by_label("job")
    (False, 1.0, {'envoy': 1.0})
    """

    query: str
    at: float
    result_type: str
    samples: tuple[Sample, ...]
    warnings: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        """No series matched: *no data*, which is not the same as a value of 0 or NaN."""
        return not self.samples

    def scalar(self) -> float | None:
        """The single value, ``None`` when empty; NaN stays NaN. Several series: MetricsError.

        >>> QueryResult("x", 0.0, "vector", ()).scalar() is None
        True
        """
        if not self.samples:
            return None
        if len(self.samples) > 1:
            shown = ", ".join(_show_labels(s.labels) for s in self.samples[:5])
            raise MetricsError(
                f"expected one series, got {len(self.samples)} ({shown}); aggregate the query "
                "(e.g. sum(...)) or narrow its selector",
                query=self.query,
            )
        return self.samples[0].value

    def by_label(self, name: str) -> dict[str, float]:
        """Values keyed by one label (missing label: ``""``); a repeated key is a MetricsError.

        >>> QueryResult("x", 0.0, "vector", (Sample({"code": "2xx"}, 9.0),
        ...     Sample({"code": "5xx"}, 1.0))).by_label("code")
        {'2xx': 9.0, '5xx': 1.0}
        """
        values: dict[str, float] = {}
        for sample in self.samples:
            key = sample.labels.get(name, "")
            if key in values:
                raise MetricsError(
                    f"several series have {name}={key!r}; aggregate the query with "
                    f"sum by ({name}) (...)",
                    query=self.query,
                )
            values[key] = sample.value
        return values


def _show_labels(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"

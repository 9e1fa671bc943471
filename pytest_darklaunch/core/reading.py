"""What the experiment loop reads at each look: a snapshot per window key, windows between two.

A window key is a role (``live``, ``dark``: all of its traffic), a role on a route
(``dark~detail``), or ``eligible`` (live's requests of the mirrored methods, when only some
methods are mirrored). Without routes each role is read with its own four queries; with routes
every role and route is read with four grouped queries (see
:class:`~pytest_darklaunch.core.sampler.GroupedSnapshotReader`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from pytest_darklaunch.core.metrics import SOURCES, render_template, uses_route
from pytest_darklaunch.core.routes import KEY_SEPARATOR, split_key
from pytest_darklaunch.core.sampler import (
    GroupedSnapshotReader,
    Snapshot,
    SnapshotReader,
    Window,
    window_between,
)
from pytest_darklaunch.core.spec import ROLES, Spec

if TYPE_CHECKING:
    from pytest_darklaunch.core.prometheus import PrometheusClient

# Labels of live's mirror-eligible requests, when the backend counts them apart.
ELIGIBLE = "eligible"


class LookReader:
    """Reads every window key's snapshot and builds its windows, custom metrics included."""

    def __init__(
        self,
        spec: Spec,
        source: str,
        labels: Mapping[str, Mapping[str, str]],
        client: PrometheusClient,
        template_values: Mapping[str, Mapping[str, str]],
    ) -> None:
        self.spec = spec
        self.client = client
        self.template_values = template_values
        base = SOURCES[source]
        # Every role, and every role on every route (``dark~detail``): each its own windows.
        windows = [*ROLES, *(k for k in labels if k not in (*ROLES, ELIGIBLE))]
        self.readers = {r: SnapshotReader(client, base, labels[r]) for r in ROLES}
        if ELIGIBLE in labels:
            # Live's mirror-eligible requests (only some methods mirrored): see judge().
            self.readers[ELIGIBLE] = SnapshotReader(
                client, SOURCES[f"{source}-eligible"], labels[ELIGIBLE]
            )
        self.grouped = (
            GroupedSnapshotReader(client, base, {k: labels[k] for k in windows})
            if len(windows) > len(ROLES)
            else None
        )
        # Every window key read at each look: roles, routes, and live's eligible requests.
        self.keys = [*windows, *([ELIGIBLE] if ELIGIBLE in self.readers else [])]

    def snapshots(self, at: float) -> dict[str, Snapshot]:
        if self.grouped is None:
            return {r: reader.read(at) for r, reader in self.readers.items()}
        out = self.grouped.read(at)
        if ELIGIBLE in self.readers:
            out[ELIGIBLE] = self.readers[ELIGIBLE].read(at)
        return out

    def window(
        self, key: str, first: Snapshot, last: Snapshot, start: float | None = None
    ) -> Window:
        """``key``'s window between two snapshots, with the custom metrics from ``start``
        (default: the first snapshot); live's eligible requests carry no custom metrics."""
        source = self.readers[ELIGIBLE if key == ELIGIBLE else "live"].source
        window = window_between(first, last, self.spec.errors, source)
        if key == ELIGIBLE:
            return window
        return self._custom(window, key, first.at if start is None else start)

    def _custom(self, window: Window, key: str, start: float) -> Window:
        role, route = split_key(key)
        # A template without $route would give every route the aggregate's value.
        metrics = [m for m in self.spec.metrics if route is None or uses_route(m.query)]
        if not metrics:
            return window
        values: dict[str, float | None] = {}
        for metric in metrics:
            fill = dict(self.template_values.get(key, self.template_values.get(role, {})))
            fill["route"] = route or ""
            spec_route = self.spec.route(route) if route is not None else None
            if spec_route is not None and "cluster" in fill:
                fill["cluster"] = f"{fill['cluster']}{KEY_SEPARATOR}{spec_route.slug}"
            fill.update(
                window=f"{max(1, round(window.end - start))}s",
                start=f"{start:.3f}",
                end=f"{window.end:.3f}",
            )
            query = render_template(metric.query, fill)
            values[metric.name] = self.client.query(query, window.end).scalar()
        return replace(window, custom=values)

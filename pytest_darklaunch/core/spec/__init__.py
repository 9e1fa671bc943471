"""The experiment spec: frozen, typed objects built from a plain mapping.

The mapping comes from ``darklaunch.yaml``, an imported Iter8 Experiment and option overrides;
:func:`build_spec` validates it and names, for each bad value, the field and where it came from.
:mod:`.model` holds the frozen objects, :mod:`.reader` the typed reads that know each key's
source, :mod:`.build` the sections and :mod:`.objectives` the objectives (also built alone, by
``assert_objective``).

>>> spec = build_spec({"target": "default/sample-app"}, Sources("darklaunch.yaml"))
>>> spec.target.namespace, spec.versions.dark.revision, spec.mirror.percent
('default', 'sample-app-v2', 40.0)
"""

from __future__ import annotations

from pytest_darklaunch.core.spec.build import (
    PLACEHOLDER_EXAMPLE,
    TARGET_HINT,
    TOP_KEYS,
    VERSION_KEYS,
    build_spec,
    check_for_kubernetes,
    parse_target,
)
from pytest_darklaunch.core.spec.model import (
    ERROR_CLASSES,
    HTTP_METHODS,
    JUDGE_MODES,
    ROLES,
    Duration,
    Increase,
    MetricDef,
    Mirror,
    Objective,
    Route,
    Spec,
    Target,
    Traffic,
    Version,
    Versions,
)
from pytest_darklaunch.core.spec.objectives import (
    OBJECTIVE_KEYS,
    known_metrics_hint,
    objective_from_mapping,
    objective_ids,
    parse_increase,
    parse_objectives,
)
from pytest_darklaunch.core.spec.reader import (
    Path,
    Reader,
    Sources,
    dotted,
)

__all__ = [
    "ROLES",
    "Duration",
    "ERROR_CLASSES",
    "HTTP_METHODS",
    "Increase",
    "JUDGE_MODES",
    "MetricDef",
    "Mirror",
    "OBJECTIVE_KEYS",
    "Objective",
    "Route",
    "PLACEHOLDER_EXAMPLE",
    "Path",
    "Reader",
    "Sources",
    "Spec",
    "TARGET_HINT",
    "TOP_KEYS",
    "Target",
    "Traffic",
    "VERSION_KEYS",
    "Version",
    "Versions",
    "build_spec",
    "check_for_kubernetes",
    "dotted",
    "known_metrics_hint",
    "objective_from_mapping",
    "objective_ids",
    "parse_increase",
    "parse_objectives",
    "parse_target",
]

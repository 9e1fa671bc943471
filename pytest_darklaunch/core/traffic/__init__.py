"""Traffic mixes: the targets model and the loaders of recorded traffic files."""

from __future__ import annotations

from pytest_darklaunch.core.traffic.entries import target_from_mapping
from pytest_darklaunch.core.traffic.loaders import load_targets_file
from pytest_darklaunch.core.traffic.model import (
    HTTP_METHODS,
    SAFE_METHODS,
    Target,
    default_name,
)

__all__ = [
    "HTTP_METHODS",
    "SAFE_METHODS",
    "Target",
    "default_name",
    "load_targets_file",
    "target_from_mapping",
]

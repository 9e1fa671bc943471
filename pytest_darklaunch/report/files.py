"""The report files of a run: SVG charts, the JSON report and the GitHub job summary, as
configured. What was written, or could not be, is returned as :class:`Outputs` for the terminal
summary (the plugin keeps it in ``config.stash[OUTPUTS]`` between the two hooks)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from pytest_darklaunch.report.assessment import final_verdicts, objective_files

if TYPE_CHECKING:
    from pytest_darklaunch.session import DarklaunchSession


@dataclass
class Outputs:
    """The files written (``(label, what)``) and those that could not be (one message each)."""

    written: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# Declared with its type: the key's type lives here, and runstate imports nothing of report/.
OUTPUTS = pytest.StashKey[Outputs]()


def write_reports(darklaunch: DarklaunchSession) -> Outputs:
    """Plots, the JSON report and the GitHub step summary, as configured."""
    from pytest_darklaunch.report.github import markdown_summary
    from pytest_darklaunch.report.json_report import report_document

    settings = darklaunch.resolved.settings
    verdicts = final_verdicts(darklaunch)
    outputs = Outputs()
    plots: dict[str, str] = {}
    if settings.plots:
        from pytest_darklaunch.report.plots import write_plots

        try:
            plots = write_plots(settings.plots, darklaunch, verdicts)
            outputs.written.append(("plots", f"{len(plots)} SVG charts in {settings.plots}"))
        except OSError as exc:
            outputs.errors.append(f"could not write the plots to {settings.plots}: {exc}")
    if settings.report:
        path = settings.report
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(report_document(darklaunch, plots), fh, indent=2, allow_nan=False)
            outputs.written.append(("report", path))
        except OSError as exc:
            outputs.errors.append(f"could not write the JSON report to {path}: {exc}")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        labels = {ident: obj.label for ident, obj in objective_files(darklaunch.spec)}
        charts = [(labels.get(k, k), p) for k, p in plots.items()]
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(markdown_summary(darklaunch, verdicts, charts))
            outputs.written.append(("job summary", f"appended to {summary}"))
        except OSError as exc:
            outputs.errors.append(f"could not append to GITHUB_STEP_SUMMARY {summary}: {exc}")
    return outputs

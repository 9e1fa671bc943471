"""The darklaunch assessment inside pytest-html's report, through its documented hooks.

The plugin registers :class:`HtmlHooks` only when pytest-html is installed and the run has an
experiment (pytest refuses implementations of hooks nobody declared), so without pytest-html
this module is never imported. pytest-html calls ``pytest_html_results_summary`` at the end of
the session, when the experiment is stopped; the section goes after its own summary, before the
results table: the overview, the objective and metrics assessment, the mirror check, the
generator, and one chart per objective, inline (the same SVG as ``--darklaunch-plots``), so a
self-contained report stays self-contained.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from pytest_darklaunch.core.units import format_value as fmt
from pytest_darklaunch.core.verdict import Verdict
from pytest_darklaunch.report.assessment import (
    final_verdicts,
    generator_facts,
    limit_text,
    metric_rows,
    mirror_facts,
    mirror_sentence,
    run_error,
    shown_values,
    summary_counts,
)
from pytest_darklaunch.report.plots import objective_charts

if TYPE_CHECKING:
    from pytest_darklaunch.session import DarklaunchSession

# Scoped to the section: pytest-html's own styles are left alone.
STYLE = """
#darklaunch { margin: 1em 0 2em; }
#darklaunch table { border-collapse: collapse; margin: 0.5em 0 1em; }
#darklaunch th, #darklaunch td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; }
#darklaunch td.num { text-align: right; font-variant-numeric: tabular-nums; }
#darklaunch .pass { color: #1a7f37; font-weight: bold; }
#darklaunch .fail { color: #c0392b; font-weight: bold; }
#darklaunch .inconclusive { color: #9a6700; font-weight: bold; }
#darklaunch .error { color: #c0392b; }
#darklaunch td { color: #222; }
#darklaunch figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
#darklaunch figure svg { width: 600px; height: auto; }
#darklaunch figcaption { color: #555; }
"""


class HtmlHooks:
    """pytest-html's hooks for one run's experiment (registered by the plugin)."""

    def __init__(self, darklaunch: DarklaunchSession) -> None:
        self.darklaunch = darklaunch

    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: Any
    ) -> None:
        if self.darklaunch.started:
            # pytest-html calls this from its own sessionfinish, maybe before the plugin's:
            # the session is over either way, so the experiment is too (as the plugin does).
            self.darklaunch.stop_experiment()
            postfix.append(assessment_html(self.darklaunch))


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], css: str, numeric: Sequence[int] = ()
) -> str:
    """A table of already escaped cells; ``numeric`` columns are right-aligned."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _objectives(darklaunch: DarklaunchSession, verdicts: Sequence[Verdict]) -> str:
    rows = []
    for v in verdicts:
        units = darklaunch.spec.units_of(v.objective.metric)
        dark, live = shown_values(v, darklaunch.data)
        rows.append(
            [
                escape(v.objective.metric),
                escape(limit_text(v.objective, units)),
                escape(fmt(dark, units)),
                escape(fmt(live, units)),
                str(v.samples),
                f'<span class="{escape(v.outcome)}">{escape(v.outcome.upper())}</span>',
                escape(v.reason),
            ]
        )
    headers = ["Objective", "Limit", "Dark", "Live", "Samples", "Outcome", "Reason"]
    return _table(headers, rows, "darklaunch-objectives", (2, 3, 4))


def _metrics(darklaunch: DarklaunchSession) -> str:
    rows = [
        [
            escape(r.metric),
            escape(fmt(r.dark.value)),
            escape(fmt(r.live.value)),
            escape(r.change),
            escape(r.units or "-"),
            f"{r.dark.samples} / {r.live.samples}",
        ]
        for r in metric_rows(darklaunch.spec, darklaunch.data)
    ]
    if not rows:
        return "<p>no interval was completed</p>"
    headers = ["Metric", "Dark", "Live", "Dark vs live", "Units", "Samples (dark / live)"]
    return _table(headers, rows, "darklaunch-metrics", (1, 2, 3, 5))


def _mirror_and_generator(darklaunch: DarklaunchSession) -> str:
    mirror = mirror_sentence(mirror_facts(darklaunch.spec, darklaunch.data))
    g = generator_facts(darklaunch.spec, darklaunch.data)
    if not g["generated"]:
        generator = "not generated by this run (provision none): live's own traffic is mirrored"
    elif g["sent"] is None:
        generator = f"target {g['target_rps']:g} requests/s; no generator counters"
    else:
        generator = (
            f"target {g['target_rps']:g} requests/s, achieved "
            f"{fmt(g['achieved_rps'], 'requests/s')}; sent {g['sent']}, errors {g['errors']}, "
            f"late {g['late']}"
        )
    return (
        f'<h3>Mirror check</h3><p class="darklaunch-mirror">{escape(mirror)}</p>'
        f'<h3>Generator</h3><p class="darklaunch-generator">{escape(generator)}</p>'
    )


def _charts(darklaunch: DarklaunchSession, verdicts: Sequence[Verdict]) -> str:
    figures = []
    charts = objective_charts(darklaunch, verdicts)  # in the order of the spec's objectives
    for (ident, svg), obj in zip(charts, darklaunch.spec.objectives, strict=True):
        label = obj.label
        inline = svg.split("?>", 1)[1] if svg.startswith("<?xml") else svg
        figures.append(
            f'<figure class="darklaunch-chart" data-objective="{escape(ident)}">{inline}'
            f"<figcaption>{escape(label)}: dark and live per interval, the limit dashed"
            "</figcaption></figure>"
        )
    return "".join(figures)


def assessment_html(darklaunch: DarklaunchSession) -> str:
    """The section: a headline, the overview, the assessment tables and the charts."""
    spec, data = darklaunch.spec, darklaunch.data
    verdicts = final_verdicts(darklaunch)
    done = f"{len(data.intervals)} of {data.planned}" if data else "0"
    overview = (
        f"target {spec.target}; backend {darklaunch.resolved.settings.backend}; live "
        f"{spec.versions.live.revision}, dark {spec.versions.dark.revision}; mirror "
        f"{spec.mirror.percent:g}%; {spec.traffic.rate_rps:g} requests/s; {done} intervals of "
        f"{spec.duration.interval_s:g} s"
    )
    error = run_error(darklaunch)
    parts = [
        f"<style>{STYLE}</style>",
        '<section id="darklaunch">',
        f"<h2>darklaunch: {escape(summary_counts(verdicts))}</h2>",
        f'<p class="darklaunch-overview">{escape(overview)}</p>',
        f'<p class="error">Error: {escape(error)}</p>' if error else "",
        "<h3>Objective assessment</h3>",
        _objectives(darklaunch, verdicts),
        "<h3>Metrics assessment (cumulative window)</h3>",
        _metrics(darklaunch),
        _mirror_and_generator(darklaunch),
        "<h3>Charts</h3>",
        _charts(darklaunch, verdicts),
        "</section>",
    ]
    return "".join(parts)

"""The comparison as users read it: the terminal's "Response comparison" section, the JSON
report's ``comparison`` section and the lines a failed comparison objective adds.

>>> from pytest_darklaunch.core.compare import Comparer, Request, Response, Settings
>>> c = Comparer(Settings(responses="body"))
>>> _ = c.add(Request("r1", "GET", "/cart"), Response(200, body=b'{"total": 17}'),
...           Response(200, body=b'{"total": 18}'))
>>> print("\\n".join(terminal_lines(c.summary(), Settings(responses="body"))))
Response comparison
  compared: status and body, json; no noise learned
  paired 1, unpaired 0; status mismatches 0 (0.00%); response mismatches 1 (100.00%)
  field     live vs dark   live vs live-2   counted
  $.total   1 (100.00%)    -                counted
  examples:
    GET /cart id=r1 status 200 -> 200: $.total: 17 -> 18
"""

from __future__ import annotations

from typing import Any

from pytest_darklaunch.core.compare.comparer import Summary
from pytest_darklaunch.core.compare.model import Settings

SHOWN_FIELDS = 20


def _share(count: int, total: int | None) -> str:
    return f"{count} ({count / total:.2%})" if total else f"{count}"


def _compared(settings: Settings, summary: Summary) -> str:
    what = "status codes" if settings.responses == "status" else f"status and body, {settings.body}"
    if summary.noise_requests is None:
        noise = "no noise learned"
    else:
        noise = f"noise learned from live-2 on {summary.noise_requests} requests"
    return f"  compared: {what}; {noise}"


def _latency_line(summary: Summary) -> str | None:
    lat = summary.latency.as_dict()
    paired, unpaired = lat["paired"], lat["unpaired"]
    assert isinstance(paired, dict) and isinstance(unpaired, dict)
    if not summary.latency.pairs:
        return None

    def rel(value: object) -> str:
        return "n/a" if not isinstance(value, float) else f"{value:+.1%}"

    return (
        f"  latency, dark vs live: paired over {summary.latency.pairs} requests mean "
        f"{rel(paired['mean_increase'])}, p95 {rel(paired['p95_increase'])}; unpaired "
        f"(every entry) mean {rel(unpaired['mean_increase'])}, p95 "
        f"{rel(unpaired['p95_increase'])}"
    )


def terminal_lines(summary: Summary, settings: Settings) -> list[str]:
    """The terminal summary's section (the caller wraps lines to its width)."""
    n = summary.paired
    lines = [
        "Response comparison",
        _compared(settings, summary),
        f"  paired {n}, unpaired {summary.unpaired}; status mismatches "
        f"{_share(summary.status_mismatches, n)}; response mismatches "
        f"{_share(summary.response_mismatches, n)}",
    ]
    if summary.fields:
        rows = [("field", "live vs dark", "live vs live-2", "counted")]
        for row in summary.fields[:SHOWN_FIELDS]:
            noise = "-" if row.noise is None else _share(row.noise, summary.noise_requests)
            rows.append((row.field, _share(row.raw, n), noise,
                         "counted" if row.counted else "noise"))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines += [
            "  " + "   ".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:3])) + "   " + r[3]
            for r in rows
        ]
        if len(summary.fields) > SHOWN_FIELDS:
            more = len(summary.fields) - SHOWN_FIELDS
            lines.append(f"  ... {more} more fields in the JSON report")
    if len(summary.targets) > 1:
        for key, counts in sorted(summary.targets.items(), key=lambda kv: -kv[1]["paired"]):
            lines.append(
                f"  {key}: paired {counts['paired']}, status mismatches "
                f"{_share(counts['status_mismatches'], counts['paired'])}, response mismatches "
                f"{_share(counts['response_mismatches'], counts['paired'])}"
            )
    latency = _latency_line(summary)
    if latency:
        lines.append(latency)
    if summary.examples:
        lines.append("  examples:")
        lines += [f"    {example.line()}" for example in summary.examples]
    return lines


def failure_lines(summary: Summary, metric: str) -> list[str]:
    """What a failed ``status-mismatch-rate`` or ``response-mismatch-rate`` objective adds:
    the diverging requests (for status, only those whose status differs)."""
    examples = summary.examples
    if metric == "status-mismatch-rate":
        examples = [e for e in examples if e.live_status != e.dark_status]
    lines = [f"diverging requests ({len(examples)} of {summary.paired} paired shown):"]
    for example in examples:
        lines.append(f"  {example.line()}")
        lines.append(f"    live body: {example.live_body}")
        lines.append(f"    dark body: {example.dark_body}")
    return lines


def report_section(summary: Summary, settings: Settings) -> dict[str, Any]:
    """The JSON report's ``comparison``: the settings, then the summary's keys."""
    return {
        "settings": {
            "responses": settings.responses, "body": settings.body,
            "ignore": list(settings.ignore), "noise": settings.noise,
            "max_body": settings.max_body, "examples": settings.examples,
            "relative_threshold": settings.relative_threshold,
            "absolute_threshold": settings.absolute_threshold,
            "baseline": summary.latency.baseline,
        },
        **summary.as_dict(),
    }

"""The comparer: pairs in, bounded counts out (mismatches, fields, examples, latencies).

Pure and single-threaded: the caller feeds it pairs (the local backend's log reader does, under
its lock) and asks for a :class:`Summary` whenever it wants one. Users' rules arrive as plain
callables (``decide``, ``clean``), so the pytest layer can pass its hooks in without the core
knowing pytest.

>>> from pytest_darklaunch.core.compare.model import Request, Response, Settings
>>> c = Comparer(Settings(responses="body"))
>>> r = Request("id-1", "GET", "/cart")
>>> _ = c.add(r, Response(200, body=b'{"total": 17}'), Response(200, body=b'{"total": 18}'))
>>> s = c.summary()
>>> s.paired, s.response_mismatches, s.examples[0].line()
(1, 1, 'GET /cart id=id-1 status 200 -> 200: $.total: 17 -> 18')
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_darklaunch.core.compare.diff import differences
from pytest_darklaunch.core.compare.fields import FieldRow, FieldTable
from pytest_darklaunch.core.compare.latency import PairedLatency
from pytest_darklaunch.core.compare.model import (
    LIVE2,
    Difference,
    Pair,
    Request,
    Response,
    Settings,
)
from pytest_darklaunch.core.compare.redact import Example, example_of

Decide = Callable[[Request, Response, Response], "bool | None"]
Clean = Callable[[Response], "Response | None"]

HOOK_FIELD = "hook:pytest_darklaunch_compare"
MAX_SIGNATURES = 2000  # distinct sets of differing fields; beyond, a pair counts as a mismatch
MAX_TARGETS = 100  # requests counted apart (by method and path); the rest under OTHER_TARGET
MAX_TARGET_SIGNATURES = 50
OTHER_TARGET = "(other requests)"
EXAMPLES_PER_FIELD = 3


@dataclass
class Summary:
    """The comparison so far; what verdicts and reports read."""

    paired: int
    unpaired: int
    status_mismatches: int
    response_mismatches: int
    noise_requests: int | None
    fields: list[FieldRow]
    examples: list[Example]
    latency: PairedLatency
    hook_decisions: dict[str, int] = field(default_factory=dict)
    # "METHOD /path" (query dropped) -> paired, status_mismatches, response_mismatches
    targets: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def counted_fields(self) -> list[str]:
        return [row.field for row in self.fields if row.counted]

    def to_json(self) -> dict[str, Any]:
        """Everything, JSON-able and read back by :meth:`from_json` (for xdist's workers)."""
        return {**self.as_dict(), "latency": self.latency.paired_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Summary:
        return cls(
            paired=data["paired"], unpaired=data["unpaired"],
            status_mismatches=data["status_mismatches"],
            response_mismatches=data["response_mismatches"],
            noise_requests=data["noise_requests"],
            fields=[FieldRow(r["field"], r["live_vs_dark"], r["live_vs_dark_share"],
                             r["live_vs_live"], r["live_vs_live_share"], r["counted"])
                    for r in data["fields"]],
            examples=[Example(
                e["method"], e["path"], e["request_id"], e["live_status"], e["dark_status"],
                tuple(Difference(d["path"], d["field"], d["live"], d["dark"])
                      for d in e["differences"]),
                e["live_body"], e["dark_body"]) for e in data["examples"]],
            latency=PairedLatency.from_paired_json(data["latency"]),
            hook_decisions=dict(data.get("hook_decisions", {})),
            targets={k: dict(v) for k, v in data.get("targets", {}).items()},
        )

    def as_dict(self) -> dict[str, Any]:
        """The report's view (latencies as milliseconds, paired beside unpaired)."""
        return {
            "paired": self.paired, "unpaired": self.unpaired,
            "status_mismatches": self.status_mismatches,
            "response_mismatches": self.response_mismatches,
            "noise_requests": self.noise_requests,
            "fields": [row.as_dict() for row in self.fields],
            "examples": [example.as_dict() for example in self.examples],
            "latency": self.latency.as_dict(),
            "hook_decisions": dict(self.hook_decisions),
            "targets": {k: dict(v) for k, v in self.targets.items()},
        }


def _applies(rule: object) -> bool:
    applies = getattr(rule, "applies", None)
    return rule is not None and (applies is None or bool(applies()))


class Comparer:
    """Compares each pair, counts per field, keeps a reservoir of examples per field."""

    def __init__(
        self, settings: Settings, *, decide: Decide | None = None, clean: Clean | None = None,
        seed: int = 0,
    ) -> None:
        self.settings = settings
        self.decide = decide
        self.clean = clean
        self.paired = 0
        self.unpaired = 0
        self.noise_requests = 0
        self.table = FieldTable()
        self.signatures: dict[frozenset[str], int] = {}
        self.overflow = 0  # pairs whose signature did not fit: always counted as mismatches
        self.latency = PairedLatency(baseline=settings.baseline or "live")
        self.hook_decisions = {"same": 0, "different": 0}
        self._examples: dict[str, tuple[int, list[Example]]] = {}
        # per request: [paired, signature counts, overflowed pairs]
        self._targets: dict[str, tuple[list[int], dict[frozenset[str], int]]] = {}
        self._rng = random.Random(seed)

    def _add_latency(
        self, live_us: int | None, dark_us: int | None, live2_us: int | None
    ) -> None:
        """Dark's duration paired with the baseline's: live-2's when it is the baseline (a
        request live-2 did not answer in time is left out), else live's."""
        if dark_us is None or live_us is None:
            return
        if self.latency.baseline != LIVE2:
            self.latency.add_pair(live_us, dark_us)
        elif live2_us is not None:
            self.latency.add_pair(live2_us, dark_us, primary_us=live_us)

    def _cleaned(self, response: Response) -> Response:
        if self.clean is None:
            return response
        cleaned = self.clean(response)
        return response if cleaned is None else cleaned

    def _differences(self, request: Request, a: Response, b: Response) -> list[Difference]:
        if self.decide is not None:
            decision = self.decide(request, a, b)
            if decision is True:
                self.hook_decisions["same"] += 1
                return []
            if decision is False:
                self.hook_decisions["different"] += 1
                found = differences(a, b, self.settings)
                return found or [Difference(HOOK_FIELD, HOOK_FIELD, "same", "different")]
        return differences(a, b, self.settings)

    def entry(self, role: str, duration_us: float | None) -> None:
        """Any upstream entry, paired or not: the unpaired latency comparison."""
        if duration_us is not None:
            self.latency.add_entry(role, duration_us)

    def add_unpaired(self, count: int = 1) -> None:
        self.unpaired += count

    def add(
        self, request: Request, live: Response, dark: Response, live2: Response | None = None
    ) -> Pair:
        """Compare one request's answers; ``live2`` (live's twin) teaches the noise when noise
        is learned, and is the latency baseline when the settings say so."""
        self._add_latency(live.duration_us, dark.duration_us,
                          live2.duration_us if live2 is not None else None)
        live, dark = self._cleaned(live), self._cleaned(dark)
        pair = Pair(request, live, dark, live2, self._differences(request, live, dark))
        self.paired += 1
        self.table.add_raw({d.field for d in pair.differences})
        raw = {self.table.known(d.field) for d in pair.differences}
        if live2 is not None and self.settings.noise:
            self.noise_requests += 1
            self.table.add_noise({d.field for d in self._differences(
                request, live, self._cleaned(live2))})
        self._count_target(request, frozenset(raw))
        if raw:
            self._count_signature(frozenset(raw))
            self._keep_example(pair, raw)
        return pair

    @property
    def has_rules(self) -> bool:
        """Whether users' rules (``decide``, ``clean``) see pairs now: a rule with an
        ``applies()`` method answers for itself (the pytest hooks', which a conftest.py loaded
        after the run started may implement)."""
        return _applies(self.decide) or _applies(self.clean)

    def add_identical(
        self, request: Request, live_us: int | None, dark_us: int | None,
        live2_us: int | None = None, *, live2: bool = False,
    ) -> None:
        """A pair known to be the same answer twice (the same status and the same captured
        headers and body, byte for byte), counted as :meth:`add` counts it without decoding
        or comparing anything; ``live2``: live-2 answered the same too. Only without users'
        rules (see :attr:`has_rules`), which may tell apart what the bytes do not."""
        self._add_latency(live_us, dark_us, live2_us)
        self.paired += 1
        if live2 and self.settings.noise:
            self.noise_requests += 1
        self._count_target(request, frozenset())

    def _count_target(self, request: Request, raw: frozenset[str]) -> None:
        key = f"{request.method} {request.path.partition('?')[0]}"
        if key not in self._targets and len(self._targets) >= MAX_TARGETS:
            key = OTHER_TARGET
        counts, signatures = self._targets.setdefault(key, ([0, 0], {}))
        counts[0] += 1
        if not raw:
            return
        if raw in signatures or len(signatures) < MAX_TARGET_SIGNATURES:
            signatures[raw] = signatures.get(raw, 0) + 1
        else:
            counts[1] += 1  # overflowed: counted as a mismatch

    def _target_counts(self, counted: set[str]) -> dict[str, dict[str, int]]:
        out = {}
        for key, (counts, signatures) in self._targets.items():
            out[key] = {
                "paired": counts[0],
                "status_mismatches": sum(n for sig, n in signatures.items() if "status" in sig),
                "response_mismatches": counts[1] + sum(
                    n for sig, n in signatures.items() if sig & counted),
            }
        return out

    def _count_signature(self, raw: frozenset[str]) -> None:
        if raw in self.signatures or len(self.signatures) < MAX_SIGNATURES:
            self.signatures[raw] = self.signatures.get(raw, 0) + 1
        else:
            self.overflow += 1

    def _keep_example(self, pair: Pair, raw: set[str]) -> None:
        """Reservoir sampling per field (as many fields as the table keeps), cut and redacted
        now so that a kept example holds a few hundred bytes, not two bodies."""
        example: Example | None = None
        for name in raw:
            seen, kept = self._examples.get(name, (0, []))
            seen += 1
            slot = len(kept) if len(kept) < EXAMPLES_PER_FIELD else self._rng.randrange(seen)
            if slot < EXAMPLES_PER_FIELD:
                example = example or example_of(pair, self.settings.redacted)
                if slot == len(kept):
                    kept.append(example)
                else:
                    kept[slot] = example
            self._examples[name] = (seen, kept)

    def summary(self) -> Summary:
        noise = self.noise_requests if self.settings.noise else None
        rows = self.table.rows(
            paired=self.paired, noise_requests=noise,
            relative=self.settings.relative_threshold, absolute=self.settings.absolute_threshold,
        )
        counted = {row.field for row in rows if row.counted}
        mismatches = self.overflow + sum(
            n for signature, n in self.signatures.items() if signature & counted)
        status = sum(n for signature, n in self.signatures.items() if "status" in signature)
        return Summary(
            paired=self.paired, unpaired=self.unpaired,
            status_mismatches=status, response_mismatches=mismatches,
            noise_requests=noise, fields=rows, examples=self._chosen(rows, counted),
            latency=copy.deepcopy(self.latency), hook_decisions=dict(self.hook_decisions),
            targets=self._target_counts(counted),
        )

    def _chosen(self, rows: list[FieldRow], counted: set[str]) -> list[Example]:
        """Up to ``examples`` diverging requests, from the most frequent counted fields first,
        each shown with only its counted differences."""
        chosen: list[Example] = []
        ids: set[str] = set()
        for _round in range(EXAMPLES_PER_FIELD):
            for row in rows:
                kept = self._examples.get(row.field, (0, []))[1]
                if row.field not in counted or _round >= len(kept):
                    continue
                example = kept[_round]
                if example.request_id in ids or len(chosen) >= self.settings.examples:
                    continue
                ids.add(example.request_id)
                shown = tuple(d for d in example.differences if d.field in counted)
                chosen.append(replace(example, differences=shown))
        return chosen

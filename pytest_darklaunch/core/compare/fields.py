"""Per-field difference counts and Diffy's rule for telling a regression from noise.

Diffy sends each request to a primary, a secondary (the same code) and a candidate. A field
whose primary-vs-candidate differences ("raw") are not clearly more frequent than its
primary-vs-secondary differences ("noise") is noise: a timestamp, a nonce, an order that
varies. Clearly means both margins: relative ``(raw - noise) / (raw + noise)`` and absolute
``(raw - noise) / requests`` (here with rates, since raw and noise may be counted over
slightly different numbers of requests).

>>> counted(raw_rate=0.03, noise_rate=0.0, relative=0.2, absolute=0.0003)
True
>>> counted(raw_rate=0.50, noise_rate=0.49, relative=0.2, absolute=0.0003)
False
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_FIELDS = 500  # distinct fields tracked; any further one is counted under OTHER_FIELD
OTHER_FIELD = "(other fields)"
ALWAYS_COUNTED = frozenset({"status"})  # a different status is never noise


def counted(*, raw_rate: float, noise_rate: float, relative: float, absolute: float) -> bool:
    """Whether a field's live-vs-dark differences count, given its live-vs-live rate."""
    # Only more differences than live-vs-live count: a dark steadier than live is no regression.
    gap = raw_rate - noise_rate
    if gap <= 0:
        return False
    return gap / (raw_rate + noise_rate) > relative and gap > absolute


@dataclass(frozen=True)
class FieldRow:
    """One row of the fields table."""

    field: str
    raw: int  # paired requests where live and dark differ on the field
    raw_share: float
    noise: int | None  # requests where live and live-2 differ on it (None: no noise learned)
    noise_share: float | None
    counted: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "field": self.field, "live_vs_dark": self.raw, "live_vs_dark_share": self.raw_share,
            "live_vs_live": self.noise, "live_vs_live_share": self.noise_share,
            "counted": self.counted,
        }


class FieldTable:
    """Counts of differing requests per field, for live-vs-dark and live-vs-live-2."""

    def __init__(self) -> None:
        self.raw: dict[str, int] = {}
        self.noise: dict[str, int] = {}

    def _key(self, field: str) -> str:
        if field in self.raw or field in self.noise or len(self.raw) + len(self.noise) < MAX_FIELDS:
            return field
        return OTHER_FIELD

    def known(self, field: str) -> str:
        """The name the table counts ``field`` under (once it has been added)."""
        return field if field in self.raw or field in self.noise else OTHER_FIELD

    def add_raw(self, fields: set[str]) -> None:
        for field in fields:
            key = self._key(field)
            self.raw[key] = self.raw.get(key, 0) + 1

    def add_noise(self, fields: set[str]) -> None:
        for field in fields:
            key = self._key(field)
            self.noise[key] = self.noise.get(key, 0) + 1

    def rows(
        self, *, paired: int, noise_requests: int | None, relative: float, absolute: float
    ) -> list[FieldRow]:
        """Every field seen, most frequent raw difference first."""
        out = []
        for field in sorted(set(self.raw) | set(self.noise), key=lambda f: -self.raw.get(f, 0)):
            raw = self.raw.get(field, 0)
            raw_share = raw / paired if paired else 0.0
            if noise_requests is None:
                out.append(FieldRow(field, raw, raw_share, None, None, raw > 0))
                continue
            noise = self.noise.get(field, 0)
            noise_share = noise / noise_requests if noise_requests else 0.0
            is_counted = raw > 0 and (
                field in ALWAYS_COUNTED or counted(
                    raw_rate=raw_share, noise_rate=noise_share,
                    relative=relative, absolute=absolute,
                )
            )
            out.append(FieldRow(field, raw, raw_share, noise, noise_share, is_counted))
        return out

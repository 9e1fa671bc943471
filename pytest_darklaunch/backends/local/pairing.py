"""Pairing: the upstream log read while the run goes on, live's and dark's entries joined.

Each line of the log (see :mod:`~pytest_darklaunch.backends.local.capture`) is one upstream
answer. Entries with the same request id are joined: live with dark (compared), and live with
``live-2`` when it runs (noise, or the latency baseline). An id waits at most ``timeout_s`` for
its partners (every upstream request ends within the route timeout, and the log is flushed
every 100 ms); then what arrived is compared, and a dark or live-2 entry without live's, or
live's entry without dark's, is counted as ``unpaired``. Live's entries of a route that
mirrors nothing (its name says so) are the requests that were not mirrored: settled at once,
counted as ``not_mirrored``; every other route copies each of its requests. Memory stays
bounded: the pending ids are those of the last ``timeout_s`` (and at most
``max_pending``), everything else is counts.

>>> from pytest_darklaunch.core.compare import Comparer, Settings
>>> c = Comparer(Settings())
>>> j = Joiner(c, live2=False, timeout_s=5.0)
>>> j.feed('{"id": "a", "cluster": "live", "status": 200, "us": 900}', now=0.0)
>>> j.feed('{"id": "a", "cluster": "dark", "status": 500, "us": 1200}', now=0.1)
>>> j.feed('{"id": "b", "cluster": "dark", "status": 200, "us": 800}', now=0.2)
>>> j.feed('{"id": "c", "cluster": "live", "status": 200, "us": 700, "route": "r"}', now=0.3)
>>> j.feed('{"id": "d", "cluster": "live", "status": 200, "route": "r~unmirrored"}', now=0.4)
>>> j.expire(now=10.0)
>>> s = c.summary(); s.paired, s.status_mismatches, s.unpaired, j.counts["not_mirrored"]
(1, 1, 2, 1)
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pytest_darklaunch.backends.local.capture import LIVE2, not_mirrored
from pytest_darklaunch.core.compare import Comparer, Request, Response, Summary
from pytest_darklaunch.core.compare.model import UNCAPTURED

MAX_PENDING = 200_000
POLL_S = 0.05  # how often the follower looks for new lines (the log flushes every 100 ms)


class Entry:
    """One upstream answer as logged, kept as read: its capture is decoded only when a
    comparison needs it (answers captured identically are the same without decoding)."""

    __slots__ = ("request_id", "method", "path", "authority", "status", "duration_us",
                 "capture", "route")

    def __init__(
        self, request_id: str, method: str, path: str, authority: str, status: int,
        duration_us: int | None, capture: str | None, route: str = "",
    ) -> None:
        self.request_id, self.method, self.path, self.authority = (
            request_id, method, path, authority)
        self.status, self.duration_us, self.capture = status, duration_us, capture
        self.route = route  # the route's name on live's entries (copies' entries have none)

    @property
    def request(self) -> Request:
        return Request(self.request_id, self.method, self.path, self.authority)

    @property
    def response(self) -> Response:
        """The decoded answer; ValueError when the capture is unreadable."""
        return decode_capture(self.status, self.capture, self.duration_us)

    def same_answer(self, other: Entry) -> bool:
        """Whether both captured the same status, headers and body, byte for byte."""
        return self.status == other.status and self.capture == other.capture


def _decode_headers(text: str) -> tuple[tuple[str, str], ...]:
    raw = base64.b64decode(text).decode("utf-8", errors="replace")
    items = raw.split("\n")
    return tuple((items[i], items[i + 1]) for i in range(0, len(items) - 1, 2)
                 if not items[i].startswith(":"))


def decode_capture(status: int, capture: str | None, duration_us: int | None) -> Response:
    """A :class:`Response` from the log's status, capture header value and duration."""
    if not capture or capture == "-":
        return Response(status, duration_us=duration_us)
    try:
        version, length, kind, headers, payload = capture.split(";", 4)
        if version != "v1":
            raise ValueError(f"capture version {version!r}")
        if kind == "u":
            return Response(status, _decode_headers(headers), b"", int(length), UNCAPTURED,
                            complete=False, duration_us=duration_us)
        if kind == "b":
            body = base64.b64decode(payload)
            return Response(status, _decode_headers(headers), body, int(length),
                            duration_us=duration_us)
        digest, _, prefix = payload.partition(":")
        return Response(status, _decode_headers(headers), base64.b64decode(prefix), int(length),
                        digest, complete=False, duration_us=duration_us)
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"unreadable capture header {capture[:60]!r}: {exc}") from exc


def parse_entry(line: str) -> tuple[str, Entry]:
    """(cluster, entry) of one log line; ValueError for a line that is not one (a capture's
    base64 is checked when it is decoded)."""
    raw = json.loads(line)
    us, status, capture, route = (raw.get("us"), raw.get("status"), raw.get("capture"),
                                  raw.get("route"))
    if capture == "-" or not isinstance(capture, str):
        capture = None
    elif not capture.startswith("v1;") or capture.count(";") < 4:
        raise ValueError(f"unreadable capture header {capture[:60]!r}")
    entry = Entry(
        str(raw["id"]), str(raw.get("method", "")), str(raw.get("path", "")),
        str(raw.get("authority", "")), status if isinstance(status, int) else 0,
        int(us) if isinstance(us, (int, float)) else None, capture,
        route if isinstance(route, str) else "",
    )
    return str(raw["cluster"]), entry


@dataclass
class _Pending:
    first_seen: float
    entries: dict[str, Entry] = field(default_factory=dict)


class Joiner:
    """Joins entries by request id and hands complete groups to the comparer."""

    def __init__(
        self, comparer: Comparer, *, live2: bool, timeout_s: float,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.comparer = comparer
        self.wanted = {"live", "dark", LIVE2} if live2 else {"live", "dark"}
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self.pending: dict[str, _Pending] = {}
        self.counts = {"entries": 0, "unreadable": 0, "duplicates": 0, "not_mirrored": 0,
                       "evicted_early": 0, "other_clusters": 0}

    def feed(self, line: str, now: float) -> None:
        self.counts["entries"] += 1
        try:
            cluster, entry = parse_entry(line)
        except (ValueError, KeyError, TypeError):
            self.counts["unreadable"] += 1
            return
        # Per-route clusters are named <role>~<route> (see routes_envoy): pair by role.
        cluster = cluster.split("~", 1)[0]
        if cluster not in self.wanted:
            # "-" (no upstream was chosen), or live-2 while it is not paired
            self.counts["other_clusters"] += 1
            return
        self.comparer.entry(cluster, entry.duration_us)
        if cluster == "live" and not_mirrored(entry.route):
            self.counts["not_mirrored"] += 1  # no copy will come: nothing to wait for
            return
        key = entry.request_id
        pending = self.pending.get(key)
        if pending is None:
            if len(self.pending) >= self.max_pending:
                self.counts["evicted_early"] += 1
                oldest = next(iter(self.pending))
                self._settle(oldest, self.pending.pop(oldest))
            pending = self.pending[key] = _Pending(now)
        if cluster in pending.entries:
            self.counts["duplicates"] += 1
            return
        pending.entries[cluster] = entry
        if self.wanted <= pending.entries.keys():
            del self.pending[key]
            self._settle(key, pending)

    def expire(self, now: float) -> None:
        """Settle every id that waited longer than the timeout (insertion order is age order)."""
        while self.pending:
            key, pending = next(iter(self.pending.items()))
            if now - pending.first_seen < self.timeout_s:
                return
            del self.pending[key]
            self._settle(key, pending)

    def settle_all(self) -> None:
        """At the end: no partner will come any more."""
        while self.pending:
            key = next(iter(self.pending))
            self._settle(key, self.pending.pop(key))

    def _settle(self, key: str, pending: _Pending) -> None:
        entries = pending.entries
        live, dark, live2 = entries.get("live"), entries.get("dark"), entries.get(LIVE2)
        if live is None or dark is None:
            # a copy without live's entry, or live's entry of a mirroring route (its request
            # was copied) whose copy never answered: counted, both ways, as unpaired
            self.comparer.add_unpaired(len(entries))
        elif live.same_answer(dark) and (
                live2 is None or not self.comparer.settings.noise or live.same_answer(live2)
        ) and not self.comparer.has_rules:
            self.comparer.add_identical(
                live.request, live.duration_us, dark.duration_us,
                live2.duration_us if live2 is not None else None, live2=live2 is not None)
        else:
            try:
                answers = live.response, dark.response, live2.response if live2 else None
            except ValueError:
                self.counts["unreadable"] += 1
                # dropped, as at feed; the others have no answer to be compared with
                self.comparer.add_unpaired(len(entries) - 1)
                return
            self.comparer.add(live.request, *answers)


class PairingReader:
    """Follows the upstream log in a thread while the run goes on; thread-safe summaries.

    ``clock`` is injectable so that tests decide when ids time out.
    """

    def __init__(
        self, log_path: str, comparer: Comparer, *, live2: bool, timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log_path = log_path
        self.joiner = Joiner(comparer, live2=live2, timeout_s=timeout_s)
        self.clock = clock
        self.failure: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._partial = b""
        self._offset = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="darklaunch-pairing", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """End the thread (idempotent); what was read stays counted."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock:
                    self._read_available()
                    self.joiner.expire(self.clock())
            except BaseException as exc:  # e.g. a user's hook raised: kept, shown by summary()
                self.failure = exc
                return
            self._stop.wait(POLL_S)

    def _read_available(self) -> None:
        """Every complete line written since the last call (Envoy may flush mid-line)."""
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return  # Envoy creates the log at its first entry
        if not data:
            return
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        now = self.clock()
        for line in lines:
            if line.strip():
                self.joiner.feed(line.decode("utf-8", errors="replace"), now)

    def finish_reading(self) -> None:
        """Stop following, read what is left (call after Envoy flushed), settle every id."""
        self.stop()
        with self._lock:
            if self.failure is None:
                try:
                    self._read_available()
                    self.joiner.settle_all()
                except BaseException as exc:  # as in _run
                    self.failure = exc

    def finish(self) -> Summary:
        """:meth:`finish_reading`, then the final summary."""
        self.finish_reading()
        return self.summary()

    def summary(self) -> Summary:
        """The comparison so far; re-raises what stopped the reader (a user's hook error)."""
        if self.failure is not None:
            raise self.failure
        with self._lock:
            return self.joiner.comparer.summary()

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {**self.joiner.counts, "pending": len(self.joiner.pending)}

    @property
    def log_size(self) -> int:
        try:
            return os.path.getsize(self.log_path)
        except FileNotFoundError:
            return 0

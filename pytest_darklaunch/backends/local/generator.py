"""Open-loop HTTP traffic generator (asyncio + aiohttp), run as its own process.

Request ``i`` is due at ``t0 + i / rate`` whatever happened to earlier requests, so a slow
server does not slow the offered load down (closed-loop tools such as wrk do, and under-report
latency: coordinated omission). Latency is measured from the *due* time; the delay between due
time and the moment the request actually starts is the scheduling lag. A request that cannot
start within ``--late-after`` seconds of its due time is not sent and counted ``late``.

It runs until SIGTERM or SIGINT (or ``--max-duration``, a safety bound, or until its parent
process is gone) and keeps its counters in a JSON file, replaced atomically about every 0.5 s
and once more on exit::

    python -m pytest_darklaunch.backends.local.generator --url http://127.0.0.1:10000 \
        --rate 200 --path / --header x-test:1 --warmup 1 --stats /tmp/traffic.json

Headers given with ``--headers-file`` (a JSON object) stay out of the process list, which
every user of the machine can read: the backend passes the spec's headers that way.

A mix (``--targets FILE``, written by :func:`~pytest_darklaunch.core.traffic.model.
dump_targets`, bodies beside it) replaces ``--method``/``--path``: at ``--timing rate`` request
``i`` is still due at ``t0 + i / rate`` and its target is drawn by weight (``--seed``); at
``--timing recorded`` each target is due at its recorded offset / ``--speed``, and the rate
the stats file reports as ``target_rps`` is that schedule's. Counts per target (sent, errors,
late) are under ``targets``; headers and bodies are never written anywhere.

``--url -`` reads the URL from the first line of stdin, so the process can be started (and its
imports done) before the address it will load is known. Counters for the first ``--warmup``
seconds are kept apart (``warmup`` in the file) and excluded from every top-level figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_darklaunch.backends.local.counters import ERRORS, LATE, SENT, Counters
from pytest_darklaunch.core.traffic.model import Target, load_targets
from pytest_darklaunch.core.traffic.schedule import TIMINGS, Schedule

REPORT_EVERY_S = 0.5
# Requests started in one go before the event loop gets a turn.
BURST = 64
DRAIN_MAX_S = 1.0
# Up to this many targets, every stats write carries the per-target counts (see stats()).
LIVE_TARGETS_MAX = 100


@dataclass(frozen=True)
class Config:
    url: str
    rate_rps: float
    stats_path: str
    method: str = "GET"
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    host: str | None = None
    timeout_s: float = 2.0
    warmup_s: float = 0.0
    max_duration_s: float = 3600.0
    late_after_s: float = 0.25
    connections: int = 256
    parent_pid: int | None = None
    targets: tuple[Target, ...] = ()
    bodies: tuple[memoryview, ...] = ()
    timing: str = "rate"
    speed: float = 1.0
    seed: int = 0

    def mix(self) -> tuple[Target, ...]:
        """The targets to send: ``targets``, or the one of ``method`` and ``path``."""
        return self.targets or (Target(f"{self.method} {self.path}", self.method, self.path),)


@dataclass(frozen=True)
class Request:
    """A target made ready to send: full URL, headers as pairs, body or ``None``."""

    name: str
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | memoryview | None


class Generator:
    """One open-loop run; :meth:`run` returns when stopped."""

    def __init__(self, config: Config) -> None:
        self.config = config
        base = config.url.rstrip("/")
        bodies: Sequence[bytes | memoryview] = config.bodies or [t.body for t in config.mix()]
        self.requests = [
            Request(t.name, t.method, base + t.path, t.headers, body if len(body) else None)
            for t, body in zip(config.mix(), bodies, strict=False)
        ]
        self.schedule = Schedule(
            config.mix(), config.rate_rps, config.timing, config.speed, config.seed
        )
        self.target = self.requests[0].url if not config.targets else base
        self.warmup = Counters()
        self.measured = Counters()
        self.in_flight: set[asyncio.Task[None]] = set()
        self.t0 = 0.0
        self.started_at = 0.0
        self.schedule_end: float | None = None
        self.stop_reason: str | None = None
        self._scheduler: asyncio.Task[None] | None = None

    def stop(self, reason: str) -> None:
        """Stop scheduling new requests (idempotent); in-flight ones get a short drain."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self._scheduler is not None:
            self._scheduler.cancel()

    async def run(self) -> None:
        import aiohttp

        loop = asyncio.get_running_loop()
        for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")):
            loop.add_signal_handler(sig, self.stop, name)
        headers = {k: v for k, v in self.config.headers}
        if self.config.host:
            headers["Host"] = self.config.host
        headers.setdefault("User-Agent", "pytest-darklaunch-generator")
        connector = aiohttp.TCPConnector(limit=self.config.connections, limit_per_host=0)
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=headers, auto_decompress=False
        ) as session:
            self.t0 = loop.time()
            self.started_at = time.time()
            self.write_stats()
            reporter = asyncio.create_task(self._report())
            self._scheduler = asyncio.create_task(self._schedule(session))
            try:
                await self._scheduler
            except asyncio.CancelledError:
                if self.stop_reason is None:  # cancelled from outside, not by stop()
                    raise
            self.schedule_end = loop.time()
            await self._drain()
            reporter.cancel()
        self.write_stats(final=True)

    async def _schedule(self, session: Any) -> None:
        loop = asyncio.get_running_loop()
        warm_end = self.t0 + self.config.warmup_s
        end = self.t0 + self.config.max_duration_s
        # A request queued in the client longer than the timeout fails anyway: past this many
        # in flight a due request cannot be answered in time and counts as late (bounded memory).
        max_in_flight = max(
            self.config.connections * 4,
            int(self.schedule.planned_rps * self.config.timeout_s * 1.5),
        )
        next_report = loop.time() + REPORT_EVERY_S
        offset, which = self.schedule.next()
        due = self.t0 + offset
        while due < end:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            # Everything due by now starts now: a late wake-up sends a burst, not fewer requests.
            started = 0
            while due <= now and due < end:
                phase = self.measured if due >= warm_end else self.warmup
                request = self.requests[which]
                if now - due > self.config.late_after_s or len(self.in_flight) >= max_in_flight:
                    phase.late += 1
                    phase.count(request.name, LATE)
                else:
                    task = asyncio.create_task(self._one(session, request, due, phase))
                    self.in_flight.add(task)
                    task.add_done_callback(self.in_flight.discard)
                    started += 1
                offset, which = self.schedule.next()
                due = self.t0 + offset
                if started >= BURST:
                    # Let responses and the stats writer run: an overloaded generator must
                    # still report what it manages.
                    await asyncio.sleep(0)
                    now, started = loop.time(), 0
            if loop.time() >= next_report:
                self.write_stats()
                next_report = loop.time() + REPORT_EVERY_S
        if self.stop_reason is None:
            self.stop_reason = "max duration reached"

    async def _one(self, session: Any, request: Request, due: float, phase: Counters) -> None:
        import aiohttp

        loop = asyncio.get_running_loop()
        phase.sent += 1
        phase.count(request.name, SENT)
        phase.lag.add(max(0.0, loop.time() - due) * 1000.0)
        try:
            async with session.request(
                request.method, request.url, headers=request.headers, data=request.body
            ) as response:
                await response.read()
                status = response.status
        except TimeoutError:
            phase.timeouts += 1
            phase.errors += 1
            phase.count(request.name, ERRORS)
            return
        except (aiohttp.ClientError, OSError):
            phase.connection_errors += 1
            phase.errors += 1
            phase.count(request.name, ERRORS)
            return
        except asyncio.CancelledError:
            phase.cancelled += 1
            raise
        phase.latency.add((loop.time() - due) * 1000.0)
        key = str(status)
        phase.statuses[key] = phase.statuses.get(key, 0) + 1
        if 200 <= status < 300:
            phase.ok += 1
        else:
            phase.errors += 1
            phase.count(request.name, ERRORS)

    async def _drain(self) -> None:
        pending = set(self.in_flight)
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=min(self.config.timeout_s, DRAIN_MAX_S))
        for task in still:
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)

    async def _report(self) -> None:
        parent = self.config.parent_pid
        while self.stop_reason is None:
            await asyncio.sleep(REPORT_EVERY_S)
            if parent is not None and os.getppid() != parent:
                self.stop("parent process exited")
            self.write_stats()

    def stats(self, final: bool = False) -> dict[str, Any]:
        """The counters as written to the stats file.

        Per-target counts of a large mix are written only at the end: serialising 10,000 of
        them every 0.5 s blocked the loop for tens of ms (lag p99 50-110 ms at 1000 requests/s
        against 6 ms with 10 targets, measured with benchmarks/traffic_mix.py).
        """
        with_targets = final or len(self.requests) <= LIVE_TARGETS_MAX
        loop = asyncio.get_running_loop()
        now = loop.time() if self.schedule_end is None else self.schedule_end
        measured_s = max(0.0, now - self.t0 - self.config.warmup_s)
        achieved = self.measured.sent / measured_s if measured_s >= 0.05 else None
        return {
            "target_rps": round(self.schedule.planned_rps, 6),
            "timing": self.config.timing,
            "url": self.target,
            "method": self.config.method if not self.config.targets else "mix",
            "started_at": self.started_at,
            "warmup_s": self.config.warmup_s,
            "measured_since": self.started_at + self.config.warmup_s,
            "updated_at": time.time(),
            "measured_s": round(measured_s, 3),
            "measured_until": self.started_at + self.config.warmup_s + measured_s,
            "achieved_rps": None if achieved is None else round(achieved, 3),
            **self.measured.as_dict(with_targets),
            "in_flight": len(self.in_flight),
            "warmup": self.warmup.as_dict(with_targets=False),
            "cpu_s": round(time.process_time(), 3),
            "running": self.schedule_end is None,
            "stop_reason": self.stop_reason,
        }

    def write_stats(self, final: bool = False) -> None:
        tmp = f"{self.config.stats_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.stats(final), handle)
        os.replace(tmp, self.config.stats_path)


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {text!r}")
    return name.strip(), value.strip()


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _headers(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, str]]:
    try:
        with open(path, encoding="utf-8") as handle:
            extra = json.load(handle)
    except (OSError, ValueError) as exc:
        parser.error(f"--headers-file {path!r}: {exc}")
    if not isinstance(extra, dict):
        parser.error(f"--headers-file {path!r}: expected a JSON object")
    return [(str(k), str(v)) for k, v in extra.items()]


def _targets(
    parser: argparse.ArgumentParser, path: str
) -> tuple[tuple[Target, ...], tuple[memoryview, ...]]:
    try:
        targets, bodies = load_targets(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        parser.error(f"--targets {path!r}: {exc}")
    if not targets:
        parser.error(f"--targets {path!r}: no targets")
    return tuple(targets), tuple(bodies)


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_darklaunch.backends.local.generator",
        description="Open-loop HTTP load at a fixed rate; counters in a JSON stats file.",
    )
    parser.add_argument("--url", required=True, help="base URL, or - to read it from stdin")
    parser.add_argument("--rate", type=_positive, required=True, help="requests per second")
    parser.add_argument("--stats", required=True, help="JSON file for the counters")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--path", default="/")
    parser.add_argument("--header", type=_header, action="append", default=[], help="NAME:VALUE")
    parser.add_argument(
        "--headers-file", default=None,
        help="JSON object of headers (keeps secrets out of the process list)",
    )
    parser.add_argument("--host", default=None, help="Host header")
    parser.add_argument("--timeout", type=_positive, default=2.0, help="per request, seconds")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds not counted")
    parser.add_argument("--max-duration", type=_positive, default=3600.0, help="safety bound, s")
    parser.add_argument("--late-after", type=_positive, default=0.25, help="lateness budget, s")
    parser.add_argument("--connections", type=int, default=256, help="connection pool size")
    parser.add_argument("--parent-pid", type=int, default=None, help="stop when it is gone")
    parser.add_argument("--targets", default=None, help="JSON list of targets (a mix)")
    parser.add_argument("--timing", choices=TIMINGS, default="rate")
    parser.add_argument("--speed", type=_positive, default=1.0, help="of recorded timing")
    parser.add_argument("--seed", type=int, default=0, help="of the weighted draw")
    args = parser.parse_args(argv)
    headers = list(args.header) + (_headers(parser, args.headers_file) if args.headers_file else [])
    targets, bodies = _targets(parser, args.targets) if args.targets else ((), ())
    url = args.url
    if url == "-":
        url = sys.stdin.readline().strip()
        if not url:
            parser.error("--url -: no URL on stdin")
    if not url.startswith(("http://", "https://")):
        parser.error(f"--url {url!r}: expected http://HOST:PORT")
    return Config(
        url=url,
        rate_rps=args.rate,
        stats_path=args.stats,
        method=args.method.upper(),
        path=args.path,
        headers=tuple(headers),
        host=args.host,
        timeout_s=args.timeout,
        warmup_s=max(0.0, args.warmup),
        max_duration_s=args.max_duration,
        late_after_s=args.late_after,
        connections=max(1, args.connections),
        parent_pid=args.parent_pid,
        targets=targets,
        bodies=bodies,
        timing=args.timing,
        speed=args.speed,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    generator = Generator(config)
    asyncio.run(generator.run())
    m = generator.measured
    print(
        f"generator stopped ({generator.stop_reason}): sent {m.sent}, errors {m.errors}, "
        f"late {m.late}, lag p99 {m.lag.percentile(0.99)} ms",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The bundled sample app: the local counterpart of knative-route-demo's blue and green.

It answers every request with ``200`` and its version name, after a configurable latency, and
can be told to be slow for a share of requests or to fail a share of them. Every knob is a
command-line flag and an environment variable, so a spec's ``versions.dark.env`` can make the
dark version misbehave::

    python -m pytest_darklaunch.sampleapp --port 8080 --version green --latency-ms 20
    SAMPLEAPP_ERROR_SHARE=0.03 python -m pytest_darklaunch.sampleapp --port 8081

Knobs (flag / environment variable, a flag wins):

- ``--port`` (required): TCP port on 127.0.0.1; 0 picks a free one and prints it on stderr
- ``--version`` / ``T_VERSION``: the version name in every answer (default ``sample-app``)
- ``--latency-ms`` / ``SAMPLEAPP_LATENCY_MS``: fixed latency of every request
- ``--jitter-ms`` / ``SAMPLEAPP_JITTER_MS``: plus a uniform random 0..jitter ms
- ``--slow-share`` / ``SAMPLEAPP_SLOW_SHARE``: share (0..1) of requests that take slow-ms
  (plus jitter) instead of latency-ms
- ``--slow-ms`` / ``SAMPLEAPP_SLOW_MS``: latency of a slow request
- ``--slow-path`` / ``SAMPLEAPP_SLOW_PATH``: a regex; requests whose whole path (query
  removed) matches it are all slow (slow-ms plus jitter), the others follow slow-share
- ``--error-share`` / ``SAMPLEAPP_ERROR_SHARE``: share (0..1) of requests that fail
- ``--error-status`` / ``SAMPLEAPP_ERROR_STATUS``: status of a failed request (default 500)
- ``--error-path`` / ``SAMPLEAPP_ERROR_PATH``: a path that always fails (with error-status)
- ``--body`` / ``SAMPLEAPP_BODY``: ``text`` (the version name, default) or ``json``: an object
  ``{"version", "path", "total": 17, "items": [...]}`` that depends only on the request
- ``--change-share`` / ``SAMPLEAPP_CHANGE_SHARE``: share (0..1) of JSON answers whose
  ``total`` is 18 instead of 17 (a wrong answer with status 200)
- ``--nonce`` / ``SAMPLEAPP_NONCE``: ``1`` adds ``ts`` (the time) and ``nonce`` (random hex)
  to JSON answers: fields that differ on every answer, even between two copies of live
- ``--seed`` / ``SAMPLEAPP_SEED``: random seed (default: unseeded)
- ``--log`` / ``SAMPLEAPP_LOG``: JSON-lines file, one line per answered request

A request log line is the ground truth the accuracy checks compare Prometheus against::

    {"time": 1700000000.123, "arrived": 1700000000.103, "latency_ms": 20.113, "status": 200,
     "x-request-id": "...", "host": "customdomain.com-shadow", "method": "POST",
     "path": "/items", "query": "page=2", "body_bytes": 23, "body_sha256": "9f86d0..."}

so tests can check that each request arrived with its method, query and exact body.

``GET /healthz`` answers ``ok`` at once and is not logged: it is the readiness probe.
The app binds 127.0.0.1 only and exits cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

HEALTH_PATH = "/healthz"


@dataclass(frozen=True)
class Knobs:
    """How the app behaves; every field has a flag and an environment variable."""

    version: str = "sample-app"
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    slow_share: float = 0.0
    slow_ms: float = 0.0
    slow_path: str | None = None
    error_share: float = 0.0
    error_status: int = 500
    error_path: str | None = None
    body: str = "text"
    change_share: float = 0.0
    nonce: bool = False
    seed: int | None = None
    log: str | None = None


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share in 0..1, got {text!r}")
    return value


def _ms(text: str) -> float:
    value = float(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"expected milliseconds >= 0, got {text!r}")
    return value


def _body(text: str) -> str:
    if text not in ("text", "json"):
        raise argparse.ArgumentTypeError(f"expected text or json, got {text!r}")
    return text


def _flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, got {text!r}")
    return text == "1"


def _status(text: str) -> int:
    value = int(text)
    if not 100 <= value <= 599:
        raise argparse.ArgumentTypeError(f"expected an HTTP status 100..599, got {text!r}")
    return value


def _regex(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        message = f"expected a regular expression, got {text!r}: {exc}"
        raise argparse.ArgumentTypeError(message) from None
    return text


# flag, env var, parser, Knobs field
_KNOBS: tuple[tuple[str, str, Callable[[str], Any], str], ...] = (
    ("--version", "T_VERSION", str, "version"),
    ("--latency-ms", "SAMPLEAPP_LATENCY_MS", _ms, "latency_ms"),
    ("--jitter-ms", "SAMPLEAPP_JITTER_MS", _ms, "jitter_ms"),
    ("--slow-share", "SAMPLEAPP_SLOW_SHARE", _share, "slow_share"),
    ("--slow-ms", "SAMPLEAPP_SLOW_MS", _ms, "slow_ms"),
    ("--slow-path", "SAMPLEAPP_SLOW_PATH", _regex, "slow_path"),
    ("--error-share", "SAMPLEAPP_ERROR_SHARE", _share, "error_share"),
    ("--error-status", "SAMPLEAPP_ERROR_STATUS", _status, "error_status"),
    ("--error-path", "SAMPLEAPP_ERROR_PATH", str, "error_path"),
    ("--body", "SAMPLEAPP_BODY", _body, "body"),
    ("--change-share", "SAMPLEAPP_CHANGE_SHARE", _share, "change_share"),
    ("--nonce", "SAMPLEAPP_NONCE", _flag, "nonce"),
    ("--seed", "SAMPLEAPP_SEED", int, "seed"),
    ("--log", "SAMPLEAPP_LOG", str, "log"),
)


def parse_args(argv: Sequence[str] | None, environ: dict[str, str]) -> tuple[int, Knobs]:
    """The port and the knobs: a flag wins over its environment variable, which wins over the
    default. A bad environment value is reported like a bad flag.

    >>> env = {"SAMPLEAPP_ERROR_SHARE": "0.1"}
    >>> port, knobs = parse_args(["--port", "0", "--latency-ms", "5"], env)
    >>> port, knobs.latency_ms, knobs.error_share, knobs.error_status
    (0, 5.0, 0.1, 500)
    """
    parser = argparse.ArgumentParser(
        prog="python -m pytest_darklaunch.sampleapp",
        description="Sample app: answers with its version name, with latency and error knobs.",
    )
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    for flag, env, parse, _ in _KNOBS:
        parser.add_argument(flag, type=parse, default=None, help=f"(env {env})")
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for flag, env, parse, name in _KNOBS:
        value = getattr(args, name)
        if value is None and environ.get(env, "") != "":
            try:
                value = parse(environ[env])
            except (ValueError, argparse.ArgumentTypeError) as exc:
                parser.error(f"invalid {env}={environ[env]!r} (for {flag}): {exc}")
        if value is not None:
            values[name] = value
    return args.port, Knobs(**values)


class SampleApp:
    """The request handler: decides latency and status per request from one seeded RNG."""

    def __init__(self, knobs: Knobs, log: IO[str] | None = None) -> None:
        self.knobs = knobs
        self.log = log
        self.rng = random.Random(knobs.seed)
        self.body = knobs.version.encode() + b"\n"
        self.slow_path = re.compile(knobs.slow_path) if knobs.slow_path else None

    def answer(self, path: str) -> tuple[bytes, str]:
        """The body and content type of an answer to ``path``."""
        k = self.knobs
        if k.body == "text":
            return self.body, "text/plain"
        changed = k.change_share > 0 and self.rng.random() < k.change_share
        doc: dict[str, Any] = {
            "version": k.version, "path": path, "total": 18 if changed else 17,
            "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}],
        }
        if k.nonce:
            doc["ts"] = round(time.time(), 6)
            doc["nonce"] = f"{self.rng.getrandbits(64):016x}"
        return json.dumps(doc).encode(), "application/json"

    def plan(self, path: str = "/") -> tuple[float, int]:
        """Latency (ms) and status of the next request, to ``path``."""
        k, rng = self.knobs, self.rng
        slow = self.slow_path is not None and self.slow_path.fullmatch(path) is not None
        slow = slow or (k.slow_share > 0 and rng.random() < k.slow_share)
        latency = k.slow_ms if slow else k.latency_ms
        if k.jitter_ms > 0:
            latency += rng.uniform(0.0, k.jitter_ms)
        failed = k.error_share > 0 and rng.random() < k.error_share
        return latency, (k.error_status if failed else 200)

    async def handle(self, request: Any) -> Any:
        from aiohttp import web

        if request.path == HEALTH_PATH:
            return web.Response(body=b"ok\n", content_type="text/plain")
        start = time.perf_counter()
        arrived = time.time()
        body = await request.read() if request.can_read_body else b""
        latency_ms, status = self.plan(request.path)
        if self.knobs.error_path is not None and request.path == self.knobs.error_path:
            status = self.knobs.error_status
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000.0)
        if self.log is not None:
            line = {
                "time": round(time.time(), 6),
                "arrived": round(arrived, 6),
                "latency_ms": round((time.perf_counter() - start) * 1000.0, 3),
                "status": status,
                "x-request-id": request.headers.get("x-request-id"),
                "host": request.host,
                "method": request.method,
                "path": request.path,
                "query": request.query_string,
                "body_bytes": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
            }
            self.log.write(json.dumps(line) + "\n")
        body, content_type = self.answer(request.path)
        return web.Response(status=status, body=body, content_type=content_type)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit status."""
    from aiohttp import web

    port, knobs = parse_args(argv, dict(os.environ))
    # Line-buffered: every answered request is in the file once its response has left.
    log = open(knobs.log, "a", buffering=1, encoding="utf-8") if knobs.log else None  # noqa: SIM115
    try:
        # Recorded uploads can be large; the 1 MiB default would answer them 413.
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", SampleApp(knobs, log).handle)
        web.run_app(
            app,
            host="127.0.0.1",
            port=port,
            access_log=None,
            print=(lambda text: print(text, file=sys.stderr, flush=True)) if port == 0 else None,
            shutdown_timeout=2.0,
            handle_signals=True,
        )
    finally:
        if log is not None:
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

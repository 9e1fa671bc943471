"""Benchmark of per-request comparison (pairing) on the local stack's pieces.

For each offered rate (default 200 and 1000 requests/s, 40% mirrored to dark, A/A: dark and
live-2 run live's command, the bundled sample app answering JSON), one run of ``--seconds``
per mode:

- ``off``: Envoy as the local backend configures it, no capture (the reference);
- ``status``: plus the upstream log, read and paired (status and latency, no body capture);
- ``body``: plus the Lua body capture (``compare: {responses: body}``);
- ``body+noise``: plus live-2 receiving dark's requests (``compare: {responses: body, noise:
  true}``): a third app process serving dark's share, which on a small machine costs more
  than the capture itself;
- ``baseline``: status pairing with live-2 as the latency baseline (what a spec with a
  latency ``max_increase`` runs): dark against live-2 and live-2 against live, on the same
  requests, which shows what the mirrored path itself adds;
- ``busy``: no capture, but a thread of this process burning ``--busy-share`` of one core
  (default 2%, about what the reader takes at 1000 requests/s) in bursts every 50 ms, as the
  reader polls: what any such CPU costs live's latency on this machine, capture or not.

Every run also writes Envoy's downstream access log (what the client sees at the proxy, in
microseconds), so live's p50/p95 with and without capture compare like for like. Printed:
CPU of the comparison (the reader thread's own CPU time over the run, and its cost per log
entry replaying the run's log afterwards, which the other processes do not disturb), Envoy's
CPU, this process's RSS sampled through the run, unpaired count, the A/A difference of mean and p95
unpaired (all dark entries vs all live entries) and paired (same requests), and the latency
shift capture causes; with ``--repeat`` and mode ``off`` among the modes, that shift as the
median of the rounds' paired differences (each round runs every mode, so the machine's drift
falls on both sides). Reproduce with::

    python benchmarks/comparison.py [--seconds 60] [--rates 200,1000]
    python benchmarks/comparison.py --seconds 20 --modes off,status,body --repeat 5
    python benchmarks/comparison.py --modes baseline --rates 250 --mirror 100 --seconds 16 \
        --repeat 3 [--app http.server]
    python benchmarks/comparison.py --seconds 20 --modes off,busy,status --repeat 5 --rates 1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

import requests
from generator_run import read_stats, start_generator
from steal import steal_mark, steal_share

from pytest_darklaunch.backends.local.capture import LIVE2
from pytest_darklaunch.backends.local.envoy import (
    pairing_amendment,
    start_envoy,
    wait_for_envoy,
)
from pytest_darklaunch.backends.local.pairing import POLL_S, Joiner, PairingReader
from pytest_darklaunch.backends.local.processes import (
    ManagedProcess,
    NotReady,
    free_port,
    stop_all,
    wait_until,
)
from pytest_darklaunch.core.compare import Comparer, Settings
from pytest_darklaunch.core.compare.latency import LogHistogram
from pytest_darklaunch.core.spec import Sources, build_spec

APP = [sys.executable, "-m", "pytest_darklaunch.sampleapp", "--body", "json",
       "--version", "app"]


class TimedReader(PairingReader):
    """The reader, recording its own thread's CPU time when it stops."""

    cpu_s = 0.0

    def _run(self) -> None:
        try:
            super()._run()
        finally:
            self.cpu_s = time.thread_time()


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _downstream_log(path: str) -> dict[str, Any]:
    return {"name": "envoy.access_loggers.file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": path,
        "log_format": {"json_format": {"us": "%COMMON_DURATION(DS_RX_BEG:DS_TX_END:us)%"}}}}


_APP = list(APP)


def _start_app(workdir: str, role: str) -> tuple[ManagedProcess, int]:
    port = free_port()
    port_args = ["--port", str(port)] if _APP == APP else [str(port)]
    proc = ManagedProcess.start(role, [*_APP, *port_args],
                                log_path=os.path.join(workdir, f"{role}.log"))

    def answers() -> None:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
        except requests.ConnectionError as exc:
            raise NotReady(str(exc)) from exc

    wait_until(answers, what=f"{role} answering", deadline_s=15, process=proc)
    return proc, port


def _burn(share: float, stop: threading.Event) -> None:
    """Spend ``share`` of one core in a burst every ``POLL_S``, until ``stop``."""
    while True:
        begin = time.thread_time()
        while time.thread_time() - begin < share * POLL_S:
            pass
        if stop.wait(POLL_S * (1 - share)):
            return


def one_run(
    rate: float, seconds: float, compare: bool, noise: bool = True, responses: str = "body",
    mirror: float = 40, baseline: str = "live", busy: float = 0.0,
) -> dict[str, Any]:
    workdir = tempfile.mkdtemp(prefix="darklaunch-bench-")
    procs: list[ManagedProcess] = []
    burning = threading.Event()
    try:
        ports = {}
        settings = Settings(responses=responses, noise=noise, baseline=baseline)
        live2 = compare and settings.live2
        for role in ("live", "dark", *((LIVE2,) if live2 else ())):
            proc, ports[role] = _start_app(workdir, role)
            procs.append(proc)
        spec = build_spec({"target": "default/sample-app", "mirror": {"percent": mirror},
                           "traffic": {"rate": rate}}, Sources("benchmark"))
        upstream_path = os.path.join(workdir, "upstream.log")
        downstream_path = os.path.join(workdir, "downstream.log")
        pairing, argv = pairing_amendment(upstream_path, bodies=responses == "body",
                                          max_body=65536,
                                          live2_port=ports.get(LIVE2))

        def amend(config: dict[str, Any]) -> None:
            if compare:
                pairing(config)
            hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            hcm["typed_config"]["access_log"] = [_downstream_log(downstream_path)]

        envoy_proc, admin = start_envoy(spec, workdir, live_port=ports["live"],
                                        dark_port=ports["dark"], amend=amend, extra_argv=argv)
        procs.append(envoy_proc)
        envoy = wait_for_envoy(envoy_proc, admin)
        reader = TimedReader(upstream_path, Comparer(settings), live2=live2, timeout_s=5)
        if compare:
            reader.start()
        if busy:
            threading.Thread(target=_burn, args=(busy, burning), daemon=True).start()
        rss: list[float] = []
        envoy_cpu0, steal0 = _cpu_s(envoy_proc.pid), steal_mark()
        generator, stats_path = start_generator(envoy.ingress_url, rate, workdir,
                                                host=spec.mirror.host)
        procs.append(generator)
        done = threading.Event()
        deadline = time.monotonic() + seconds + 1
        while not done.wait(min(5.0, max(0.0, deadline - time.monotonic()))):
            rss.append(round(_rss_mib(), 1))
            if time.monotonic() >= deadline:
                done.set()
        generator.stop()
        burning.set()
        traffic = read_stats(stats_path)
        envoy_cpu = _cpu_s(envoy_proc.pid) - envoy_cpu0
        out: dict[str, Any] = {"achieved_rps": traffic["achieved_rps"],
                               "envoy_cpu_share": round(envoy_cpu / (seconds + 1), 3),
                               "steal_share": round(steal_share(steal0), 3),
                               "rss_mib": rss}
        if compare:
            expected = _completed(envoy.admin_url)
            wait_until(lambda: _read_all(reader, expected), what="log read", deadline_s=30)
            summary = reader.finish()
            out.update(reader_us_per_entry=_replayed_us_per_entry(upstream_path, settings, live2),
                       reader_cpu_share=round(reader.cpu_s / (seconds + 1), 3),
                       unpaired=summary.unpaired, paired=summary.paired,
                       response_mismatches=summary.response_mismatches,
                       latency=summary.latency.as_dict(), counts=reader.counts())
        out["live_client_ms"] = _downstream_percentiles(downstream_path)
        return out
    finally:
        burning.set()
        stop_all(procs)
        shutil.rmtree(workdir, ignore_errors=True)


def _replayed_us_per_entry(path: str, settings: Settings, live2: bool) -> float:
    """The reader's CPU per log entry, replaying the run's log after it (best of 3): the
    comparison's own cost, apart from what the run's other processes did to it."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    best = float("inf")
    for _ in range(3):
        joiner = Joiner(Comparer(settings), live2=live2, timeout_s=5)
        start = time.thread_time()
        for line in lines:
            joiner.feed(line, 0.0)
        joiner.settle_all()
        best = min(best, time.thread_time() - start)
    return round(best / max(1, len(lines)) * 1e6, 2)


def _completed(admin_url: str) -> int:
    text = requests.get(f"{admin_url}/stats", params={"filter": "upstream_rq_completed$"},
                        timeout=2).text
    wanted = {f"cluster.{role}.upstream_rq_completed" for role in ("live", "dark", LIVE2)}
    return sum(int(value) for name, _, value in (line.partition(": ") for line in
                                                 text.splitlines()) if name in wanted)


def _read_all(reader: PairingReader, expected: int) -> None:
    seen = reader.counts()["entries"]
    if seen < expected:
        raise NotReady(f"{seen} of {expected} entries read")


def _downstream_percentiles(path: str) -> dict[str, float | None]:
    h = LogHistogram()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            h.add(float(json.loads(line)["us"]))

    def ms(q: float) -> float | None:
        value = h.quantile(q)
        return None if value is None else round(value / 1000, 3)

    return {"p50": ms(0.5), "p95": ms(0.95), "requests": h.total}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose live p95 is the median of the rounds' (its other figures with it)."""
    ordered = sorted(runs, key=lambda r: r["live_client_ms"]["p95"] or 0.0)
    return ordered[len(ordered) // 2]


MODES = {
    # name: (compare, noise, responses, baseline)
    "off": (False, False, "body", "live"),
    "status": (True, False, "status", "live"),
    "body": (True, False, "body", "live"),
    "body+noise": (True, True, "body", "live"),
    "baseline": (True, False, "status", LIVE2),
    "busy": (False, False, "body", "live"),
}
APPS = {
    "sample": APP,
    "http.server": [sys.executable, "-m", "http.server", "--bind", "127.0.0.1"],
}


def _print(rate: float, seconds: float, mirror: float, runs: dict[str, dict[str, Any]]) -> None:
    print(f"== {rate:g} requests/s offered, {mirror:g}% mirrored, {seconds:g} s each, A/A "
          f"(dark and live-2 run live's command: {' '.join(_APP[1:3])})")
    for name, run in runs.items():
        line = (f"  {name:>10}: achieved {run['achieved_rps']} requests/s, Envoy CPU "
                f"{run['envoy_cpu_share']:.1%}, live at the proxy p50/p95 "
                f"{run['live_client_ms']['p50']}/{run['live_client_ms']['p95']} ms")
        if "paired" in run:
            paired, unpaired = run["latency"]["paired"], run["latency"]["unpaired"]
            line += (
                f"\n{'':14}comparison CPU {run['reader_cpu_share']:.1%} of one core "
                f"({run['reader_us_per_entry']} us per log entry, replayed), RSS "
                f"{min(run['rss_mib'])}..{max(run['rss_mib'])} MiB, paired {run['paired']}, "
                f"unpaired {run['unpaired']}, mismatches {run['response_mismatches']}"
                f"\n{'':14}A/A dark vs live, mean: unpaired {unpaired['mean_increase']:+.1%}, "
                f"paired {paired['mean_increase']:+.1%}; p95: unpaired "
                f"{unpaired['p95_increase']:+.1%}, paired {paired['p95_increase']:+.1%}"
                f" (paired against {run['latency']['baseline']})"
            )
            path = run["latency"].get("mirrored_path")
            if path:
                line += (f"\n{'':14}the mirrored path: live-2 (live's command) "
                         f"{path['mean_increase']:+.1%} over live on the same requests")
        print(line)
    sys.stdout.flush()


def _print_shifts(rounds: dict[str, list[dict[str, Any]]]) -> None:
    """Live's latency shift per mode against ``off`` of the same round (rounds interleave the
    modes, so the machine's drift falls on both sides of each difference): the median of the
    rounds' differences, and their range."""
    if "off" not in rounds:
        return
    for name, runs in rounds.items():
        if name == "off":
            continue
        parts = []
        for q in ("p50", "p95"):
            pairs = ((run["live_client_ms"][q], ref["live_client_ms"][q])
                     for run, ref in zip(runs, rounds["off"], strict=True))
            both = [(a, b) for a, b in pairs if a and b]  # None: no request in that run
            if both:
                diffs = sorted(a - b for a, b in both)
                share = statistics.median(a / b - 1 for a, b in both)
                parts.append(
                    f"{q} {statistics.median(diffs):+.3f} ms ({share:+.1%}; "
                    f"rounds {diffs[0]:+.3f}..{diffs[-1]:+.3f})")
        print(f"  {name:>10}: live's shift over off, median of {len(runs)} paired rounds: "
              + ", ".join(parts))


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so that each run's finally stops its processes


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rates", default="200,1000")
    parser.add_argument("--mirror", type=float, default=40, help="percent mirrored to dark")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of all modes, interleaved; the median of each figure")
    parser.add_argument("--app", choices=list(APPS), default="sample",
                        help="live, dark and live-2 all run it (A/A)")
    parser.add_argument("--busy-share", type=float, default=0.02,
                        help="the busy mode's share of one core")
    parser.add_argument("--modes", default=",".join(m for m in MODES
                                                    if m not in ("baseline", "busy")),
                        help=f"among {', '.join(MODES)} (off: no capture, the reference)")
    args = parser.parse_args()
    _APP[:] = APPS[args.app]
    for rate in (float(r) for r in args.rates.split(",")):
        rounds: dict[str, list[dict[str, Any]]] = {}
        for _ in range(args.repeat):
            # Interleaved, so that the machine's other load falls on every mode alike.
            for name in args.modes.split(","):
                compare, noise, responses, baseline = MODES[name]
                busy = args.busy_share if name == "busy" else 0.0
                rounds.setdefault(name, []).append(one_run(
                    rate, args.seconds, compare, noise, responses, args.mirror, baseline, busy))
        _print(rate, args.seconds, args.mirror, {n: _median(r) for n, r in rounds.items()})
        if args.repeat > 1:
            for name, runs in rounds.items():
                shown = [f"{r['live_client_ms']['p50']}/{r['live_client_ms']['p95']}"
                         f" (steal {r['steal_share']:.0%})" for r in runs]
                print(f"  {name:>10}: live p50/p95 per round (ms): {', '.join(shown)}")
            _print_shifts(rounds)


if __name__ == "__main__":
    main()

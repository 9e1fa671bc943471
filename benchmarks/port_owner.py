"""Benchmark of the port ownership check (is the listener answering a probe our process's?).

Prints, on this machine: how many checks one ``provision()`` of the local stack makes and the
time they take in all (against the whole provisioning time), then the cost of one check when
the server itself holds the socket, and when a child in its process group does (the whole
process tree is read), with the size of ``/proc/net/tcp`` that the cost grows with.

Reproduce with::

    python benchmarks/port_owner.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from pytest_darklaunch.backends import RunContext
from pytest_darklaunch.backends.local import LocalBackend, listeners
from pytest_darklaunch.backends.local.processes import ManagedProcess
from pytest_darklaunch.core.spec import Sources, build_spec


def provisions(runs: int) -> tuple[list[int], list[float], list[float]]:
    """Per run: checks made, ms spent in them, provision() seconds."""
    counts, spent, totals = [], [], []
    real = listeners.refuse_foreign
    calls: list[float] = []

    def timed(process: ManagedProcess, port: int) -> None:
        began = time.perf_counter()
        try:
            real(process, port)
        finally:
            calls.append(time.perf_counter() - began)

    listeners.refuse_foreign = timed  # connect() looks it up at each call
    spec = build_spec({"target": "default/sample-app", "traffic": {"rate": 20}}, Sources("bench"))
    try:
        for run in range(runs):
            calls.clear()
            with tempfile.TemporaryDirectory() as tmp:
                backend = LocalBackend(spec, RunContext(run_id=f"b{run}", workdir=f"{tmp}/s"))
                try:
                    backend.provision()
                finally:
                    backend.teardown()
            counts.append(len(calls))
            spent.append(sum(calls) * 1000)
            totals.append(backend.timings["provision_s"])
    finally:
        listeners.refuse_foreign = real
    return counts, spent, totals


def per_call_ms(check: Callable[[], object], n: int = 200) -> float:
    began = time.perf_counter()
    for _ in range(n):
        check()
    return (time.perf_counter() - began) / n * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="provisionings measured")
    args = parser.parse_args(argv)
    print(f"# {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"# machine: {os.cpu_count()} CPUs, load average: {os.getloadavg()}")
    counts, spent, totals = provisions(args.runs)
    print(f"checks per provision(): {counts}; time in them: median "
          f"{statistics.median(spent):.1f} ms (max {max(spent):.1f}) of a provision() of "
          f"median {statistics.median(totals):.3f} s")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        # the socket is held by this process: the parent of the child below, not in its tree
        child = subprocess.Popen(["sleep", "30"])  # noqa: S607 - a benchmark's stand-in
        try:
            own = per_call_ms(lambda: listeners.owner(port, os.getpid()))
            tree = per_call_ms(lambda: listeners.owner(port, child.pid), 50)
        finally:
            child.kill()
            child.wait()
    with open("/proc/net/tcp", encoding="ascii") as handle:
        lines = sum(1 for _ in handle) - 1
    print(f"one check, socket held by the server: {own:.2f} ms; not in its tree (every process "
          f"read): {tree:.2f} ms; /proc/net/tcp has {lines} sockets now")
    return 0


if __name__ == "__main__":
    sys.exit(main())

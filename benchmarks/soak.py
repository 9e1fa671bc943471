"""Soak: the conformance example, N sessions back to back on the local backend.

Each session is ``python -m pytest`` in ``examples/conformance`` with ``TMPDIR`` set to a
directory of its own and a tag in its environment (inherited by everything it starts). A small
probe plugin (``-p``, written to a temporary directory) records, inside the pytest process:
the run's PIDs from its ``pids`` file just before teardown, the process's open descriptors
after configure and after the plugin's teardown, and its peak RSS (``VmHWM``).

After each session the harness checks, by PID, which of the run's processes still run (from the
``pids`` file, and every process carrying the session's tag) and whether its ``darklaunch-*``
directory is gone; it also counts its own descriptors. At the end it prints the pass count, the
verdicts of every session (all must agree), the maximum number of leftovers, and the
descriptor and memory figures with their first and last values (growth shows there)::

    python benchmarks/soak.py               # 20 sessions, about 6 minutes
    python benchmarks/soak.py --sessions 3  # a quick look

Exit status 0 when every session passed with the same verdicts and left nothing behind.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "conformance"
TAG_VAR = "DARKLAUNCH_SOAK_SESSION"
SESSION_DEADLINE_S = 180.0

PROBE = '''
"""Soak probe: facts about this pytest process, written to $DARKLAUNCH_SOAK_PROBE as JSON."""
import glob, json, os, pytest

FACTS = {}


def _fds():
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return out


def _hwm_kib():
    with open("/proc/self/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    FACTS["fds_start"] = _fds()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    pids = []
    for path in glob.glob(os.path.join(os.environ["TMPDIR"], "darklaunch-*", "stack", "pids")):
        with open(path, encoding="utf-8") as fh:
            pids += [int(line) for line in fh if line.strip()]
    FACTS["pids"] = pids


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    FACTS["fds_end"] = _fds()
    FACTS["vm_hwm_kib"] = _hwm_kib()
    with open(os.environ["DARKLAUNCH_SOAK_PROBE"], "w", encoding="utf-8") as fh:
        json.dump(FACTS, fh)
'''


@dataclass
class Session:
    index: int
    exit_code: int
    seconds: float
    tests: dict[str, str]
    verdicts: tuple[tuple[str, str], ...]
    stop_reason: str
    pids: list[int]
    leftover_processes: list[str]
    leftover_dirs: list[str]
    fds_start: int
    fds_end: int
    fds_new: list[str]
    peak_rss_mib: float
    harness_fds: int
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and bool(self.tests) and set(self.tests.values()) == {"passed"}


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (a zombie no longer runs)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def tagged(tag: str) -> list[int]:
    """Running processes whose environment carries ``TAG_VAR=tag``."""
    needle = f"\0{TAG_VAR}={tag}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if needle in b"\0" + handle.read() and running(int(entry)):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "(gone)"


def test_outcomes(junit: Path) -> dict[str, str]:
    if not junit.exists():
        return {}
    out = {}
    for case in ET.parse(junit).iter("testcase"):
        outcome = "passed"
        for kind, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            if case.find(kind) is not None:
                outcome = name
                break
        out[case.get("name", "")] = outcome
    return out


def run_session(index: int, root: Path, probe_dir: Path, keep_output: Path) -> Session:
    work = root / f"session-{index:02d}"
    tmpdir = work / "tmp"
    tmpdir.mkdir(parents=True)
    tag = uuid.uuid4().hex
    probe_out = work / "probe.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update({
        "TMPDIR": str(tmpdir),
        TAG_VAR: tag,
        "DARKLAUNCH_SOAK_PROBE": str(probe_out),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(probe_dir), env.get("PYTHONPATH")])),
    })
    argv = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "darklaunch_soak_probe",
        f"--junitxml={work / 'junit.xml'}", f"--darklaunch-report={work / 'report.json'}",
    ]
    started = time.monotonic()
    with open(keep_output / f"session-{index:02d}.txt", "wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - argv list
            argv, cwd=EXAMPLE, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT,
        )
        notes = []
        try:
            code = proc.wait(timeout=SESSION_DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
            notes.append(f"killed after {SESSION_DEADLINE_S:g} s")
    seconds = time.monotonic() - started

    facts: dict[str, Any] = {}
    if probe_out.exists():
        facts = json.loads(probe_out.read_text(encoding="utf-8"))
    else:
        notes.append("the probe wrote nothing")
    report: dict[str, Any] = {}
    if (work / "report.json").exists():
        report = json.loads((work / "report.json").read_text(encoding="utf-8"))
    pids = [int(p) for p in facts.get("pids", [])]
    if len(pids) != 5:
        notes.append(f"the pids file named {len(pids)} processes, expected 5")
    left = sorted(set(p for p in pids if running(p)) | set(tagged(tag)))
    fds_start, fds_end = facts.get("fds_start", {}), facts.get("fds_end", {})
    new_fds = sorted(f"{fd} -> {target}" for fd, target in fds_end.items()
                     if fds_start.get(fd) != target)
    session = Session(
        index=index,
        exit_code=code,
        seconds=seconds,
        tests=test_outcomes(work / "junit.xml"),
        verdicts=tuple((v["metric"], v["outcome"]) for v in report.get("verdicts", [])),
        stop_reason=str(report.get("stop_reason", "")),
        pids=pids,
        leftover_processes=[f"{p}: {cmdline(p)}" for p in left],
        leftover_dirs=[str(p) for p in tmpdir.glob("darklaunch-*")],
        fds_start=len(fds_start),
        fds_end=len(fds_end),
        fds_new=new_fds,
        peak_rss_mib=facts.get("vm_hwm_kib", 0) / 1024.0,
        harness_fds=len(os.listdir("/proc/self/fd")),
        notes=notes,
    )
    shutil.rmtree(work, ignore_errors=True)
    return session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--output", default=None, help="keep each session's output here")
    args = parser.parse_args(argv)

    # Not "darklaunch-*": that is the pattern of a run's own directory, which leak checks look for.
    root = Path(tempfile.mkdtemp(prefix="soak-darklaunch-"))
    probe_dir = root / "probe"
    probe_dir.mkdir()
    (probe_dir / "darklaunch_soak_probe.py").write_text(textwrap.dedent(PROBE), encoding="utf-8")
    outputs = Path(args.output) if args.output else root / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    sessions: list[Session] = []
    print(f"soak: {args.sessions} sessions of {EXAMPLE} (outputs in {outputs})", flush=True)
    print("  #  exit  tests  secs  verdicts                               left  "
          "fds start/end/new  peak RSS MiB  harness fds", flush=True)
    try:
        for index in range(1, args.sessions + 1):
            s = run_session(index, root, probe_dir, outputs)
            sessions.append(s)
            verdicts = ",".join(f"{m.split('-')[0]}:{o}" for m, o in s.verdicts) or "-"
            passed = sum(o == "passed" for o in s.tests.values())
            print(
                f"{s.index:>3}  {s.exit_code:>4}  {passed}/{len(s.tests):<3} {s.seconds:>5.1f}  "
                f"{verdicts:<38} {len(s.leftover_processes) + len(s.leftover_dirs):>4}  "
                f"{s.fds_start:>5}/{s.fds_end}/{len(s.fds_new):<8} {s.peak_rss_mib:>12.1f}  "
                f"{s.harness_fds:>11}" + (f"  {'; '.join(s.notes)}" if s.notes else ""),
                flush=True,
            )
            for line in s.leftover_processes + s.leftover_dirs + s.fds_new:
                print(f"       {line}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # the outputs stay when --output names a place

    passed = [s for s in sessions if s.passed]
    verdict_sets = {s.verdicts for s in sessions}
    leftovers = max(len(s.leftover_processes) + len(s.leftover_dirs) for s in sessions)
    rss = [s.peak_rss_mib for s in sessions]
    fds_new = max(len(s.fds_new) for s in sessions)
    harness = [s.harness_fds for s in sessions]
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    print()
    print(f"passed:               {len(passed)}/{len(sessions)} sessions")
    print(f"consistent verdicts:  {'yes' if len(verdict_sets) == 1 else 'NO'} "
          f"({len(verdict_sets)} distinct: {sorted(verdict_sets)})")
    print(f"leftovers (max):      {leftovers} (processes by PID and tag, darklaunch-* dirs)")
    print(f"pytest fds:           {sessions[0].fds_start} after configure; at most {fds_new} "
          "more after teardown in any session")
    print(f"harness fds:          first {harness[0]}, last {harness[-1]}, max {max(harness)}")
    print(f"pytest peak RSS MiB:  first {rss[0]:.1f}, last {rss[-1]:.1f}, "
          f"min {min(rss):.1f}, max {max(rss):.1f}")
    print(f"descendants' peak RSS MiB (RUSAGE_CHILDREN, largest single process): {children:.1f}")
    print(f"session time s:       mean {sum(s.seconds for s in sessions) / len(sessions):.1f}, "
          f"max {max(s.seconds for s in sessions):.1f}")
    ok = (
        len(passed) == len(sessions)
        and len(verdict_sets) == 1
        and leftovers == 0
        and fds_new == 0
        and harness[-1] == harness[0]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Whose server listens on ``127.0.0.1:port``: the process we started, or another program.

:func:`~.processes.free_port` releases its port before our server binds it, so another program
(another run on this machine, a parallel job, or our own Envoy asking the kernel for any port)
may bind it first. Our server then dies with "address in use", but a probe sent meanwhile is
answered by that program, and the run would measure it. So a probe's connection is used only
when the listening socket is held by our process, its process group or session, or their
descendants (:func:`connect`); otherwise the port is taken (:class:`~.processes.PortInUse`).

Linux: ``/proc/net/tcp`` and ``tcp6`` list the listening sockets with their inode and owner's
uid; the links in ``/proc/<pid>/fd`` name the sockets a process holds (``socket:[inode]``).
A listener held by a process of our user outside our process's tree is another program's.
Where that cannot be told (no ``/proc``, as on macOS; a listener not visible from here, e.g.
behind a NAT rule; one held by another user, e.g. a container's port proxy; a process of ours
whose descriptors cannot be read) the probe alone decides, as it did before this check.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from http.client import HTTPConnection

from pytest_darklaunch.backends.local.processes import ManagedProcess, PortInUse

PROC = "/proc"
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's "st" column


class Owner(enum.Enum):
    """Whose listener takes connections to a port (see :func:`ownership`)."""

    OURS = "ours"
    FOREIGN = "another program"
    NONE = "nobody listens"
    UNKNOWN = "cannot tell"


@dataclass(frozen=True)
class Listener:
    """A listening socket in ``/proc/net/tcp{,6}``: its inode, and its owner's uid."""

    inode: int
    uid: int


def listeners(port: int, proc: str = PROC) -> list[Listener] | None:
    """The listening TCP sockets that take connections to ``127.0.0.1:port`` (bound there, to
    the wildcard address, or to their IPv6 forms); ``None`` when ``/proc/net`` is unreadable."""
    found: list[Listener] = []
    readable = False
    needle = f":{port:04X} "
    for table in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc, "net", table), encoding="ascii") as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            if needle not in line:  # cheap filter: a busy machine has thousands of lines
                continue
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] == _LISTEN and int(hex_port, 16) == port and _reaches_loopback(address):
                found.append(Listener(inode=int(fields[9]), uid=int(fields[7])))
    return found if readable else None


def _reaches_loopback(hex_address: str) -> bool:
    # The kernel prints each 32-bit word of the address as a native-endian integer.
    raw = b"".join(
        int(hex_address[i : i + 8], 16).to_bytes(4, sys.byteorder)
        for i in range(0, len(hex_address), 8)
    )
    ip = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_unspecified or ip == ipaddress.IPv4Address("127.0.0.1")


def socket_inodes(pid: int, proc: str = PROC) -> set[int] | None:
    """The inodes of the sockets ``pid`` holds; ``None`` when its descriptors are not readable
    (another user's process); empty when it is gone."""
    fd_dir = os.path.join(proc, str(pid), "fd")
    try:
        names = os.listdir(fd_dir)
    except FileNotFoundError:
        return set()
    except OSError:
        return None
    held = set()
    for name in names:
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            held.add(int(target[8:-1]))
    return held


def process_tree(leader: int, proc: str = PROC) -> set[int]:
    """``leader``, the members of its process group and session, and all their descendants."""
    children: dict[int, list[int]] = {}
    tree = {leader}
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "stat"), encoding="utf-8", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        pid, ppid, group, session = int(entry), int(fields[1]), int(fields[2]), int(fields[3])
        children.setdefault(ppid, []).append(pid)
        if leader in (group, session):
            tree.add(pid)
    pending = list(tree)
    while pending:  # descendants that left the group (setsid) still belong to the tree
        for child in children.get(pending.pop(), []):
            if child not in tree:
                tree.add(child)
                pending.append(child)
    return tree


def owner(port: int, leader: int, proc: str = PROC) -> Owner:
    """Whose listener takes connections to ``127.0.0.1:port``: ``leader``'s tree's or not."""
    return ownership(port, leader, proc)[0]


def ownership(port: int, leader: int, proc: str = PROC) -> tuple[Owner, list[Listener]]:
    """:func:`owner`, and the listeners on ``port`` that ``leader``'s tree does not hold."""
    found = listeners(port, proc)
    if found is None:
        return Owner.UNKNOWN, []
    if not found:
        return Owner.NONE, []
    wanted = {listener.inode for listener in found}
    held = socket_inodes(leader, proc)  # usually enough: the server itself holds the socket
    complete = held is not None
    held = held or set()
    if not wanted <= held:
        for pid in process_tree(leader, proc) - {leader}:
            inodes = socket_inodes(pid, proc)
            complete = complete and inodes is not None
            held |= inodes or set()
    others = [listener for listener in found if listener.inode not in held]
    if not others:
        return Owner.OURS, []
    if complete and any(listener.uid == os.getuid() for listener in others):
        return Owner.FOREIGN, others
    # Held by another user (a port proxy?) beside ours, or a process of ours we cannot read.
    return (Owner.OURS if len(others) < len(found) else Owner.UNKNOWN), others


def holder(inode: int, proc: str = PROC) -> str:
    """Which readable process holds socket ``inode``, for error messages: ``pid 123 (envoy)``."""
    for entry in filter(str.isdigit, _listdir(proc)):
        if inode in (socket_inodes(int(entry), proc) or ()):
            try:
                with open(os.path.join(proc, entry, "comm"), encoding="utf-8") as handle:
                    return f"pid {entry} ({handle.read().strip()})"
            except OSError:
                return f"pid {entry}"
    return f"socket inode {inode}, holder not found"


def _listdir(path: str) -> Iterable[str]:
    try:
        return os.listdir(path)
    except OSError:
        return ()


def connect(process: ManagedProcess, port: int, timeout_s: float = 1.0) -> HTTPConnection:
    """An HTTP connection to ``127.0.0.1:port`` that reaches ``process``, not another program.

    The check runs between the TCP handshake (so a listener exists: nothing to check while the
    port is refused) and the request, so another program never gets a request of ours; the
    connection stays with the listener it was made to. Raises ``OSError`` while refused and
    :class:`~.processes.PortInUse` (the caller starts again on new ports) for a stranger.
    """
    conn = HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.connect()
        refuse_foreign(process, port)
    except BaseException:
        conn.close()
        raise
    return conn


def refuse_foreign(process: ManagedProcess, port: int) -> None:
    """Raise :class:`~.processes.PortInUse` when another program listens on ``port``."""
    verdict, others = ownership(port, process.pid)
    if verdict is not Owner.FOREIGN:
        return
    by = ", ".join(holder(listener.inode) for listener in others)
    what = f"port {port} is taken by another program ({by})"
    if not process.alive():
        # Its log usually says "address in use"; the port is taken whatever it says.
        raise PortInUse(str(process.failure(f"exited: {what}")))
    raise PortInUse(
        f"{process.name} (pid {process.pid}): {what}; its answers are not {process.name}'s"
    )

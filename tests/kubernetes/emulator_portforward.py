"""Pod port-forwarding of the Kubernetes API *emulator* (tests only).

Speaks the API server's WebSocket port-forward protocol (``v4.channel.k8s.io``): after the
upgrade, the server sends the port number (2 bytes, little endian) on the data channel 0 and
the error channel 1; afterwards each binary frame is a channel byte plus payload. Channel 0 is
relayed to the local TCP address registered with ``Emulator.forward_to``.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
from typing import TYPE_CHECKING, Any, BinaryIO

from .emulator_store import ApiError

if TYPE_CHECKING:
    from .emulator import Emulator

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x2, 0x8, 0x9, 0xA


def _frame(opcode: int, payload: bytes) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    return head + payload


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) < n:
        raise ConnectionError("websocket closed")
    return data


def _read_frame(stream: BinaryIO) -> tuple[int, bytes]:
    b1, b2 = _read_exact(stream, 2)
    length = b2 & 0x7F
    if length == 126:
        length = struct.unpack(">H", _read_exact(stream, 2))[0]
    elif length == 127:
        length = struct.unpack(">Q", _read_exact(stream, 8))[0]
    mask = _read_exact(stream, 4) if b2 & 0x80 else b""
    data = _read_exact(stream, length) if length else b""
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return b1 & 0x0F, data


def serve_portforward(
    emulator: Emulator, h: Any, namespace: str, pod: str, query: dict[str, str]
) -> None:
    """Upgrade the request to a WebSocket and relay ``ports`` to the registered address."""
    if h.headers.get("Upgrade", "").lower() != "websocket":
        raise ApiError(400, "port-forward needs a WebSocket upgrade")
    port = int(query.get("ports", "0"))
    accept = base64.b64encode(
        hashlib.sha1((h.headers["Sec-WebSocket-Key"] + _GUID).encode()).digest()  # noqa: S324
    ).decode()
    h.send_response(101, "Switching Protocols")
    h.send_header("Upgrade", "websocket")
    h.send_header("Connection", "Upgrade")
    h.send_header("Sec-WebSocket-Accept", accept)
    h.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
    h.end_headers()
    h.close_connection = True
    lock = threading.Lock()

    def send(opcode: int, payload: bytes) -> None:
        with lock:
            h.wfile.write(_frame(opcode, payload))
            h.wfile.flush()

    port_bytes = struct.pack("<H", port)
    send(OP_BINARY, b"\x00" + port_bytes)
    send(OP_BINARY, b"\x01" + port_bytes)
    address = emulator.forwards.get((namespace, pod, port))
    if address is None:
        send(
            OP_BINARY,
            b"\x01" + f"error forwarding port {port} to pod {pod}: not registered".encode(),
        )
        send(OP_CLOSE, struct.pack(">H", 1000))
        return
    upstream = socket.create_connection(address)

    def from_upstream() -> None:
        try:
            for data in iter(lambda: upstream.recv(65536), b""):
                send(OP_BINARY, b"\x00" + data)
            send(OP_CLOSE, struct.pack(">H", 1000))
        except OSError:
            pass  # the client side closed first

    reader = threading.Thread(target=from_upstream, daemon=True)
    reader.start()
    try:
        for opcode, data in iter(lambda: _read_frame(h.rfile), None):
            if opcode == OP_CLOSE:
                break
            if opcode == OP_PING:
                send(OP_PONG, data)
            elif opcode == OP_BINARY and data[:1] == b"\x00" and len(data) > 1:
                upstream.sendall(data[1:])
    except (ConnectionError, OSError):
        pass  # the client went away
    finally:
        try:
            upstream.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # upstream already closed
        upstream.close()
        reader.join(timeout=5)

"""A local TCP port relayed to a pod's port through the API server, like ``kubectl port-forward``.

A listening socket on ``127.0.0.1`` port 0; each accepted connection gets its own WebSocket to
the pod's ``portforward`` subresource (protocol ``v4.channel.k8s.io``: every binary frame starts
with a channel byte, 0 for data and 1 for errors, and each channel's first frame carries the
port number). The WebSocket is opened through the generated ``CoreV1Api`` method, so the
client's authentication applies; the relay itself is ours, so that every way a connection can
end (either side closing, a reset, an error frame) closes both sides and nothing leaks.

>>> forwarder = PortForwarder(api_client, "istio-system", "prometheus-7d9f", 9090)  # doctest: +SKIP
>>> forwarder.start()  # doctest: +SKIP
'http://127.0.0.1:41873'
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
from typing import Any
from urllib.parse import parse_qsl, urlparse

from pytest_darklaunch.backends.kubernetes.api import POD, SERVICE, KubeApi
from pytest_darklaunch.backends.kubernetes.api_errors import translate
from pytest_darklaunch.errors import ProvisioningError

_CHUNK = 64 * 1024
DATA, ERROR = 0, 1


class PortForwarder:
    """Relays connections to ``127.0.0.1:<free port>`` to ``pod:port`` in ``namespace``."""

    def __init__(self, api_client: Any, namespace: str, pod: str, port: int) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.pod = pod
        self.port = port
        self._listener: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._lock = threading.Lock()
        self._open: set[Any] = set()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    @property
    def local_port(self) -> int:
        if self._listener is None:
            raise RuntimeError("PortForwarder not started")
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def _open_websocket(self) -> Any:
        """A WebSocket to the pod port whose two greeting frames were read and checked."""
        from kubernetes.client import CoreV1Api
        from kubernetes.stream import ws_client
        from kubernetes.stream.stream import _websocket_request

        # The client's own route to a WebSocket (as kubernetes.stream.portforward takes it), with
        # the raw WebSocket handed back instead of its PortForward wrapper thread.
        def connect(configuration: Any, _method: str, url: str, **kwargs: Any) -> Any:
            query = kwargs.get("query_params") or parse_qsl(urlparse(url).query)
            ws_url = ws_client.get_websocket_url(url, query)  # type: ignore[no-untyped-call]
            return ws_client.create_websocket(  # type: ignore[no-untyped-call]
                configuration, ws_url, kwargs.get("headers")
            )

        ws = _websocket_request(  # type: ignore[no-untyped-call]
            connect,
            {"_preload_content": False},
            CoreV1Api(self.api_client).connect_get_namespaced_pod_portforward,
            self.pod,
            self.namespace,
            ports=str(self.port),
        )
        # Each channel's first frame names the port; anything else is the server's error.
        greeted: set[int | None] = set()
        for _ in (DATA, ERROR):
            channel, payload = _read(ws)
            if len(payload) != 2 or struct.unpack("<H", payload)[0] != self.port:
                ws.shutdown()
                detail = payload.decode(errors="replace") or "closed before it started"
                raise ConnectionError(f"port-forward to {self.pod}: {detail}")
            greeted.add(channel)
        if greeted != {DATA, ERROR}:
            ws.shutdown()
            raise ConnectionError(f"port-forward to {self.pod}: unexpected channels {greeted}")
        return ws

    def start(self) -> str:
        """Check that the API server lets us forward, then listen; returns the local URL."""
        from websocket import WebSocketBadStatusException, WebSocketException

        try:
            self._open_websocket().shutdown()
        except WebSocketBadStatusException as exc:
            exc.status = exc.status_code  # type: ignore[attr-defined]
            exc.body = exc.resp_body  # type: ignore[attr-defined]
            raise translate(exc, "create", "pods/portforward", self.namespace) from exc
        except (WebSocketException, OSError) as exc:
            raise ProvisioningError(
                f"cannot port-forward to pod {self.namespace}/{self.pod}:{self.port}: {exc}"
            ) from exc
        self._listener = socket.create_server(("127.0.0.1", 0))
        # close() writes here to wake the accept loop (closing a socket another thread waits on
        # does not wake that thread everywhere).
        self._wake = socket.socketpair()
        self._thread = threading.Thread(
            target=self._accept, name=f"darklaunch port-forward {self.pod}:{self.port}", daemon=True
        )
        self._thread.start()
        return self.url

    def _accept(self) -> None:
        assert self._listener is not None and self._wake is not None
        wake = self._wake[0]
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            for ready in iter(lambda: [key.fileobj for key, _ in selector.select()], None):
                if wake in ready:
                    return
                client, _ = self._listener.accept()
                threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        from websocket import WebSocketException

        try:
            ws = self._open_websocket()
        except (WebSocketException, OSError) as exc:
            self.last_error = str(exc)
            client.close()
            return
        with self._lock:
            self._open.update((client, ws))
        upstream = threading.Thread(target=self._to_pod, args=(client, ws), daemon=True)
        upstream.start()
        try:
            for channel, payload in iter(lambda: _read(ws), (None, b"")):
                if channel == DATA:
                    client.sendall(payload)
                elif channel == ERROR and payload:
                    self.last_error = payload.decode(errors="replace")
                    break
        except OSError:
            pass  # the local client went away; both sides are closed below
        finally:
            _close_socket(client)
            upstream.join(timeout=5)
            ws.shutdown()
            with self._lock:
                self._open.difference_update((client, ws))

    @staticmethod
    def _to_pod(client: socket.socket, ws: Any) -> None:
        from websocket import ABNF, WebSocketException

        try:
            for data in iter(lambda: client.recv(_CHUNK), b""):
                ws.send(bytes([DATA]) + data, ABNF.OPCODE_BINARY)
        except (WebSocketException, OSError):
            pass  # the pod side ended first; the reader closes everything
        finally:
            ws.abort()  # wakes the reader, which closes both sides

    def close(self) -> None:
        """Stop listening and cut every relayed connection; safe to call twice."""
        if self._thread is not None and self._wake is not None:
            self._wake[1].send(b"x")
            self._thread.join(timeout=5)
            self._thread = None
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for conn in list(self._open):
                if isinstance(conn, socket.socket):
                    _close_socket(conn)
                else:
                    conn.abort()
            self._open.clear()
        if self._wake is not None:
            for sock in self._wake:
                sock.close()
            self._wake = None


def _read(ws: Any) -> tuple[int | None, bytes]:
    """The next ``(channel, payload)``; ``(None, b"")`` once the WebSocket ended."""
    from websocket import ABNF, WebSocketException

    try:
        # Without control frames: pings are answered inside, a close frame ends the stream.
        opcode, data = ws.recv_data()
    except (WebSocketException, OSError):
        return None, b""  # closed, reset, or shut down by the other thread
    if opcode != ABNF.OPCODE_BINARY or not data:
        return None, b""
    return data[0], bytes(data[1:])


def _close_socket(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already disconnected
    sock.close()


def parse_service(text: str, default_port: int = 9090) -> tuple[str, str, int]:
    """``NAMESPACE/NAME[:PORT]`` of a Prometheus service.

    >>> parse_service("istio-system/prometheus"), parse_service("monitoring/prom:9091")
    (('istio-system', 'prometheus', 9090), ('monitoring', 'prom', 9091))
    """
    ref, _, port = text.partition(":")
    namespace, _, name = ref.partition("/")
    if not namespace or not name or (port and not port.isdigit()):
        raise ValueError(text)
    return namespace, name, int(port) if port else default_port


def resolve_service_pod(api: KubeApi, namespace: str, name: str, port: int) -> tuple[str, int]:
    """A running pod behind Service ``namespace/name`` and the container port ``port`` maps to."""
    svc = api.get(SERVICE, namespace, name)
    if svc is None:
        raise ProvisioningError(
            f"Prometheus service {namespace}/{name} not found; install Prometheus (Istio's addon "
            "creates istio-system/prometheus) or pass --darklaunch-prometheus-url"
        )
    spec = svc.get("spec") or {}
    selector = spec.get("selector") or {}
    if not selector:
        raise ProvisioningError(f"service {namespace}/{name} has no pod selector to forward to")
    target: Any = port
    for item in spec.get("ports") or []:
        if item.get("port") == port:
            target = item.get("targetPort", port)
    label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    pods, _ = api.list(POD, namespace, label_selector=label_selector)
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    if not running:
        raise ProvisioningError(
            f"no running pod behind service {namespace}/{name} (selector {label_selector})"
        )
    pod = running[0]
    if isinstance(target, str) and not target.isdigit():
        for container in (pod.get("spec") or {}).get("containers") or []:
            for cport in container.get("ports") or []:
                if cport.get("name") == target:
                    return pod["metadata"]["name"], int(cport["containerPort"])
        raise ProvisioningError(
            f"service {namespace}/{name} targets port {target!r}, which pod "
            f"{pod['metadata']['name']} does not name"
        )
    return pod["metadata"]["name"], int(target)

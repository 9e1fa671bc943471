"""A local TCP port relayed to a pod's port through the API server, like ``kubectl port-forward``.

The kubernetes client's ``portforward`` gives a socket per WebSocket connection; this module
puts a listening socket on ``127.0.0.1`` port 0 in front of it and opens one such connection per
accepted client, so any HTTP client (the Prometheus client included) can use a plain URL.

>>> forwarder = PortForwarder(api_client, "istio-system", "prometheus-7d9f", 9090)  # doctest: +SKIP
>>> forwarder.start()  # doctest: +SKIP
'http://127.0.0.1:41873'
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Optional

from pytest_darklaunch.backends.kubernetes.api import (
    POD,
    SERVICE,
    KubeApi,
    translate,
)
from pytest_darklaunch.errors import ProvisioningError

_CHUNK = 64 * 1024


class PortForwarder:
    """Relays connections to ``127.0.0.1:<free port>`` to ``pod:port`` in ``namespace``."""

    def __init__(self, api_client: Any, namespace: str, pod: str, port: int) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.pod = pod
        self.port = port
        self._listener: Optional[socket.socket] = None
        self._lock = threading.Lock()
        self._open: set[Any] = set()
        self._thread: Optional[threading.Thread] = None
        self.last_error: Optional[str] = None

    @property
    def local_port(self) -> int:
        if self._listener is None:
            raise RuntimeError("PortForwarder not started")
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def _connect(self) -> Any:
        from kubernetes.client import CoreV1Api
        from kubernetes.stream import portforward

        api = CoreV1Api(self.api_client)
        return portforward(
            api.connect_get_namespaced_pod_portforward, self.pod, self.namespace,
            ports=str(self.port),
        )

    def start(self) -> str:
        """Check that the API server lets us forward, then listen; returns the local URL."""
        from kubernetes.client.exceptions import ApiException

        try:
            probe = self._connect()
        except ApiException as exc:
            if "403" in str(getattr(exc, "reason", "")):
                exc.status = 403
            raise translate(exc, "create", "pods/portforward", self.namespace) from exc
        probe.close()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(
            target=self._accept, name=f"darklaunch port-forward {self.pod}:{self.port}", daemon=True
        )
        self._thread.start()
        return self.url

    def _accept(self) -> None:
        assert self._listener is not None
        listener = self._listener
        try:
            for client in iter(lambda: listener.accept()[0], None):
                threading.Thread(target=self._relay, args=(client,), daemon=True).start()
        except OSError:
            return  # the listener was closed

    def _relay(self, client: socket.socket) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            forward = self._connect()
        except ApiException as exc:
            self.last_error = str(exc)
            client.close()
            return
        remote = forward.socket(self.port)
        remote.setblocking(True)
        with self._lock:
            self._open.update((client, remote))
        upstream = threading.Thread(target=_pump, args=(client, remote), daemon=True)
        upstream.start()
        _pump(remote, client)
        upstream.join()
        with self._lock:
            self._open.difference_update((client, remote))
        forward.close()

    def close(self) -> None:
        """Stop listening and cut every relayed connection; safe to call twice."""
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for sock in list(self._open):
                _shutdown(sock)
            self._open.clear()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _pump(source: Any, sink: Any) -> None:
    """Copy ``source`` to ``sink`` until either side ends, then end both."""
    try:
        for data in iter(lambda: source.recv(_CHUNK), b""):
            sink.sendall(data)
    except OSError:
        pass  # the other direction or close() ended the connection
    finally:
        _shutdown(source)
        _shutdown(sink)


def _shutdown(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed
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

"""An in-process Kubernetes API *emulator* for the tests. It is not a cluster.

A threaded HTTP server on 127.0.0.1 port 0 that speaks enough of the Kubernetes REST API for
the official client to drive the kubernetes backend against it:

- discovery (``/version``, ``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>/<version>``) for
  core/v1 namespaces, pods, services, events; batch/v1 jobs; serving.knative.dev/v1 services and
  revisions; networking.istio.io v1, v1beta1 and v1alpha3 virtualservices;
  gateway.networking.k8s.io v1 and v1beta1 httproutes and gateways (``without_groups`` leaves
  groups out, as a cluster without those CRDs);
- create, get, list (label and field selectors), ``?watch=true`` streaming from a
  resourceVersion (chunked, one JSON event per line, ``timeoutSeconds``), patch (server-side
  apply ``application/apply-patch+yaml`` with ``fieldManager``/``force``, merge patch), update,
  delete and deletecollection with ``propagationPolicy``; 404/409 answered with Status objects;
- simulated controllers (see :mod:`emulator_controllers`): Knative's (revisions, their pods and
  conditions, per outcome), the Job controller, Istio's injection webhook, the garbage
  collector; and a model of the mesh's data path (:mod:`emulator_mesh`: where a request and
  its mirrored copy go, and what the sidecars count);
- pod port-forwarding over WebSocket (``v4.channel.k8s.io``) to a local TCP address;
- fault injection per verb and resource (``fail``), hooks (``on``) and a request log.

>>> with Emulator() as api:  # doctest: +SKIP
...     client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=api.url))
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

from .emulator_controllers import Controllers
from .emulator_portforward import serve_portforward
from .emulator_rest import discovery, perform, resource_list, watch
from .emulator_store import RESOURCES, ApiError, ResourceType, Store


@dataclass
class Request:
    """One API request as the emulator understood it (kept in :attr:`Emulator.requests`)."""

    method: str
    path: str
    verb: str
    resource: str  # plural, "plural.group" in ``qualified``, or "pods/portforward"
    qualified: str
    namespace: str
    name: str
    query: dict[str, str]
    content_type: str = ""
    body: Any = None


@dataclass
class Fault:
    verb: str
    resource: str
    code: int
    times: int | None = 1
    message: str = ""
    hits: int = 0


@dataclass
class Hook:
    verb: str
    resource: str
    callback: Callable[[Request], None]
    times: int | None = 1
    before: bool = False


@dataclass
class Route:
    rt: ResourceType | None
    version: str
    namespace: str
    name: str
    sub: str
    discovery: dict[str, Any] | None = field(default=None)


class Emulator:
    """Start with ``with Emulator() as api:``; ``api.url`` is the base URL for the client."""

    SEED_NAMESPACES = ("default", "kube-system", "istio-system", "knative-serving")

    def __init__(self, without_groups: tuple[str, ...] = ()) -> None:
        self.resources = tuple(r for r in RESOURCES if r.group not in without_groups)
        self.store = Store()
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.hooks: list[Hook] = []
        # (namespace, resource.group, verb) of every authorization, as RBAC would see them
        self.authorized: list[tuple[str, str, str]] = []
        self.forwards: dict[tuple[str, str, int], tuple[str, int]] = {}
        self.controllers = Controllers(self)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for ns in self.SEED_NAMESPACES:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        self.controllers.start()

    def stop(self) -> None:
        with self.store.lock:
            self.store.closed = True
            self.store.changed.notify_all()
        self.controllers.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- test helpers -----------------------------------------------------------------------

    def resource(self, plural: str, group: str = "") -> ResourceType:
        return next(r for r in self.resources if r.plural == plural and r.group == group)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Add an object directly (as if another client had created it)."""
        group, _, _ = obj["apiVersion"].rpartition("/")
        rt = next(r for r in self.resources if r.group == group and r.kind == obj["kind"])
        return self.store.create(rt, copy.deepcopy(obj))

    def objects(
        self,
        plural: str,
        group: str = "",
        namespace: str | None = None,
        labels: str | None = None,
    ) -> list[dict[str, Any]]:
        return self.store.list(self.resource(plural, group), namespace, labels)

    def fail(
        self, verb: str, resource: str, code: int, times: int | None = 1, message: str = ""
    ) -> Fault:
        """Answer the next ``times`` (``None``: all) matching requests with HTTP ``code``.

        ``resource`` is a plural (``jobs``), ``plural.group`` or ``pods/portforward``.
        """
        fault = Fault(verb, resource, code, times, message)
        self.faults.append(fault)
        return fault

    def on(
        self,
        verb: str,
        resource: str,
        callback: Callable[[Request], None],
        times: int | None = 1,
        before: bool = False,
    ) -> None:
        """Call ``callback`` after a matching request was processed, before its response, or
        with ``before`` ahead of processing it (what the callback changes is in the answer)."""
        self.hooks.append(Hook(verb, resource, callback, times, before))

    def forward_to(self, namespace: str, pod: str, port: int, address: tuple[str, int]) -> None:
        """Port-forwarding to ``pod:port`` reaches ``address`` (a local TCP server)."""
        self.forwards[(namespace, pod, port)] = address

    def calls(self, verb: str, resource: str = "") -> list[Request]:
        return [r for r in self.requests if r.verb == verb and _matches(r, resource)]

    # -- request handling -------------------------------------------------------------------

    def route(self, path: str) -> Route:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"]:
            group, rest = "", parts[1:]
        elif parts[:1] == ["apis"]:
            group, rest = (parts[1], parts[2:]) if len(parts) > 1 else ("", [])
        else:
            return Route(None, "", "", "", "", discovery=discovery(self, parts))
        if not rest or (not group and parts == ["api"]):
            return Route(None, "", "", "", "", discovery=discovery(self, parts))
        version, rest = rest[0], rest[1:]
        if not rest:
            return Route(None, version, "", "", "", discovery=resource_list(self, group, version))
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else ""), "/".join(rest[2:])
        rt = next(
            (
                r
                for r in self.resources
                if r.group == group and r.plural == plural and version in r.versions
            ),
            None,
        )
        if rt is None:
            raise ApiError(404, f"the server could not find the requested resource ({path})")
        return Route(rt, version, namespace, name, sub)

    def check_faults(self, request: Request) -> None:
        """The emulator's authorizer: records what was asked, answers injected faults."""
        self.authorized.append((request.namespace, request.qualified, request.verb))
        for fault in self.faults:
            if (
                fault.verb == request.verb
                and _matches(request, fault.resource)
                and (fault.times is None or fault.hits < fault.times)
            ):
                fault.hits += 1
                if fault.code == 403:
                    group = request.qualified.partition(".")[2]
                    message = fault.message or (
                        f'{request.qualified} "{request.name}" is forbidden: User '
                        f'"system:serviceaccount:ci:darklaunch" cannot {request.verb} resource '
                        f'"{request.resource}" in API group "{group}" in the namespace '
                        f'"{request.namespace}"'
                    )
                else:
                    message = (
                        fault.message
                        or f"injected fault {fault.code} for {request.verb} {request.qualified}"
                    )
                raise ApiError(
                    fault.code, message, details={"name": request.name, "kind": request.resource}
                )

    def run_hooks(self, request: Request, before: bool = False) -> None:
        for hook in self.hooks:
            if (
                hook.before == before
                and hook.verb == request.verb
                and _matches(request, hook.resource)
                and (hook.times is None or hook.times > 0)
            ):
                if hook.times is not None:
                    hook.times -= 1
                hook.callback(request)

    def handle(self, h: _Handler) -> None:
        url = urlparse(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            route = self.route(url.path)
            if route.discovery is not None:
                return h.send_json(200, route.discovery)
            assert route.rt is not None
            request = self._request(h.command, url.path, route, query, h.headers, raw)
            self.requests.append(request)
            self.check_faults(request)
            self.run_hooks(request, before=True)
            if request.verb == "watch":
                self.run_hooks(request)
                return watch(self, h, route, query)
            if request.resource == "pods/portforward":
                self.run_hooks(request)
                return serve_portforward(self, h, route.namespace, route.name, query)
            code, body = perform(self, request, route)
            self.run_hooks(request)
            h.send_json(code, body)
        except ApiError as exc:
            h.send_json(exc.code, exc.status())

    def _request(
        self, method: str, path: str, route: Route, query: dict[str, str], headers: Any, raw: bytes
    ) -> Request:
        rt = route.rt
        assert rt is not None
        if route.sub:
            resource = f"{rt.plural}/{route.sub}"
            verb = "create" if method in ("GET", "POST") else method.lower()
        else:
            resource = rt.plural
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, "")
            if method == "GET":
                verb = (
                    "get"
                    if route.name
                    else ("watch" if query.get("watch") in ("true", "1") else "list")
                )
            if method == "DELETE":
                verb = "delete" if route.name else "deletecollection"
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip()
        body: Any = None
        if raw:
            try:
                body = yaml.safe_load(raw) if content_type.endswith("yaml") else json.loads(raw)
            except ValueError as exc:
                raise ApiError(400, f"cannot decode body: {exc}") from None
        qualified = resource if not rt.group else f"{resource}.{rt.group}"
        return Request(
            method,
            path,
            verb,
            resource,
            qualified,
            route.namespace,
            route.name,
            query,
            content_type,
            body,
        )


def _matches(request: Request, resource: str) -> bool:
    return resource in ("", "*", request.resource, request.qualified)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # one small response must not wait for a delayed ACK
    emulator: Emulator

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: the emulator keeps its own request log."""

    def send_json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_chunked(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def send_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        self.close_connection = True

    def _any(self) -> None:
        self.emulator.handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

"""REST verbs and discovery of the Kubernetes API *emulator* (tests only): see :mod:`emulator`.

``perform`` answers get, list, create, update, patch, delete and deletecollection on the store;
``watch`` streams events as chunked JSON lines; ``discovery`` and ``resource_list`` serve the
documents the client's ``DynamicClient`` reads before its first request.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .emulator_store import ApiError, apply_config, field_matcher, label_matcher, merge_patch

if TYPE_CHECKING:
    from .emulator import Emulator, Request, Route, _Handler


def discovery(emulator: Emulator, parts: list[str]) -> dict[str, Any]:
    if parts == ["version"]:
        return {
            "major": "1",
            "minor": "31",
            "gitVersion": "v1.31.0-emulator",
            "platform": "linux/amd64",
        }
    if parts == ["api"]:
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if parts == ["apis"]:
        groups: dict[str, list[str]] = {}
        for r in emulator.resources:
            if r.group:
                groups.setdefault(r.group, [])
                groups[r.group] += [v for v in r.versions if v not in groups[r.group]]
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                    "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                }
                for g, vs in groups.items()
            ],
        }
    raise ApiError(404, f"the server could not find the requested resource (/{'/'.join(parts)})")


def resource_list(emulator: Emulator, group: str, version: str) -> dict[str, Any]:
    found = [r for r in emulator.resources if r.group == group and version in r.versions]
    if not found:
        raise ApiError(404, f"the server could not find the requested resource ({group}/{version})")
    resources = [
        {
            "name": r.plural,
            "singularName": r.kind.lower(),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(r.verbs),
        }
        for r in found
    ]
    if not group:
        resources.append(
            {
                "name": "pods/portforward",
                "singularName": "",
                "namespaced": True,
                "kind": "PodPortForwardOptions",
                "verbs": ["create", "get"],
            }
        )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def perform(emulator: Emulator, request: Request, route: Route) -> tuple[int, Any]:
    rt, store, q = route.rt, emulator.store, request.query
    assert rt is not None
    api_version = rt.api_version(route.version)

    def out(obj: dict[str, Any]) -> dict[str, Any]:
        obj["apiVersion"] = api_version
        return obj

    if request.verb == "get":
        obj = store.get(rt, route.namespace, route.name)
        if obj is None:
            raise ApiError(
                404,
                f'{rt.qualified} "{route.name}" not found',
                details={"name": route.name, "group": rt.group, "kind": rt.plural},
            )
        return 200, out(obj)
    if request.verb in ("list", "deletecollection"):
        # One lock hold for the items and the resourceVersion: a write landing between the two
        # (a controller's status update) would be neither in the items nor after the version,
        # so a watch from that version would never deliver it, unlike on an API server.
        with store.lock:
            items = store.list(
                rt, route.namespace or None, q.get("labelSelector"), q.get("fieldSelector")
            )
            if request.verb == "deletecollection":
                items = [
                    store.delete(
                        rt,
                        i["metadata"].get("namespace", ""),
                        i["metadata"]["name"],
                        q.get("propagationPolicy"),
                    )
                    for i in items
                ]
            version = str(store.rv)
        return 200, {
            "kind": f"{rt.kind}List",
            "apiVersion": api_version,
            "metadata": {"resourceVersion": version},
            "items": [out(i) for i in items],
        }
    if request.verb == "create":
        body = dict(request.body or {})
        body.setdefault("metadata", {})["namespace"] = route.namespace
        return 201, out(store.create(rt, body))
    if request.verb == "update":
        body = dict(request.body or {})
        current = store.get(rt, route.namespace, route.name)
        given = body.get("metadata", {}).get("resourceVersion")
        if current and given and given != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on {rt.qualified} "{route.name}": '
                "the object has been modified; please apply your changes to the latest version",
            )
        if current:
            body["status"] = current.get("status")
        return 200, out(store.replace(rt, body))
    if request.verb == "patch":
        return patch(emulator, request, route, out)
    if request.verb == "delete":
        obj = store.delete(rt, route.namespace, route.name, q.get("propagationPolicy"))
        return 200, out(obj)
    raise ApiError(405, f"method {request.method} not allowed")


def patch(
    emulator: Emulator,
    request: Request,
    route: Route,
    out: Callable[[dict[str, Any]], dict[str, Any]],
) -> tuple[int, Any]:
    rt, store = route.rt, emulator.store
    assert rt is not None
    if not isinstance(request.body, dict):
        raise ApiError(400, "the patch body must be an object")
    key = (rt.group, rt.plural, route.namespace, route.name)
    with store.lock:
        current = store.get(rt, route.namespace, route.name)
        if request.content_type == "application/apply-patch+yaml":
            manager = request.query.get("fieldManager")
            if not manager:
                raise ApiError(
                    400,
                    "PatchOptions.meta.k8s.io is invalid: fieldManager: Required value: "
                    "is required for apply patch",
                )
            body = request.body
            if body.get("metadata", {}).get("name") != route.name:
                raise ApiError(400, "the name of the object does not match the name on the URL")
            configs = store.configs.setdefault(key, {})
            merged = apply_config(
                current, body, configs, manager, request.query.get("force") == "true"
            )
            merged.setdefault("metadata", {})["managedFields"] = [
                {
                    "manager": m,
                    "operation": "Apply",
                    "apiVersion": body.get("apiVersion"),
                    "fieldsType": "FieldsV1",
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                for m in configs
            ]
            if current is None:
                # An apply that creates is authorized as create too, as the API server does.
                emulator.check_faults(dataclasses.replace(request, verb="create"))
                merged["metadata"]["namespace"] = route.namespace
                return 201, out(store.create(rt, merged))
            merged["status"] = current.get("status")
            return 200, out(store.replace(rt, merged))
        if request.content_type in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ):
            if current is None:
                raise ApiError(
                    404,
                    f'{rt.qualified} "{route.name}" not found',
                    details={"name": route.name, "group": rt.group, "kind": rt.plural},
                )
            return 200, out(store.replace(rt, merge_patch(current, request.body)))
    raise ApiError(415, f"the body of the request was in an unknown format: {request.content_type}")


def watch(emulator: Emulator, h: _Handler, route: Route, query: dict[str, str]) -> None:
    rt, store = route.rt, emulator.store
    assert rt is not None

    labels, fields = (
        label_matcher(query.get("labelSelector")),
        field_matcher(query.get("fieldSelector")),
    )
    deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
    since = query.get("resourceVersion") or "0"
    h.start_chunked()

    def send(kind: str, obj: dict[str, Any]) -> None:
        obj = copy.deepcopy(obj)
        obj["apiVersion"] = rt.api_version(route.version)
        h.send_chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

    def wanted(obj: dict[str, Any]) -> bool:
        ns = obj.get("metadata", {}).get("namespace", "")
        return (not route.namespace or ns == route.namespace) and labels(obj) and fields(obj)

    try:
        with store.lock:
            position = int(since)
            if since == "0":
                initial = store.list(
                    rt,
                    route.namespace or None,
                    query.get("labelSelector"),
                    query.get("fieldSelector"),
                )
                position = store.rv
        if since == "0":
            for obj in initial:
                send("ADDED", obj)
        while time.monotonic() < deadline:
            with store.lock:
                pending = store.history_after(position)
                if not pending and not store.closed:
                    store.changed.wait(timeout=max(0.0, deadline - time.monotonic()))
                    pending = store.history_after(position)
                if store.closed:
                    break
            for event in pending:
                position = event.rv
                if (event.group, event.plural) == (rt.group, rt.plural) and wanted(event.obj):
                    send(event.type, event.obj)
        h.end_chunked()
    except (BrokenPipeError, ConnectionResetError):
        return  # the client went away

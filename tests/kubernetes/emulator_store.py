"""Object store of the Kubernetes API *emulator* (tests only): REST semantics without a cluster.

Keeps objects per resource type, namespace and name with resourceVersion, generation, uid and
ownerReferences; records every change as a watch event; implements label and field selectors,
server-side apply (field managers, conflicts, ``force``), JSON merge patch and cascading
deletion: Foreground and Orphan complete at once (no finalizers), Background hands the owner's
uid to ``collect`` (the emulated garbage collector, which removes the dependents later, as
Kubernetes does). It is deliberately small: no admission, no defaulting.
"""

from __future__ import annotations

import copy
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Key = tuple[str, str, str, str]  # group, plural, namespace, name


@dataclass(frozen=True)
class ResourceType:
    group: str
    versions: tuple[str, ...]
    plural: str
    kind: str
    namespaced: bool = True
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version


RESOURCES = (
    ResourceType("", ("v1",), "namespaces", "Namespace", namespaced=False),
    ResourceType("", ("v1",), "pods", "Pod"),
    ResourceType("", ("v1",), "services", "Service"),
    ResourceType("", ("v1",), "events", "Event"),
    ResourceType("", ("v1",), "secrets", "Secret"),
    ResourceType("batch", ("v1",), "jobs", "Job"),
    ResourceType("serving.knative.dev", ("v1",), "services", "Service"),
    ResourceType("serving.knative.dev", ("v1",), "revisions", "Revision"),
    ResourceType(
        "networking.istio.io", ("v1", "v1beta1", "v1alpha3"), "virtualservices", "VirtualService"
    ),
    ResourceType("gateway.networking.k8s.io", ("v1", "v1beta1"), "httproutes", "HTTPRoute"),
    ResourceType("gateway.networking.k8s.io", ("v1", "v1beta1"), "gateways", "Gateway"),
)
# What a DELETE without propagationPolicy does, per type (batch/v1 Jobs orphan their pods).
DEFAULT_PROPAGATION = {"jobs": "Orphan"}


class ApiError(Exception):
    """An error the emulator answers with a ``Status`` object."""

    REASONS = {
        400: "BadRequest",
        403: "Forbidden",
        404: "NotFound",
        409: "Conflict",
        410: "Expired",
        415: "UnsupportedMediaType",
        422: "Invalid",
        500: "InternalError",
        503: "ServiceUnavailable",
    }

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or self.REASONS.get(code, "Unknown")
        self.details = details or {}

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- selectors --------------------------------------------------------------------------------

_SET_EXPR = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def label_matcher(selector: str | None) -> Callable[[dict[str, Any]], bool]:
    """Equality (``=``, ``==``, ``!=``), set (``in``, ``notin``) and existence (``k``, ``!k``)."""
    tests: list[Callable[[dict[str, str]], bool]] = []
    for term in _split_selector(selector or ""):
        match = _SET_EXPR.match(term)
        if match:
            key, op, values = (
                match.group(1),
                match.group(2),
                {v.strip() for v in match.group(3).split(",")},
            )
            if op == "in":
                tests.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                tests.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif term.startswith("!"):
            absent = term[1:].strip()
            tests.append(lambda labels, k=absent: k not in labels)
        else:
            tests.append(lambda labels, k=term: k in labels)

    def matches(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(test(labels) for test in tests)

    return matches


def field_matcher(selector: str | None) -> Callable[[dict[str, Any]], bool]:
    """``path=value`` / ``path!=value`` on dotted paths such as ``involvedObject.name``."""
    tests = []
    for term in _split_selector(selector or ""):
        negate = "!=" in term
        path, value = (s.strip() for s in term.replace("==", "=").replace("!=", "=").split("=", 1))
        tests.append((path.split("."), value, negate))

    def lookup(obj: Any, path: list[str]) -> str:
        for part in path:
            obj = obj.get(part) if isinstance(obj, dict) else None
        return "" if obj is None else str(obj)

    def matches(obj: dict[str, Any]) -> bool:
        return all((lookup(obj, p) == v) != neg for p, v, neg in tests)

    return matches


# -- patches ----------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (``null`` deletes)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def leaves(obj: Any, prefix: tuple[str, ...] = ()) -> Iterable[tuple[tuple[str, ...], Any]]:
    """Leaf paths of nested dicts (lists count as leaves, as atomic lists do in apply)."""
    if isinstance(obj, dict) and obj:
        for key, value in obj.items():
            yield from leaves(value, prefix + (key,))
    else:
        yield prefix, obj


def _lookup(obj: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return _MISSING
        obj = obj[part]
    return obj


def _remove(obj: dict[str, Any], path: tuple[str, ...]) -> None:
    parent: Any = obj
    for part in path[:-1]:
        parent = parent.get(part) if isinstance(parent, dict) else None
    if isinstance(parent, dict):
        parent.pop(path[-1], None)


_MISSING = object()
_IDENTITY = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}


def apply_config(
    existing: dict[str, Any] | None,
    applied: dict[str, Any],
    configs: dict[str, dict[str, Any]],
    manager: str,
    force: bool,
) -> dict[str, Any]:
    """Server-side apply of ``applied`` by ``manager`` onto ``existing``.

    ``configs`` holds each manager's last applied configuration (updated in place). Fields the
    manager applied before and omits now are removed unless another manager applies them;
    fields another manager applies with a different value are conflicts unless ``force``.
    """
    conflicts = []
    for other, config in configs.items():
        if other == manager:
            continue
        for path, value in leaves(applied):
            if path in _IDENTITY:
                continue
            theirs = _lookup(config, path)
            if theirs is not _MISSING and theirs != value:
                conflicts.append(f'conflict with "{other}": .{".".join(path)}')
    if conflicts and not force:
        raise ApiError(
            409, f"Apply failed with {len(conflicts)} conflict(s): {'; '.join(conflicts)}"
        )
    result = copy.deepcopy(existing) if existing else {}
    previous = configs.get(manager, {})
    for path, _ in leaves(previous):
        if path in _IDENTITY or _lookup(applied, path) is not _MISSING:
            continue
        if any(_lookup(c, path) is not _MISSING for m, c in configs.items() if m != manager):
            continue
        _remove(result, path)
    body = copy.deepcopy(applied)
    body.get("metadata", {}).pop("resourceVersion", None)
    body.pop("status", None)
    merged = _deep_merge(result, body)
    configs[manager] = copy.deepcopy(body)
    if force:
        for other, config in configs.items():
            if other != manager:
                for path, _ in leaves(body):
                    if path not in _IDENTITY:
                        _remove(config, path)
    return merged


def _deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


# -- the store --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    type: str
    group: str
    plural: str
    obj: dict[str, Any]


class Store:
    """Objects and their history; every change notifies watchers and change listeners."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.objects: dict[Key, dict[str, Any]] = {}
        self.configs: dict[Key, dict[str, dict[str, Any]]] = {}
        self.history: list[WatchEvent] = []
        self.rv = 0
        self.listeners: list[Callable[[str, ResourceType, dict[str, Any]], None]] = []
        # Background deletion: the dependents of this uid are the garbage collector's to delete.
        self.collect: Callable[[str], None] | None = None
        self.closed = False

    def _record(self, kind: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        self.history.append(WatchEvent(self.rv, kind, rt.group, rt.plural, copy.deepcopy(obj)))
        self.changed.notify_all()
        for listener in list(self.listeners):
            listener(kind, rt, copy.deepcopy(obj))

    def _bump(self, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get((rt.group, rt.plural, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: str | None = None,
        fields: str | None = None,
    ) -> list[dict[str, Any]]:
        match_labels, match_fields = label_matcher(labels), field_matcher(fields)
        with self.lock:
            return [
                copy.deepcopy(obj)
                for (g, p, ns, _), obj in sorted(self.objects.items())
                if g == rt.group
                and p == rt.plural
                and (namespace is None or ns == namespace)
                and match_labels(obj)
                and match_fields(obj)
            ]

    def _check_namespace(self, rt: ResourceType, namespace: str) -> None:
        if rt.namespaced and ("", "namespaces", "", namespace) not in self.objects:
            raise ApiError(
                404,
                f'namespaces "{namespace}" not found',
                details={"name": namespace, "kind": "namespaces"},
            )

    def create(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            meta = obj.setdefault("metadata", {})
            namespace = meta.get("namespace", "") if rt.namespaced else ""
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            key = (rt.group, rt.plural, namespace, meta.get("name", ""))
            self._check_namespace(rt, namespace)
            if key in self.objects:
                raise ApiError(
                    409,
                    f'{rt.qualified} "{key[3]}" already exists',
                    reason="AlreadyExists",
                    details={"name": key[3], "group": rt.group, "kind": rt.plural},
                )
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
            if rt.namespaced:
                meta["namespace"] = namespace
            obj.setdefault("kind", rt.kind)
            obj.setdefault("apiVersion", rt.api_version(rt.versions[0]))
            self._bump(obj)
            self.objects[key] = obj
            self._record("ADDED", rt, obj)
            return copy.deepcopy(obj)

    def replace(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new version of an existing object (generation follows spec changes)."""
        with self.lock:
            meta = obj["metadata"]
            key = (
                rt.group,
                rt.plural,
                meta.get("namespace", "") if rt.namespaced else "",
                meta["name"],
            )
            old = self.objects.get(key)
            if old is None:
                raise ApiError(
                    404,
                    f'{rt.qualified} "{meta["name"]}" not found',
                    details={"name": meta["name"], "group": rt.group, "kind": rt.plural},
                )
            for field in ("uid", "creationTimestamp", "generation"):
                meta[field] = old["metadata"][field]
            spec_of = lambda o: {k: v for k, v in o.items() if k not in ("metadata", "status")}  # noqa: E731
            if spec_of(old) != spec_of(obj):
                meta["generation"] = old["metadata"]["generation"] + 1
            self._bump(obj)
            self.objects[key] = obj
            self._record("MODIFIED", rt, obj)
            return copy.deepcopy(obj)

    def delete(
        self, rt: ResourceType, namespace: str, name: str, propagation: str | None = None
    ) -> dict[str, Any]:
        with self.lock:
            key = (rt.group, rt.plural, namespace if rt.namespaced else "", name)
            obj = self.objects.pop(key, None)
            if obj is None:
                raise ApiError(
                    404,
                    f'{rt.qualified} "{name}" not found',
                    details={"name": name, "group": rt.group, "kind": rt.plural},
                )
            self.configs.pop(key, None)
            self._bump(obj)
            self._record("DELETED", rt, obj)
            policy = propagation or DEFAULT_PROPAGATION.get(rt.plural, "Background")
            if policy == "Background" and self.collect is not None:
                self.collect(obj["metadata"]["uid"])
            elif policy != "Orphan":
                self.delete_dependents(obj["metadata"]["uid"])
            return obj

    def delete_dependents(self, uid: str) -> None:
        by_key = {(r.group, r.plural): r for r in RESOURCES}
        for key, obj in list(self.objects.items()):
            owners = (obj.get("metadata") or {}).get("ownerReferences") or []
            if any(o.get("uid") == uid for o in owners) and key in self.objects:
                self.delete(by_key[key[:2]], key[2], key[3], "Background")

    def history_after(self, rv: int) -> list[WatchEvent]:
        with self.lock:
            return [e for e in self.history if e.rv > rv]

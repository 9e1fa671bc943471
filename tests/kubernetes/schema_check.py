"""Checks of rendered manifests against the published schemas (tests only).

- Knative Service, Istio VirtualService and Gateway API HTTPRoute: ``spec`` against the CRD's
  ``openAPIV3Schema`` of the manifest's version (jsonschema, Draft 4 as OpenAPI v3 is), plus a
  pruning check: a field the schema does not declare would be dropped by the API server
  without an error, so it is reported here (jsonschema alone cannot: the schemas carry no
  ``additionalProperties: false``).
- Job and Secret: Kubernetes' own schema as the official client encodes it in its generated
  models. The manifest is deserialized into ``V1Job`` or ``V1Secret`` (pydantic: required
  fields and strict types) and serialized back; any field lost in the round trip is unknown
  to Kubernetes.
- Metadata of every object (not covered by CRD schemas): DNS-1123 names and valid labels.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

VENDORED = Path(__file__).resolve().parent / "schemas"
# CI clones main into a folder with a copy of shared/ beside it: resolve from this file.
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "schemas"
CRD_FILES = {
    ("serving.knative.dev", "Service"): "knative-serving-service-crd.yaml",
    ("networking.istio.io", "VirtualService"): "istio-virtualservice-crd.yaml",
    ("gateway.networking.k8s.io", "HTTPRoute"): "gateway-api-httproute-crd.yaml",
}
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@cache
def crd_schema(group: str, kind: str, version: str, directory: Path = VENDORED) -> dict[str, Any]:
    crd = yaml.safe_load((directory / CRD_FILES[(group, kind)]).read_text())
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    return dict(served[version]["schema"]["openAPIV3Schema"])


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths in ``value`` that ``schema`` does not declare (what the API server would prune)."""
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    out: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is not None:
            for key, item in value.items():
                if key in props:
                    out += unknown_fields(item, props[key], f"{path}.{key}")
                elif not preserve:
                    out.append(f"{path}.{key}")
        elif isinstance(extra, dict):
            for key, item in value.items():
                out += unknown_fields(item, extra, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return out


def crd_errors(manifest: dict[str, Any], directory: Path = VENDORED) -> list[str]:
    group, _, version = manifest["apiVersion"].rpartition("/")
    schema = crd_schema(group, manifest["kind"], version, directory)
    spec_schema = schema["properties"]["spec"]
    validator = jsonschema.Draft4Validator(spec_schema)
    errors = [
        f"spec.{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(manifest["spec"])
    ]
    errors += [f"unknown field spec{p}" for p in unknown_fields(manifest["spec"], spec_schema)]
    return errors


def job_errors(manifest: dict[str, Any], model: str = "V1Job") -> list[str]:
    """Errors of a core object against the client's generated ``model`` (V1Job, V1Secret)."""
    from kubernetes.client import ApiClient
    from pydantic import ValidationError

    with ApiClient() as api:
        try:
            job = api.deserialize(json.dumps(manifest), model, "application/json")
        except ValidationError as exc:
            return [str(exc)]
        again = api.sanitize_for_serialization(job)
    return [] if again == manifest else [f"not kept by {model}: {_diff(manifest, again)}"]


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), f"{path}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]


def metadata_errors(manifest: dict[str, Any]) -> list[str]:
    meta, errors = manifest["metadata"], []
    for field in ("name", "namespace"):
        value = meta.get(field, "")
        if not (len(value) <= 63 and _DNS1123.match(value)):
            errors.append(f"metadata.{field} {value!r} is not a DNS-1123 label")
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, name = key.rpartition("/")
        if prefix and not all(_DNS1123.match(p) for p in prefix.split(".")):
            errors.append(f"label key {key!r}: bad prefix")
        if not (len(name) <= 63 and _LABEL_NAME.match(name)):
            errors.append(f"label key {key!r}: bad name")
        if not (isinstance(value, str) and len(value) <= 63 and _LABEL_VALUE.match(value)):
            errors.append(f"label {key}={value!r}: bad value")
    return errors


def manifest_errors(manifest: dict[str, Any], directory: Path = VENDORED) -> list[str]:
    """Every problem found with one rendered manifest (empty: valid)."""
    group = manifest["apiVersion"].rpartition("/")[0]
    errors = metadata_errors(manifest)
    if (group, manifest["kind"]) in CRD_FILES:
        errors += crd_errors(manifest, directory)
    elif manifest["apiVersion"] == "batch/v1" and manifest["kind"] == "Job":
        errors += job_errors(manifest)
    elif manifest["apiVersion"] == "v1" and manifest["kind"] == "Secret":
        errors += job_errors(manifest, "V1Secret")
    else:
        errors.append(f"no schema for {manifest['apiVersion']} {manifest['kind']}")
    return errors

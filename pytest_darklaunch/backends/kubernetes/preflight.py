"""Checks before the kubernetes backend changes anything: each fails fast, in one line that
names what is missing and how to fix it, instead of a run that ends in "no data".

- the APIs the run needs are served (Knative Serving; Istio's VirtualService or the Gateway
  API's HTTPRoute, per ``mirror.provider``; the Gateway a route attaches to);
- no other run's mirroring rule in the namespace claims the same host (two VirtualServices
  for one host on the mesh gateway conflict: Istio keeps the older, IST0109);
- no revision with this run's revision names survives an earlier run: a Background delete
  returns before Kubernetes' garbage collector removes the revisions, and Knative refuses a
  template name that exists ("revisions.serving.knative.dev ... already exists").
"""

from __future__ import annotations

from typing import Any

from pytest_darklaunch.backends.kubernetes.api import (
    GATEWAY,
    MISSING_API,
    REVISION,
    Kind,
    KubeApi,
)
from pytest_darklaunch.backends.kubernetes.names import (
    MANAGED_BY,
    MANAGED_BY_KEY,
    RUN_ID_KEY,
    Names,
)
from pytest_darklaunch.backends.kubernetes.routing import parse_gateway
from pytest_darklaunch.backends.kubernetes.waits import wait_for
from pytest_darklaunch.errors import ProvisioningError


def require_apis(api: KubeApi, kinds: list[Kind]) -> None:
    """Every API in ``kinds`` is served, else one error listing all that are missing."""
    missing = [kind for kind in kinds if not api.serves(kind)]
    if missing:
        what = ", ".join(f"{k.api_version} {k.kind}" for k in missing)
        hints = "; ".join(dict.fromkeys(MISSING_API.get(k, "install it") for k in missing))
        raise ProvisioningError(f"the cluster at {api.host} does not serve {what}: {hints}")


def _hosts(obj: dict[str, Any]) -> list[str]:
    spec = obj.get("spec") or {}
    return list(spec.get("hosts") or spec.get("hostnames") or [])


def refuse_host_collision(api: KubeApi, names: Names, kind: Kind, host: str) -> None:
    """Refuse to start when another run's rule in the namespace already routes ``host``."""
    items, _ = api.list(kind, names.namespace, label_selector=f"{MANAGED_BY_KEY}={MANAGED_BY}")
    for obj in items:
        labels = obj["metadata"].get("labels") or {}
        if labels.get(RUN_ID_KEY) != names.run_id and host in _hosts(obj):
            raise ProvisioningError(
                f"{kind.kind} {names.namespace}/{obj['metadata']['name']} of run "
                f"{labels.get(RUN_ID_KEY)} already routes mirror host {host}; give each "
                "concurrent run its own mirror.host, or wait for that run to end"
            )


def wait_for_leftover_revisions(api: KubeApi, names: Names, timeout_s: float) -> None:
    """Wait (bounded) until revisions named like this run's, left by an earlier Knative
    Service of the same name, are gone; the Service itself was checked before."""
    for revision in (names.live_revision, names.dark_revision):
        if api.get(REVISION, names.namespace, revision) is None:
            continue
        wait_for(
            api,
            REVISION,
            names.namespace,
            what=(
                f"revision {names.namespace}/{revision} of an earlier Knative Service "
                f"{names.service} is still being deleted (Knative would refuse the name); "
                f"it was not removed"
            ),
            field_selector=f"metadata.name={revision}",
            check=lambda items: not items,
            describe=lambda items: "it still exists" if items else "gone",
            timeout_s=timeout_s,
        )


def gateway_address(api: KubeApi, gateway: str) -> str | None:
    """The Gateway's first address from its status (``None`` before it has one); a missing
    Gateway is a :class:`ProvisioningError`."""
    namespace, name = parse_gateway(gateway)
    obj = api.get(GATEWAY, namespace, name)
    if obj is None:
        raise ProvisioningError(
            f"Gateway {gateway} (mirror.gateway) does not exist; create it, or leave "
            "mirror.gateway out to mirror mesh traffic"
        )
    for address in (obj.get("status") or {}).get("addresses") or []:
        if address.get("value"):
            return str(address["value"])
    return None

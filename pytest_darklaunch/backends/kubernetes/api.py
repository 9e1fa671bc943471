"""The few Kubernetes API calls the backend makes: apply, get, list, watch, delete by label.

Built on the official client's ``DynamicClient`` (discovery tells a missing Knative or Istio
apart from a typo). Every call retries 409 and 5xx answers with an exponential backoff and turns
the rest into a :class:`ProvisioningError` a user can act on (:mod:`.api_errors`).

The ``kubernetes`` package is imported inside functions only.

>>> JOB.qualified, VIRTUAL_SERVICE.qualified, POD.qualified
('jobs.batch', 'virtualservices.networking.istio.io', 'pods')
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from pytest_darklaunch.backends.kubernetes.api_errors import (
    TRANSIENT_STATUS,
    is_transient,
    status_of,
    translate,
    transport_errors,
)
from pytest_darklaunch.errors import ProvisioningError

T = TypeVar("T")
FIELD_MANAGER = "pytest-darklaunch"


@dataclass(frozen=True)
class Kind:
    """An API resource the backend uses: ``apiVersion``, ``kind`` and its plural."""

    api_version: str
    kind: str
    plural: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def qualified(self) -> str:
        """``plural.group`` as RBAC rules and ``kubectl`` name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


KNATIVE_SERVICE = Kind("serving.knative.dev/v1", "Service", "services")
REVISION = Kind("serving.knative.dev/v1", "Revision", "revisions")
VIRTUAL_SERVICE = Kind("networking.istio.io/v1", "VirtualService", "virtualservices")
HTTP_ROUTE = Kind("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes")
GATEWAY = Kind("gateway.networking.k8s.io/v1", "Gateway", "gateways")
JOB = Kind("batch/v1", "Job", "jobs")
POD = Kind("v1", "Pod", "pods")
EVENT = Kind("v1", "Event", "events")
SERVICE = Kind("v1", "Service", "services")
SECRET = Kind("v1", "Secret", "secrets")
KINDS = {
    (k.api_version, k.kind): k for k in (KNATIVE_SERVICE, VIRTUAL_SERVICE, HTTP_ROUTE, SECRET, JOB)
}

_GATEWAY_API_HINT = (
    "install the Gateway API CRDs, v1.3 or later for percent mirroring "
    "(kubectl apply -f https://github.com/kubernetes-sigs/gateway-api/releases/download/"
    "v1.3.0/standard-install.yaml)"
)
MISSING_API = {
    KNATIVE_SERVICE: "install Knative Serving (1.17 or later) with its Istio networking layer",
    REVISION: "install Knative Serving (1.17 or later) with its Istio networking layer",
    VIRTUAL_SERVICE: "install Istio (1.22 or later serves networking.istio.io/v1)",
    HTTP_ROUTE: _GATEWAY_API_HINT,
    GATEWAY: _GATEWAY_API_HINT,
}


class NotServed(ProvisioningError):
    """The cluster does not serve an API the backend needs (a CRD is missing)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a call is retried after a 409, 429 or 5xx answer."""

    attempts: int = 6
    initial_s: float = 0.5
    max_s: float = 8.0


def import_client() -> None:
    """Import the parts of the ``kubernetes`` client this backend uses (it imports them lazily,
    so that ``render`` and an inert plugin never load the client)."""
    try:
        import kubernetes.client.exceptions  # noqa: F401
        import kubernetes.config.config_exception  # noqa: F401
        import kubernetes.dynamic.exceptions  # noqa: F401
        import kubernetes.stream.stream  # noqa: F401
    except ImportError as exc:
        raise ProvisioningError(
            f"the kubernetes backend needs the kubernetes client ({exc}): "
            "pip install 'pytest-darklaunch[kubernetes]'"
        ) from exc


def credentials_source(context: str | None, env: dict[str, str] | None = None) -> str:
    """Where credentials come from, with the precedence of kubectl and the client's
    ``load_config``: a kubeconfig (``KUBECONFIG``, else ``~/.kube/config``) when there is one or
    a context is asked for, else the pod's service account (in-cluster), else the kubeconfig.

    >>> credentials_source(None, {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOME": "/nonexistent"})
    'in-cluster'
    >>> credentials_source(None, {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBECONFIG": "/k"})
    'kubeconfig'
    """
    env = dict(os.environ) if env is None else env
    home_config = os.path.join(env.get("HOME") or os.path.expanduser("~"), ".kube", "config")
    if context is not None or env.get("KUBECONFIG") or os.path.exists(home_config):
        return "kubeconfig"
    return "in-cluster" if "KUBERNETES_SERVICE_HOST" in env else "kubeconfig"


def load_api_client(
    context: str | None, context_option: str = "--darklaunch-kube-context"
) -> Any:
    """An ``ApiClient`` from kubeconfig (``context`` or the current one) or in-cluster config,
    chosen by :func:`credentials_source`. ``context_option`` is the option that chose
    ``context``, for the message."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    in_cluster = credentials_source(context) == "in-cluster"
    try:
        if in_cluster:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return client.ApiClient(configuration)
        # KUBECONFIG as it is now: the client reads it once, when it is first imported.
        return config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG") or None, context=context
        )
    except (ConfigException, OSError, ValueError) as exc:
        where = (
            "in-cluster config" if in_cluster else f"kubeconfig context {context or '(current)'}"
        )
        raise ProvisioningError(
            f"cannot load Kubernetes credentials from {where}: {exc}; "
            f"set KUBECONFIG or {context_option}"
        ) from exc


class KubeApi:
    """Server-side apply, reads, watches and label-selected deletes, each retried and translated.

    >>> api = KubeApi(api_client)  # doctest: +SKIP
    >>> api.apply(manifest)["metadata"]["generation"]  # doctest: +SKIP
    1
    """

    def __init__(
        self, api_client: Any, retry: RetryPolicy = RetryPolicy(), cache_dir: str = ""
    ) -> None:
        self.api_client = api_client
        self.retry = retry
        self._dynamic: Any = None
        self._own_cache_dir: str | None = None
        self._cache_dir = cache_dir

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    def close(self) -> None:
        """Remove the discovery cache dir this object created (if any)."""
        if self._own_cache_dir:
            shutil.rmtree(self._own_cache_dir, ignore_errors=True)
            self._own_cache_dir = None

    def call(self, verb: str, what: str, namespace: str | None, fn: Callable[[], T]) -> T:
        """``fn()``, retried on 409/429/5xx and connection errors, failures translated."""
        retrying = Retrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait_exponential(multiplier=self.retry.initial_s, max=self.retry.max_s),
            retry=retry_if_exception(is_transient),
            reraise=True,
        )
        try:
            return retrying(fn)
        except transport_errors() as exc:
            raise translate(exc, verb, what, namespace) from exc

    def _client(self) -> Any:
        if self._dynamic is None:
            from kubernetes.dynamic import DynamicClient

            cache_dir = self._cache_dir
            if not cache_dir or not os.path.isdir(cache_dir):
                cache_dir = self._own_cache_dir = tempfile.mkdtemp(prefix="darklaunch-kube-")
            cache_file = os.path.join(cache_dir, "kube-discovery.json")
            self._dynamic = self.call(
                "discover",
                "API groups",
                None,
                lambda: DynamicClient(self.api_client, cache_file=cache_file),  # type: ignore[no-untyped-call]
            )
        return self._dynamic

    def resource(self, kind: Kind) -> Any:
        """The discovered API resource for ``kind``; a clear error when the cluster lacks it."""
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        client = self._client()
        try:
            return self.call(
                "discover",
                kind.qualified,
                None,
                lambda: client.resources.get(api_version=kind.api_version, kind=kind.kind),
            )
        except ResourceNotFoundError as exc:
            hint = MISSING_API.get(kind, "check the cluster's API versions")
            raise NotServed(
                f"the cluster at {self.host} does not serve {kind.api_version} {kind.kind} "
                f"({kind.qualified}); {hint}"
            ) from exc

    def serves(self, kind: Kind) -> bool:
        """Whether the cluster serves ``kind`` (other API errors still raise)."""
        try:
            self.resource(kind)
        except NotServed:
            return False
        return True

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply ``manifest`` as field manager ``pytest-darklaunch``, with ``force``."""
        kind = KINDS[(manifest["apiVersion"], manifest["kind"])]
        meta = manifest["metadata"]
        resource = self.resource(kind)
        result = self.call(
            "patch",
            kind.qualified,
            meta["namespace"],
            lambda: self._client().server_side_apply(
                resource,
                body=manifest,
                name=meta["name"],
                namespace=meta["namespace"],
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            ),
        )
        return dict(result.to_dict())

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or ``None`` when it does not exist."""
        from kubernetes.dynamic.exceptions import NotFoundError

        resource = self.resource(kind)
        try:
            result = self.call(
                "get",
                kind.qualified,
                namespace,
                lambda: self._client().get(resource, name=name, namespace=namespace),
            )
        except ProvisioningError as exc:
            if isinstance(exc.__cause__, NotFoundError):
                return None
            raise
        return dict(result.to_dict())

    def list(
        self,
        kind: Kind,
        namespace: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """Items matching the selectors, and the list's resourceVersion to watch from."""
        resource = self.resource(kind)
        result = self.call(
            "list",
            kind.qualified,
            namespace,
            lambda: self._client().get(
                resource,
                namespace=namespace,
                label_selector=label_selector,
                field_selector=field_selector,
            ),
        )
        data = result.to_dict()
        return list(data.get("items") or []), str(
            data.get("metadata", {}).get("resourceVersion", "")
        )

    def watch(
        self,
        kind: Kind,
        namespace: str,
        *,
        resource_version: str,
        timeout_s: int,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(event type, object)`` pairs from ``resource_version`` on, for ``timeout_s``."""
        from kubernetes.client.exceptions import ApiException

        resource = self.resource(kind)
        events = self._client().watch(
            resource,
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            resource_version=resource_version or None,
            timeout=timeout_s,
        )
        try:
            for event in events:
                yield str(event["type"]), dict(event["raw_object"])
        except ApiException as exc:
            if status_of(exc) in TRANSIENT_STATUS | {410}:
                raise
            raise translate(exc, "watch", kind.qualified, namespace) from exc

    def delete_collection(
        self, kind: Kind, namespace: str, label_selector: str, propagation: str = "Background"
    ) -> None:
        """Delete every ``kind`` in ``namespace`` matching ``label_selector`` (idempotent)."""
        from kubernetes.dynamic.exceptions import NotFoundError

        resource = self.resource(kind)
        try:
            self.call(
                "deletecollection",
                kind.qualified,
                namespace,
                lambda: self._client().delete(
                    resource,
                    namespace=namespace,
                    label_selector=label_selector,
                    propagation_policy=propagation,
                ),
            )
        except ProvisioningError as exc:
            if not isinstance(exc.__cause__, NotFoundError):
                raise

"""Names, namespace and labels of one kubernetes-backend run: a pure function of spec and run id.

Every object carries the run labels; names that must be unique per run end in a short run
suffix. Cleanup selects by the run-id label only, never by a name prefix.

>>> n = Names("default", "sample-app", "sample-app-v1", "sample-app-v2", "r1")
>>> n.mirror_route, n.private_host(n.dark_revision)
('sample-app-mirror-r1', 'sample-app-v2-private.default.svc.cluster.local')
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pytest_darklaunch.core.spec import Spec
from pytest_darklaunch.core.units import DNS1123_HINT, is_dns1123_label
from pytest_darklaunch.errors import ConfigError

MANAGED_BY_KEY = "app.kubernetes.io/managed-by"
MANAGED_BY = "pytest-darklaunch"
RUN_ID_KEY = "darklaunch.dev/run-id"
ROLE_KEY = "darklaunch.dev/role"

_CRONJOB_TAIL = re.compile(r"^\d{8,10}$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
RUN_ID_HINT = (
    "a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric"
)


@dataclass(frozen=True)
class Names:
    """Names, namespace and labels of one run's objects.

    >>> Names("default", "sample-app", "sample-app-v1", "sample-app-v2", "r1").selector
    'app.kubernetes.io/managed-by=pytest-darklaunch,darklaunch.dev/run-id=r1'
    """

    namespace: str
    service: str
    live_revision: str
    dark_revision: str
    run_id: str

    @property
    def suffix(self) -> str:
        return run_suffix(self.run_id)

    @property
    def mirror_route(self) -> str:
        """The VirtualService or HTTPRoute that mirrors (one per run, whichever provider)."""
        return _suffixed(self.service, "mirror", self.suffix)

    @property
    def job(self) -> str:
        """The traffic Job, also its pods' Istio ``source_workload``.

        Istio takes a Job whose name ends in ``-`` and 8 to 10 digits for a CronJob's and names
        the workload after the CronJob (istio/istio ``pkg/kube/util.go``,
        ``cronJobNameRegexp``), so an all-digit suffix gets a letter in front.

        >>> Names("d", "app", "app-v1", "app-v2", "12345678").job
        'app-traffic-j12345678'
        """
        suffix = self.suffix
        if _CRONJOB_TAIL.match(suffix):
            suffix = f"j{suffix}"
        return _suffixed(self.service, "traffic", suffix)

    @property
    def header_secret(self) -> str:
        """The Secret with the traffic's credential headers."""
        return _suffixed(self.service, "headers", self.suffix)

    @property
    def labels(self) -> dict[str, str]:
        return run_labels(self.run_id)

    @property
    def selector(self) -> str:
        return run_selector(self.run_id)

    def private_service(self, revision: str) -> str:
        """Knative's selector-based Service of a revision's pods (port 80 -> queue-proxy)."""
        return f"{revision}-private"

    def private_host(self, revision: str) -> str:
        return f"{self.private_service(revision)}.{self.namespace}.svc.cluster.local"

    def delete_command(self) -> str:
        return delete_command(self.namespace, self.run_id)


def run_labels(run_id: str) -> dict[str, str]:
    """The labels on every object of run ``run_id``."""
    return {MANAGED_BY_KEY: MANAGED_BY, RUN_ID_KEY: run_id}


def run_selector(run_id: str) -> str:
    """The label selector of every object of run ``run_id`` (and of nothing else)."""
    return ",".join(f"{k}={v}" for k, v in run_labels(run_id).items())


def delete_command(namespace: str, run_id: str) -> str:
    """The command that removes every object of a run, mirroring rules first.

    The plugin's own ``delete`` (deletecollection by label), not ``kubectl delete -l``, which
    lists and deletes one by one and so needs verbs the example Role does not grant.

    >>> delete_command("default", "r1")
    'python -m pytest_darklaunch delete --namespace default --run-id r1'
    """
    return f"python -m pytest_darklaunch delete --namespace {namespace} --run-id {run_id}"


def run_suffix(run_id: str) -> str:
    """A short DNS-safe form of ``run_id`` for object names.

    Short ids that are already DNS-1123 labels are used as they are; anything else becomes the
    first 8 hex digits of its SHA-256, so different run ids give different names.

    >>> run_suffix("r1"), run_suffix("0f3c9a5e2b7d4c1a9e8f7a6b5c4d3e2f")
    ('r1', 'ea1382f3')
    """
    if len(run_id) <= 10 and is_dns1123_label(run_id):
        return run_id
    return hashlib.sha256(run_id.encode()).hexdigest()[:8]


def _suffixed(base: str, part: str, suffix: str) -> str:
    tail = f"-{part}-{suffix}"
    return base[: 63 - len(tail)].rstrip("-") + tail


def check_run_id(run_id: str, source: str = "run context") -> str:
    """``run_id`` if it can be a label value, else a :class:`ConfigError`."""
    if not run_id or len(run_id) > 63 or not _LABEL_VALUE.match(run_id):
        raise ConfigError("run id", run_id, source, RUN_ID_HINT)
    return run_id


def names_for(
    spec: Spec, run_id: str, namespace: str | None = None, *, source: str = "run context"
) -> Names:
    """The :class:`Names` of a run; ``namespace`` overrides the target's namespace."""
    check_run_id(run_id, source)
    ns = namespace or spec.target.namespace
    if not is_dns1123_label(ns):
        raise ConfigError("namespace", ns, source, DNS1123_HINT)
    return Names(
        ns, spec.target.name, spec.versions.live.revision, spec.versions.dark.revision, run_id
    )

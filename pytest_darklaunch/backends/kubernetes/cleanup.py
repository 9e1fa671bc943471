"""Removing a run's objects: by the run-id label only, never by a name prefix.

Used by teardown, by the guardian (``python -m pytest_darklaunch delete``) after a killed
pytest, and by users after ``--darklaunch-keep``.
"""

from __future__ import annotations

from pytest_darklaunch.backends.kubernetes.api import (
    HTTP_ROUTE,
    JOB,
    KNATIVE_SERVICE,
    SECRET,
    VIRTUAL_SERVICE,
    KubeApi,
)
from pytest_darklaunch.backends.kubernetes.names import delete_command, run_selector
from pytest_darklaunch.errors import ProvisioningError


def delete_run(api: KubeApi, namespace: str, run_id: str) -> None:
    """Delete every object of run ``run_id`` in ``namespace``, by its label only: the mirroring
    rules first (mirroring stops; either provider's, where the cluster serves it), then the Job
    once its pods are gone, its headers' Secret, then the Knative Service (its revisions
    follow). What cannot be deleted is reported once the rest is gone, with the command that
    removes it."""
    selector = run_selector(run_id)
    failures = []
    for kind, propagation in (
        (HTTP_ROUTE, "Background"),
        (VIRTUAL_SERVICE, "Background"),
        # Foreground: the Job goes only once its pods are gone.
        (JOB, "Foreground"),
        (SECRET, "Background"),
        (KNATIVE_SERVICE, "Background"),
    ):
        try:
            if kind in (HTTP_ROUTE, VIRTUAL_SERVICE) and not api.serves(kind):
                continue  # nothing of a kind the cluster does not serve can exist
            api.delete_collection(kind, namespace, selector, propagation)
        except ProvisioningError as exc:
            failures.append(str(exc))
    if failures:
        raise ProvisioningError(
            f"teardown of run {run_id} incomplete: {' | '.join(failures)}; "
            f"remove the rest with: {delete_command(namespace, run_id)}"
        )

"""The kubernetes backend: Knative revisions, Istio mirroring and a Fortio Job on a cluster.

Importing this package does not import the ``kubernetes`` client; the backend does that when it
first talks to a cluster, so installing the plugin costs other pytest runs nothing.

>>> from pytest_darklaunch.backends.kubernetes import KubernetesBackend, render_yaml
"""

from __future__ import annotations

from pytest_darklaunch.backends.kubernetes.backend import KubernetesBackend, KubeSettings
from pytest_darklaunch.backends.kubernetes.render import Names, names_for, render_yaml

# ``render`` (the function) stays in its module: exported here it would shadow the module.
__all__ = ["KubeSettings", "KubernetesBackend", "Names", "names_for", "render_yaml"]

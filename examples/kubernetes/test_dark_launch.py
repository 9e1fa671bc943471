"""The seed tutorial's conformance checks against a cluster (see README.md in this directory).

Run from this directory with a kubeconfig whose current context has Knative, Istio and
Prometheus: ``pytest`` (pytest.ini selects the kubernetes backend).
"""


def test_objective(darklaunch, darklaunch_objective):
    """One test per objective in darklaunch.yaml: ``pytest -k error-rate`` selects one."""
    darklaunch.assert_objective(darklaunch_objective)


def test_dark_is_not_slower_than_live(darklaunch):
    """Live and dark answer the same mirrored requests, so they compare directly."""
    darklaunch.assert_objective("mean-latency", max_increase="50%")

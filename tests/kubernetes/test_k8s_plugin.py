"""The plugin with ``--darklaunch-backend kubernetes``, in a pytest run of its own."""

from __future__ import annotations

import pytest

from .test_k8s_cli import SPEC


def test_without_the_kubernetes_client_the_tests_error_with_the_install_command(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".yaml", darklaunch=SPEC)
    # As if pytest-darklaunch had been installed without its [kubernetes] extra.
    pytester.makeconftest("import sys\nsys.modules['kubernetes'] = None\n")
    pytester.makepyfile(
        "def test_dark(darklaunch):\n"
        "    darklaunch.assert_objective('error-rate', upper=0.01)\n"
        "\n"
        "def test_unrelated():\n"
        "    pass\n"
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--darklaunch-backend", "kubernetes",
        "--darklaunch-prometheus-url", "http://127.0.0.1:9",
    )
    result.assert_outcomes(passed=1, errors=1)
    errors = [
        line for line in result.outlines if line.startswith("darklaunch: provisioning failed: ")
    ]
    assert errors and all(
        "the kubernetes backend needs the kubernetes client" in line
        and line.endswith("pip install 'pytest-darklaunch[kubernetes]'")
        for line in errors
    ), result.outlines
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    result.stdout.no_fnmatch_line("*Traceback*")

"""The command line beside the plugin: ``python -m pytest_darklaunch render|delete|--version``.

``render`` prints the multi-document YAML the kubernetes backend would apply, as ``helm
template`` does, for review and GitOps. ``delete`` removes a run's objects from the cluster by
its run id, as teardown does (what the guardian runs when pytest was killed before teardown).
Bad input is one line on stderr and exit code 2; a deletion that fails, one line and exit 1.

>>> main(["render", "--spec", "darklaunch.yaml", "--run-id", "review"])  # doctest: +SKIP
0
>>> main(["delete", "--run-id", "5eed0123", "--namespace", "shop"])  # doctest: +SKIP
0
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from pytest_darklaunch.errors import ConfigError, DarklaunchError
from pytest_darklaunch.version import __version__

DEFAULT_SPEC = "darklaunch.yaml"
DEFAULT_RUN_ID = "manual"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump), exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m pytest_darklaunch",
        description="Tools beside the pytest-darklaunch plugin.",
    )
    parser.add_argument("--version", action="version", version=f"pytest-darklaunch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    render = commands.add_parser(
        "render",
        help="print the Kubernetes manifests the kubernetes backend would apply",
        description=(
            "Print, as multi-document YAML, the objects the kubernetes backend applies in order: "
            "the Knative Service with the live revision, the same Service with the dark revision "
            "and the traffic split, the two Istio VirtualServices and the Fortio traffic Job. "
            f"Without --spec or --experiment, {DEFAULT_SPEC} in the current directory is used."
        ),
    )
    render.add_argument("--spec", metavar="PATH", help="a darklaunch.yaml spec file")
    render.add_argument(
        "--experiment",
        metavar="PATH",
        help="an Iter8 v2alpha1 Experiment (with --spec, the spec's values win)",
    )
    render.add_argument(
        "--run-id",
        default=DEFAULT_RUN_ID,
        help=f"the run id in labels and names (default: {DEFAULT_RUN_ID})",
    )
    render.add_argument("--namespace", help="namespace instead of the target's")
    delete = commands.add_parser(
        "delete",
        help="delete a run's objects from the cluster (as teardown does)",
        description=(
            "Delete, by the run's label only, the Istio VirtualServices (mirroring stops first), "
            "the traffic Job and the Knative Service of a kubernetes-backend run: what "
            "--darklaunch-keep left, or a run whose pytest was killed. The run id is in the "
            "header line 'darklaunch run id: ...'."
        ),
    )
    delete.add_argument("--run-id", required=True, help="the run's id")
    delete.add_argument(
        "--namespace", default="default", help="the run's namespace (default: default)"
    )
    delete.add_argument("--context", help="kubeconfig context (default: the current one)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0, or 2 for bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        text = _delete(args) if args.command == "delete" else _render(args)
    except ConfigError as exc:
        sys.stderr.write(f"{parser.prog} {args.command}: error: {exc}\n")
        return 2
    except DarklaunchError as exc:
        sys.stderr.write(f"{parser.prog} {args.command}: error: {exc}\n")
        return 1
    sys.stdout.write(text)
    return 0


def _delete(args: argparse.Namespace) -> str:
    from pytest_darklaunch.backends.kubernetes.api import KubeApi, load_api_client
    from pytest_darklaunch.backends.kubernetes.cleanup import delete_run
    from pytest_darklaunch.backends.kubernetes.render import check_run_id
    from pytest_darklaunch.core.units import DNS1123_HINT, is_dns1123_label

    check_run_id(args.run_id, "--run-id")
    if not is_dns1123_label(args.namespace):
        raise ConfigError("--namespace", args.namespace, "command line", DNS1123_HINT)
    api = KubeApi(load_api_client(args.context, "--context"))
    try:
        delete_run(api, args.namespace, args.run_id)
    finally:
        api.close()
    return f"deleted the objects of run {args.run_id} in namespace {args.namespace}\n"


def _render(args: argparse.Namespace) -> str:
    from pytest_darklaunch.backends.kubernetes.render import check_run_id, names_for, render_yaml
    from pytest_darklaunch.core.config import load_spec

    check_run_id(args.run_id, "--run-id")
    spec_path, experiment_path = args.spec, args.experiment
    if spec_path is None and experiment_path is None:
        if not os.path.isfile(DEFAULT_SPEC):
            raise ConfigError(
                "--spec",
                "",
                "command line",
                f"--spec PATH or --experiment PATH (no {DEFAULT_SPEC} in the current directory)",
            )
        spec_path = DEFAULT_SPEC
    spec = load_spec(spec_path=spec_path, experiment_path=experiment_path)
    names_for(spec, args.run_id, args.namespace, source="--namespace")
    return render_yaml(spec, args.run_id, namespace=args.namespace)

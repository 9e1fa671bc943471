"""resolve(): precedence CLI > env > ini > spec file > default, each value's origin, merging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_darklaunch.core.config import Settings, load_spec, resolve
from pytest_darklaunch.core.options import OPTIONS, OPTIONS_BY_NAME, SPEC_FILENAME
from pytest_darklaunch.errors import ConfigError

SEED = Path(__file__).resolve().parents[2] / "examples" / "iter8" / "experiment.yaml"


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def run(
    cli: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    ini: dict[str, Any] | None = None,
    rootdir: str | Path = "/nonexistent-rootdir",
) -> Any:
    return resolve(cli or {}, env or {}, ini or {}, "tox.ini", rootdir)


def config_error(**kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        run(**kwargs)
    assert "\n" not in str(info.value)
    return info.value


# --- names -------------------------------------------------------------------------------------


def test_every_option_has_its_twins() -> None:
    opt = OPTIONS_BY_NAME["mirror-percent"]
    assert (opt.cli, opt.ini, opt.env, opt.dest) == (
        "--darklaunch-mirror-percent",
        "darklaunch_mirror_percent",
        "PYTEST_DARKLAUNCH_MIRROR_PERCENT",
        "darklaunch_mirror_percent",
    )
    names = [o.name for o in OPTIONS]
    assert len(names) == len(set(names))
    for required in (
        "target",
        "backend",
        "spec",
        "experiment",
        "interval",
        "iterations",
        "mirror-percent",
        "rate",
        "prometheus-url",
        "report",
        "keep",
        "kube-context",
        "namespace",
        "inconclusive",
    ):
        assert required in names


# --- inert -------------------------------------------------------------------------------------


def test_without_target_or_spec_the_plugin_is_inert(tmp_path: Path) -> None:
    r = run(rootdir=tmp_path)
    assert r.spec is None and not r.active
    assert r.settings == Settings()
    assert r.origin["backend"] == "default" and r.values["backend"] == "local"
    assert "target" not in r.values


def test_spec_in_rootdir_is_found(tmp_path: Path) -> None:
    path = write(tmp_path / SPEC_FILENAME, "target: shop/cart\n")
    r = run(rootdir=tmp_path)
    assert r.active and str(r.spec.target) == "shop/cart"
    assert r.settings.spec_path == path
    assert r.origin["spec"] == "found in rootdir"
    assert r.origin["target"] == f"target in {path}"


def test_directory_named_like_the_spec_in_rootdir_is_ignored(tmp_path: Path) -> None:
    (tmp_path / SPEC_FILENAME).mkdir()
    assert not run(rootdir=tmp_path).active


def test_unreadable_spec_in_rootdir_names_rootdir(tmp_path: Path) -> None:
    (tmp_path / SPEC_FILENAME).write_bytes(b"\xfftarget: a/b\n")
    err = config_error(rootdir=tmp_path)
    assert (err.field, err.source) == ("--darklaunch-spec", "rootdir")


# --- precedence --------------------------------------------------------------------------------


@pytest.fixture
def spec_file(tmp_path: Path) -> str:
    return write(
        tmp_path / "spec.yaml",
        "target: from-spec/app\nduration: {interval: 4s, iterations: 4}\n"
        "mirror: {percent: 4}\ntraffic: {rate: 4}\nconfidence: 0.94\n"
        # images: one test picks the kubernetes backend, which needs them
        "versions: {live: {image: 'app:1'}, dark: {image: 'app:2'}}\n",
    )


def test_cli_beats_env_beats_ini_beats_spec_beats_default(spec_file: str) -> None:
    cli = {"spec": spec_file, "interval": "1s"}
    env = {
        "PYTEST_DARKLAUNCH_INTERVAL": "2s",
        "PYTEST_DARKLAUNCH_ITERATIONS": "2",
        "PYTEST_DARKLAUNCH_BACKEND": "kubernetes",
    }
    ini = {
        "interval": "3s",
        "iterations": "3",
        "mirror-percent": "3",
        "backend": "local",
        "inconclusive": "skip",
    }
    r = run(cli=cli, env=env, ini=ini)
    d = r.spec.duration
    assert (d.interval_s, d.iterations, r.spec.mirror.percent, r.spec.traffic.rate_rps) == (
        1,
        2,
        3,
        4,
    )
    assert r.spec.confidence == 0.94
    assert r.settings.backend == "kubernetes" and r.settings.inconclusive == "skip"
    assert r.origin["interval"] == "--darklaunch-interval"
    assert r.origin["iterations"] == "env PYTEST_DARKLAUNCH_ITERATIONS"
    assert r.origin["mirror-percent"] == "darklaunch_mirror_percent in tox.ini"
    assert r.origin["rate"] == f"traffic.rate in {spec_file}"
    assert r.origin["confidence"] == f"confidence in {spec_file}"
    assert r.origin["backend"] == "env PYTEST_DARKLAUNCH_BACKEND"
    assert r.origin["inconclusive"] == "darklaunch_inconclusive in tox.ini"
    assert r.origin["keep"] == "default"
    assert r.origin["spec"] == "--darklaunch-spec"
    assert r.values["interval"] == "1s" and r.values["iterations"] == "2"
    assert r.values["mirror-percent"] == "3" and r.values["rate"] == "4"


def test_defaults_and_their_origin(tmp_path: Path) -> None:
    bare = write(tmp_path / "bare.yaml", "target: a/b\n")
    r = run(cli={"spec": bare})
    for name in ("interval", "iterations", "mirror-percent", "rate", "confidence", "backend"):
        assert r.origin[name] == "default", name
    assert r.values["interval"] == "10s" and r.values["iterations"] == "10"
    assert r.values["mirror-percent"] == "40" and r.values["rate"] == "100"
    assert r.values["target"] == "a/b" and r.origin["target"] == f"target in {bare}"


def test_cli_target_overrides_spec_target(spec_file: str) -> None:
    r = run(
        cli={"spec": spec_file, "target": "cli/app"}, env={"PYTEST_DARKLAUNCH_TARGET": "env/app"}
    )
    assert str(r.spec.target) == "cli/app" and r.origin["target"] == "--darklaunch-target"
    r = run(cli={"spec": spec_file}, env={"PYTEST_DARKLAUNCH_TARGET": "env/app"})
    assert str(r.spec.target) == "env/app" and r.origin["target"] == "env PYTEST_DARKLAUNCH_TARGET"


def test_target_alone_activates() -> None:
    r = run(env={"PYTEST_DARKLAUNCH_TARGET": "default/sample-app"})
    assert r.active and r.spec.objectives == ()


def test_empty_env_and_ini_values_count_as_unset(spec_file: str) -> None:
    r = run(cli={"spec": spec_file}, env={"PYTEST_DARKLAUNCH_INTERVAL": ""}, ini={"interval": ""})
    assert r.spec.duration.interval_s == 4.0
    assert r.origin["interval"] == f"duration.interval in {spec_file}"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("off", False),
    ],
)
def test_flag_values(given: str, expected: bool) -> None:
    r = run(
        cli={"target": "a/b"}, env={"PYTEST_DARKLAUNCH_KEEP": given}, ini={"full-duration": given}
    )
    assert r.settings.keep is expected and r.settings.full_duration is expected
    assert r.origin["keep"] == "env PYTEST_DARKLAUNCH_KEEP"


def test_cli_flag_true_beats_env_false() -> None:
    r = run(cli={"target": "a/b", "keep": True}, env={"PYTEST_DARKLAUNCH_KEEP": "0"})
    assert r.settings.keep is True and r.values["keep"] == "true"
    assert r.origin["keep"] == "--darklaunch-keep"


def test_settings_from_every_source() -> None:
    r = run(
        cli={"target": "a/b", "report": "out/r.json"},
        env={
            "PYTEST_DARKLAUNCH_PROMETHEUS_URL": "https://prom.example:9090",
            "PYTEST_DARKLAUNCH_NAMESPACE": "exp",
        },
        ini={"kube-context": "kind-kind", "provision": "none"},
    )
    s = r.settings
    assert (s.report, s.prometheus_url, s.namespace, s.kube_context, s.provision) == (
        "out/r.json",
        "https://prom.example:9090",
        "exp",
        "kind-kind",
        "none",
    )
    assert r.origin["kube-context"] == "darklaunch_kube_context in tox.ini"


# --- bad values name the option, the value and the source --------------------------------------

BAD = [
    (dict(cli={"target": "a/b/c"}), "invalid --darklaunch-target 'a/b/c' (from command line)"),
    (
        dict(env={"PYTEST_DARKLAUNCH_TARGET": "Default/x"}),
        "invalid PYTEST_DARKLAUNCH_TARGET 'Default/x' (from environment)",
    ),
    (
        dict(cli={"target": "a/b"}, ini={"interval": "5x"}),
        "invalid darklaunch_interval '5x' (from tox.ini): expected a positive duration",
    ),
    (
        dict(cli={"target": "a/b"}, env={"PYTEST_DARKLAUNCH_INTERVAL": "0"}),
        "invalid PYTEST_DARKLAUNCH_INTERVAL '0' (from environment)",
    ),
    (
        dict(cli={"target": "a/b", "iterations": "-3"}),
        "invalid --darklaunch-iterations '-3' (from command line): expected a whole number",
    ),
    (
        dict(cli={"target": "a/b", "mirror-percent": "101"}),
        "invalid --darklaunch-mirror-percent '101' (from command line): expected a percent in",
    ),
    (
        dict(cli={"target": "a/b", "backend": "docker"}),
        "invalid --darklaunch-backend 'docker' (from command line): expected one of local,",
    ),
    (
        dict(cli={"target": "a/b"}, ini={"inconclusive": "maybe"}),
        "invalid darklaunch_inconclusive 'maybe' (from tox.ini): expected one of fail, skip",
    ),
    (
        dict(cli={"target": "a/b"}, env={"PYTEST_DARKLAUNCH_KEEP": "maybe"}),
        "invalid PYTEST_DARKLAUNCH_KEEP 'maybe' (from environment): expected true or false",
    ),
    (
        dict(cli={"target": "a/b", "prometheus-url": "localhost:9090"}),
        "invalid --darklaunch-prometheus-url 'localhost:9090' (from command line): expected an http://",
    ),
    (
        dict(cli={"target": "a/b", "report": " "}),
        "invalid --darklaunch-report ' ' (from command line): expected a non-empty value",
    ),
    (
        dict(cli={"spec": ""}),
        "invalid --darklaunch-spec '' (from command line): expected a non-empty",
    ),
    (dict(cli={"experiment": ""}), "invalid --darklaunch-experiment '' (from command line)"),
    (
        dict(cli={"target": "a/b", "namespace": "Bad_NS"}),
        "invalid --darklaunch-namespace 'Bad_NS' (from command line): expected a DNS-1123 label",
    ),
    (
        dict(cli={"spec": "/nonexistent/darklaunch.yaml"}),
        "invalid --darklaunch-spec '/nonexistent/darklaunch.yaml' (from command line): expected",
    ),
    (
        dict(env={"PYTEST_DARKLAUNCH_EXPERIMENT": "/nonexistent/exp.yaml"}),
        "invalid PYTEST_DARKLAUNCH_EXPERIMENT '/nonexistent/exp.yaml' (from environment)",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "start"), BAD, ids=[b[1].split(" ")[1] + "-" + str(i) for i, b in enumerate(BAD)]
)
def test_bad_setting(kwargs: dict[str, Any], start: str) -> None:
    assert str(config_error(**kwargs)).startswith(start)


def test_spec_file_errors_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "d.yaml", "target: a/b\nmirror: {percent: 130}\n")
    assert str(config_error(cli={"spec": path})).startswith(
        f"invalid mirror.percent 130 (from {path})"
    )


def test_spec_file_without_target_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "d.yaml", "mirror: {percent: 3}\n")
    err = config_error(cli={"spec": path})
    assert (err.field, err.source) == ("target", path)
    assert "--darklaunch-target" in err.allowed


def test_directory_binary_and_malformed_files(tmp_path: Path) -> None:
    assert "not a directory" in str(config_error(cli={"spec": str(tmp_path)}))
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00target")
    assert "a UTF-8 YAML file" in str(config_error(cli={"spec": str(binary)}))
    bad = write(tmp_path / "bad.yaml", "target: [a\n")
    err = config_error(cli={"spec": bad})
    assert err.field == "YAML" and err.source == bad and "line 2" in str(err.value)
    listed = write(tmp_path / "list.yaml", "- a\n- b\n")
    assert str(config_error(cli={"spec": listed})).startswith(
        f"invalid document 'list' (from {listed})"
    )


def test_empty_spec_file_with_cli_target(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.yaml", "")
    assert str(run(cli={"spec": empty, "target": "a/b"}).spec.target) == "a/b"


# --- spec file deep-merged over an imported Iter8 experiment -----------------------------------


def test_spec_file_deep_merges_over_experiment(tmp_path: Path) -> None:
    spec_path = write(
        tmp_path / "darklaunch.yaml",
        (
            "duration: {interval: 2s}\n"
            "versions: {live: {image: 'img:blue'}}\n"
            "objectives: [{metric: error-rate, upper: 0.05}]\n"
        ),
    )
    r = run(cli={"experiment": str(SEED), "spec": spec_path})
    spec = r.spec
    assert str(spec.target) == "default/sample-app"  # from the experiment
    assert spec.duration.interval_s == 2.0  # spec file wins
    assert spec.duration.iterations == 10  # experiment kept
    assert spec.versions.dark.revision == "sample-app-v2"  # experiment kept
    assert spec.versions.live.image == "img:blue"  # spec file adds
    assert [(o.metric, o.upper) for o in spec.objectives] == [("error-rate", 0.05)]  # lists replace
    assert r.origin["interval"] == f"duration.interval in {spec_path}"
    assert r.origin["iterations"] == f"spec.duration.iterationsPerLoop in {SEED}"
    assert r.origin["target"] == f"spec.target in {SEED}"


def test_option_overrides_both_files(tmp_path: Path) -> None:
    spec_path = write(tmp_path / "darklaunch.yaml", "duration: {interval: 2s}\n")
    r = run(
        cli={"experiment": str(SEED), "spec": spec_path, "interval": "3s"}, ini={"iterations": "7"}
    )
    assert (r.spec.duration.interval_s, r.spec.duration.iterations) == (3.0, 7)
    assert r.origin["iterations"] == "darklaunch_iterations in tox.ini"


def test_errors_in_merged_values_name_their_own_source(tmp_path: Path) -> None:
    spec_path = write(tmp_path / "darklaunch.yaml", "duration: {interval: 0s}\n")
    err = config_error(cli={"experiment": str(SEED), "spec": spec_path})
    assert (err.field, err.source) == ("duration.interval", spec_path)
    err = config_error(cli={"experiment": str(SEED), "spec": spec_path}, ini={"interval": "nope"})
    assert (err.field, err.source) == ("darklaunch_interval", "tox.ini")


# --- load_spec ---------------------------------------------------------------------------------


def test_load_spec_without_pytest(tmp_path: Path) -> None:
    path = write(tmp_path / "darklaunch.yaml", "target: a/b\nduration: {iterations: 3}\n")
    assert load_spec(spec_path=path).duration.iterations == 3
    assert load_spec(experiment_path=str(SEED)).duration.iterations == 10
    with pytest.raises(ConfigError):
        load_spec()


def test_compare_is_refused_on_kubernetes_saying_why(tmp_path: Path) -> None:
    spec = tmp_path / "darklaunch.yaml"
    spec.write_text("target: default/sample-app\ncompare: {responses: body}\n")
    err = config_error(cli={"spec": str(spec), "backend": "kubernetes"})
    text = str(err)
    assert text.startswith("invalid compare with --darklaunch-backend 'kubernetes' (from ")
    assert "Istio drops mirrored responses" in text and "--darklaunch-backend local" in text
    spec.write_text("target: default/sample-app\nobjectives:\n"
                    "  - {metric: status-mismatch-rate, upper: 0.01}\n")
    err = config_error(cli={"spec": str(spec), "backend": "kubernetes"})
    assert str(err).startswith("invalid objectives[0].metric with --darklaunch-backend")
    resolved = run(cli={"spec": str(spec), "backend": "local"})
    assert resolved.spec.objectives[0].metric == "status-mismatch-rate"

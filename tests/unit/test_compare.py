"""The comparison core: differences, ignores, Diffy's noise rule, mismatches, redaction,
paired latencies, users' decide/clean callables. No I/O."""

from __future__ import annotations

import json

import pytest

from pytest_darklaunch.core.compare import Comparer, Request, Response, Settings
from pytest_darklaunch.core.compare.diff import differences, field_of
from pytest_darklaunch.core.compare.fields import counted
from pytest_darklaunch.core.compare.latency import LogHistogram, PairedLatency
from pytest_darklaunch.core.compare.redact import SHOWN_BODY_BYTES

BODY = Settings(responses="body")


def doc(**fields: object) -> Response:
    return Response(200, (("content-type", "application/json"),), json.dumps(fields).encode())


def paths(a: Response, b: Response, settings: Settings = BODY) -> list[str]:
    return [d.path for d in differences(a, b, settings)]


def test_json_is_compared_field_by_field_with_types() -> None:
    a = doc(total=17, ok=True, items=[{"id": 1}, {"id": 2}], gone=1)
    b = doc(total=17.0, ok=1, items=[{"id": 1}], new="x")
    assert paths(a, b) == ["$.total", "$.ok", "$.items[1]", "$.gone", "$.new"]
    assert [d.dark for d in differences(a, b, BODY)][-2:] == ["(absent)", '"x"']


def test_ignores_match_paths_fields_ancestors_and_headers() -> None:
    a = Response(200, (("etag", "1"), ("date", "x")), b'{"meta": {"ts": 1}, "l": [{"n": 1}]}')
    b = Response(200, (("etag", "2"), ("date", "y")), b'{"meta": {"ts": 2}, "l": [{"n": 2}]}')
    assert paths(a, b) == ["header:etag", "$.meta.ts", "$.l[0].n"]  # date: never compared
    s = Settings(responses="body", ignore=("$.meta", "$.l[*].n", "header:ETag"))
    assert paths(a, b, s) == []
    assert paths(a, b, Settings(responses="body", ignore=("$.l[1].n",))) == [
        "header:etag", "$.meta.ts", "$.l[0].n"]
    assert field_of('$.l[3]["a b"][0]') == '$.l[*]["a b"][*]'


def test_status_only_ignores_bodies_and_text_bytes_modes_compare_exactly() -> None:
    assert paths(doc(a=1), doc(a=2), Settings()) == []
    assert paths(Response(200), Response(503), Settings()) == ["status"]
    text = Settings(responses="body", body="text")
    assert paths(Response(200, body=b"a"), Response(200, body=b"b"), text) == ["body"]
    assert paths(Response(200, body=b"{}"), Response(200, body=b"{not json"), BODY) == ["body"]
    raw = Settings(responses="body", body="bytes")
    assert paths(Response(200, body=b"\xff"), Response(200, body=b"\xfe"), raw) == ["body"]
    [shown] = differences(Response(200, body=b"\xff"), Response(200, body=b"\xfe"), raw)
    assert (shown.live, shown.dark) == ("1 bytes, starting ff", "1 bytes, starting fe")


def test_bodies_over_max_body_compare_by_length_and_hash() -> None:
    big = Response(200, body=b"{", length=10**6, digest="ab", complete=False)
    assert paths(big, big) == []
    [d] = differences(big, Response(200, body=b"{", length=10**6, digest="cd", complete=False),
                      BODY)
    assert d.path == "body" and d.live == "1000000 bytes, hash ab"


@pytest.mark.parametrize(("raw", "noise", "expected"), [
    (0.03, 0.0, True),        # a regression
    (0.50, 0.49, False),      # relative 1% < 20%: noise
    (0.0002, 0.0, False),     # relative 100% but absolute 0.02% < 0.03%
    (0.01, 0.02, False),      # dark steadier than live: not a regression
    (0.0, 0.0, False),
])
def test_diffy_cutoffs(raw: float, noise: float, expected: bool) -> None:
    assert counted(raw_rate=raw, noise_rate=noise, relative=0.2, absolute=0.0003) is expected


def feed(c: Comparer, n: int, live: Response, dark: Response, live2: Response | None) -> None:
    for i in range(n):
        c.add(Request(f"id-{i}", "GET", "/x"), live, dark, live2)


def test_noise_fields_are_reported_but_not_counted() -> None:
    c = Comparer(Settings(responses="body", noise=True))
    feed(c, 900, doc(ts=1, total=17), doc(ts=2, total=17), doc(ts=3, total=17))
    feed(c, 100, doc(ts=1, total=17), doc(ts=2, total=18), doc(ts=3, total=17))
    s = c.summary()
    rows = {r.field: r for r in s.fields}
    assert (rows["$.ts"].raw_share, rows["$.ts"].noise_share, rows["$.ts"].counted) == (1, 1, False)
    assert (rows["$.total"].raw, rows["$.total"].noise, rows["$.total"].counted) == (100, 0, True)
    assert s.response_mismatches == 100 and s.status_mismatches == 0
    assert all([d.path for d in e.differences] == ["$.total"] for e in s.examples)
    off = Comparer(Settings(responses="body"))
    feed(off, 10, doc(ts=1), doc(ts=2), None)
    assert off.summary().response_mismatches == 10 and off.summary().noise_requests is None


def test_a_status_difference_is_never_noise() -> None:
    c = Comparer(Settings(responses="body", noise=True))
    feed(c, 50, Response(200), Response(500), Response(500))
    s = c.summary()
    assert s.status_mismatches == s.response_mismatches == 50


def test_examples_are_bounded_redacted_and_cut() -> None:
    secret = {"password": "hunter2", "note": "x" * 2000}
    c = Comparer(Settings(responses="body", examples=2, redact=("session",)))
    for i in range(500):
        c.add(Request(f"id-{i}", "POST", "/login?session=abc&u=1"),
              Response(200, (("set-cookie", "sid=zz1"), ("session", "s1")),
                       json.dumps({**secret, "n": 1}).encode()),
              Response(200, (("set-cookie", "sid=zz2"), ("session", "s2")),
                       json.dumps({**secret, "n": 2}).encode()))
    s = c.summary()
    assert len(s.examples) == 2 and len({e.request_id for e in s.examples}) == 2
    shown = json.dumps(s.as_dict()) + "".join(e.line() for e in s.examples)
    for leaked in ("hunter2", "zz1", "zz2", "s1", "s2", "abc"):
        assert leaked not in shown
    assert "session=***" in shown and '"header:set-cookie"' in shown
    assert all(len(e.live_body.encode()) < SHOWN_BODY_BYTES + 40 for e in s.examples)
    assert sum(len(kept) for _, kept in c._examples.values()) <= 3 * len(c.table.raw)


def test_users_decide_and_clean_callables() -> None:
    def decide(request: Request, live: Response, dark: Response) -> bool | None:
        return True if request.path == "/same" else None

    def clean(response: Response) -> Response:
        body = json.loads(response.body)
        body.pop("ts", None)
        return Response(response.status, response.headers, json.dumps(body).encode())

    c = Comparer(BODY, decide=decide, clean=clean)
    c.add(Request("1", "GET", "/same"), doc(a=1), doc(a=2))
    c.add(Request("2", "GET", "/other"), doc(a=1, ts=1), doc(a=1, ts=2))
    c.add(Request("3", "GET", "/other"), doc(a=1), doc(a=3))
    s = c.summary()
    assert s.hook_decisions == {"same": 1, "different": 0}
    assert s.response_mismatches == 1 and [r.field for r in s.fields] == ["$.a"]
    forced = Comparer(BODY, decide=lambda r, a, b: False)
    forced.add(Request("1", "GET", "/"), doc(a=1), doc(a=1))
    assert forced.summary().counted_fields == ["hook:pytest_darklaunch_compare"]


def test_paired_latency_ratio_interval_and_unpaired_side() -> None:
    p = PairedLatency()
    for i in range(1000):
        live = 1000 + (i % 10) * 100
        p.add_pair(live, live * 1.1 + (i % 3 - 1) * 10)
        p.add_entry("live", live)
        p.add_entry("dark", live * 1.1 if i % 2 else live * 1.5)
    assert p.mean_increase() == pytest.approx(0.1, abs=1e-4)
    se = p.mean_increase_se()
    assert se is not None and 0 < se < 0.001
    out = p.as_dict()
    assert out["paired"]["mean_increase"] == pytest.approx(0.1, abs=1e-3)  # type: ignore[index]
    assert out["unpaired"]["mean_increase"] == pytest.approx(0.3, abs=0.02)  # type: ignore[index]


def test_log_histogram_quantiles_are_within_half_a_percent() -> None:
    h = LogHistogram()
    values = [1000 + i for i in range(10_000)]
    for v in values:
        h.add(v)
    q = h.quantile(0.95)
    assert q is not None and abs(q / values[9499] - 1) < 0.005
    assert len(h.counts) < 500 and LogHistogram().quantile(0.5) is None


@pytest.mark.parametrize(("raw", "message"), [
    ({"responses": "full"}, "invalid compare.responses 'full' (from t.yaml): expected one of "
     "status, body"),
    ({"body": "xml"}, "invalid compare.body 'xml' (from t.yaml): expected one of json, text, "
     "bytes"),
    ({"ignore": "$.ts"}, "invalid compare.ignore '$.ts' (from t.yaml): expected a list of a "
     "JSON path"),
    ({"ignore": ["$.ts", "header:"]}, "invalid compare.ignore[1] 'header:' (from t.yaml)"),
    ({"noise": "yes"}, "invalid compare.noise 'yes' (from t.yaml): expected true or false"),
    ({"max_body": "2MiB"}, "invalid compare.max_body '2MiB' (from t.yaml): expected a size such "
     "as 64KiB, from 1 byte to 1MiB"),
    ({"max_body": "lots"}, "invalid compare.max_body 'lots'"),
    ({"examples": -1}, "invalid compare.examples -1 (from t.yaml)"),
    ({"redact": ["x api key"]}, "invalid compare.redact[0] 'x api key'"),
    ({"noise_relative": "120%"}, "invalid compare.noise_relative '120%'"),
    ({"nosie": True}, "invalid key compare.nosie 'unknown' (from t.yaml): expected one of "
     "responses, body"),
])
def test_compare_section_errors_are_one_line(raw: dict[str, object], message: str) -> None:
    from pytest_darklaunch.core.spec.compare import parse_compare
    from pytest_darklaunch.core.spec.reader import Reader, Sources
    from pytest_darklaunch.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_compare(Reader(Sources("t.yaml")), raw)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_compare_section_defaults_and_values() -> None:
    from pytest_darklaunch.core.spec.compare import parse_compare
    from pytest_darklaunch.core.spec.reader import Reader, Sources

    r = Reader(Sources("t.yaml"))
    assert parse_compare(r, True) == Settings()
    s = parse_compare(r, {"responses": "body", "ignore": ["$.items[*].id", "header:date"],
                          "noise": True, "max_body": "100kB", "examples": 2,
                          "redact": ["x-api-key"], "noise_relative": "30%",
                          "noise_absolute": 0.001})
    assert (s.responses, s.noise, s.max_body, s.examples, s.relative_threshold) == (
        "body", True, 100_000, 2, 0.3)
    assert "x-api-key" in s.redacted and "password" in s.redacted


def test_counts_per_request_drop_the_query_and_stay_bounded() -> None:
    from pytest_darklaunch.core.compare.comparer import MAX_TARGETS, OTHER_TARGET

    c = Comparer(Settings())
    for i in range(10):
        c.add(Request(str(i), "GET", f"/cart?token=t{i}"), Response(200), Response(200))
        c.add(Request(f"c{i}", "POST", "/checkout"), Response(200), Response(500))
    for i in range(MAX_TARGETS + 5):
        c.add(Request(f"x{i}", "GET", f"/item/{i}"), Response(200), Response(200))
    targets = c.summary().targets
    assert targets["GET /cart"] == {"paired": 10, "status_mismatches": 0,
                                    "response_mismatches": 0}
    assert targets["POST /checkout"]["status_mismatches"] == 10
    assert len(targets) == MAX_TARGETS + 1 and targets[OTHER_TARGET]["paired"] == 7
    assert not any("token" in key for key in targets)


def test_the_hooks_rules_apply_only_when_a_conftest_implements_them(
    pytester: pytest.Pytester,
) -> None:
    """The comparer skips decoding answers captured alike only when no user's rule would see
    them: the hooks' callables tell, also for a conftest.py loaded after they were made."""
    pytester.makeconftest("""
        from pytest_darklaunch.hookspecs import comparison_callables

        def pytest_configure(config):
            config.stash_rules = comparison_callables(config)
    """)
    pytester.makepyfile(test_root="""
        def test_root(request):
            decide, clean = request.config.stash_rules
            assert (decide.applies(), clean.applies()) == (False, False)
    """)
    sub = pytester.mkpydir("sub")
    sub.joinpath("conftest.py").write_text(
        "def pytest_darklaunch_compare(request, live, dark):\n    return False\n")
    sub.joinpath("test_sub.py").write_text(
        "def test_sub(request):\n"
        "    decide, clean = request.config.stash_rules\n"
        "    assert (decide.applies(), clean.applies()) == (True, False)\n")
    pytester.runpytest("-p", "no:cacheprovider", "test_root.py").assert_outcomes(passed=1)
    pytester.runpytest("-p", "no:cacheprovider", "sub").assert_outcomes(passed=1)

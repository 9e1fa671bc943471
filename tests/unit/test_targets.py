"""Traffic mixes: targets from the spec and from recorded files, their schedule, bad input."""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pytest_darklaunch.core.traffic.mix import Mix, build_mix, mirror_methods, traffic_command
from pytest_darklaunch.core.traffic.model import HTTP_METHODS, Target
from pytest_darklaunch.core.traffic.schedule import Schedule
from pytest_darklaunch.errors import ConfigError


def fail(path: tuple[str, ...], value: object, allowed: str) -> Exception:
    field = "traffic." + ".".join(path).replace(".[", "[")
    return ConfigError(field, value, "spec.yaml", allowed)


def mix(tmp_path: Path, **traffic: Any) -> Mix:
    return build_mix(traffic, fail, str(tmp_path))


def error(tmp_path: Path, **traffic: Any) -> str:
    with pytest.raises(ConfigError) as info:
        mix(tmp_path, **traffic)
    message = str(info.value)
    assert "\n" not in message and message.startswith("invalid ")
    return message


def write(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return name


HAR_ENTRY: dict[str, Any] = {
    "startedDateTime": "2024-05-01T10:00:00.000Z",
    "request": {
        "method": "POST",
        "url": "https://shop.example.com/items?page=2",
        "headers": [
            {"name": ":authority", "value": "shop.example.com"},
            {"name": "Host", "value": "shop.example.com"},
            {"name": "Content-Length", "value": "3"},
            {"name": "Connection", "value": "keep-alive"},
            {"name": "Authorization", "value": "Bearer s3cret"},
            {"name": "Content-Type", "value": "application/json"},
        ],
        "postData": {"mimeType": "application/json", "text": "{}\n"},
    },
}


def har(*entries: dict[str, Any]) -> str:
    return json.dumps({"log": {"version": "1.2", "entries": list(entries)}}, indent=1)


# -- the three forms -------------------------------------------------------------------------


def test_single_target_form_keeps_working_and_gains_a_body(tmp_path: Path) -> None:
    write(tmp_path, "b.bin", b"\x00\xffbinary")
    m = mix(tmp_path, path="/x?y=1", method="put", headers={"Host": "h.example"}, body_file="b.bin")
    assert m.single and m.targets == (
        Target("PUT /x", "PUT", "/x?y=1", (("Host", "h.example"),), b"\x00\xffbinary"),
    )
    assert mix(tmp_path).targets == (Target("GET /", "GET", "/"),)


def test_inline_targets_with_weights_names_and_bodies(tmp_path: Path) -> None:
    write(tmp_path, "avatar.png", b"\x89PNG")
    m = mix(
        tmp_path,
        targets=[
            {"name": "list", "method": "GET", "path": "/items?page=2", "weight": 7},
            {
                "method": "POST",
                "path": "/items",
                "weight": "2",
                "body": '{"sku": "a1"}',
                "headers": {"content-type": "application/json"},
            },
            {
                "name": "avatar",
                "method": "PUT",
                "path": "/users/7/avatar",
                "body_file": "avatar.png",
            },
        ],
    )
    assert [(t.name, t.method, t.weight, t.body) for t in m.targets] == [
        ("list", "GET", 7.0, b""),
        ("POST /items", "POST", 2.0, b'{"sku": "a1"}'),
        ("avatar", "PUT", 1.0, b"\x89PNG"),
    ]
    assert m.targets[1].headers == (("content-type", "application/json"),)


def test_har_keeps_path_query_body_and_drops_host_hop_by_hop_and_length(tmp_path: Path) -> None:
    second = json.loads(json.dumps(HAR_ENTRY))
    second["startedDateTime"] = "2024-05-01T12:00:01.250+02:00"
    second["request"] = {"method": "GET", "url": "http://shop.example.com/", "headers": []}
    m = mix(
        tmp_path,
        targets_file=write(tmp_path, "rec.har", har(HAR_ENTRY, second)),
        timing="recorded",
        speed=2,
    )
    first, last = m.targets
    assert (first.name, first.method, first.path, first.body) == (
        "POST /items",
        "POST",
        "/items?page=2",
        b"{}\n",
    )
    assert first.headers == (
        ("Authorization", "Bearer s3cret"),
        ("Content-Type", "application/json"),
    )
    assert (first.offset_s, last.offset_s, m.timing, m.speed) == (0.0, 1.25, "recorded", 2.0)


def test_har_base64_body(tmp_path: Path) -> None:
    entry = json.loads(json.dumps(HAR_ENTRY))
    entry["request"]["postData"] = {
        "text": base64.b64encode(b"\x00\x01").decode(),
        "encoding": "base64",
    }
    m = mix(tmp_path, targets_file=write(tmp_path, "b.har", har(entry)))
    assert m.targets[0].body == b"\x00\x01"


def test_vegeta_json_and_our_json_lines_in_one_file(tmp_path: Path) -> None:
    lines = [
        {
            "method": "POST",
            "url": "http://a:9090/things?x=1",
            "body": base64.b64encode(b"hi").decode(),
            "header": {"X-Account": ["1", "2"], "Content-Length": ["2"]},
        },
        {"method": "DELETE", "path": "/things/1", "time": 0.5, "name": "del", "body": "é"},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n\n"
    m = mix(tmp_path, targets_file=write(tmp_path, "t.jsonl", text))
    a, b = m.targets
    assert (a.method, a.path, a.headers, a.body) == (
        "POST",
        "/things?x=1",
        (("X-Account", "1"), ("X-Account", "2")),
        b"hi",
    )
    assert (b.name, b.method, b.body, b.offset_s) == ("del", "DELETE", "é".encode(), 0.0)


def test_vegeta_http_format_with_comments_headers_and_at_file_bodies(tmp_path: Path) -> None:
    write(tmp_path, "thing.json", b'{"a": 1}')
    text = (
        "# recorded\nGET http://goku:9090/path/to/dragon?item=balls\nX-Account-ID: 8675309\n\n"
        "POST http://goku:9090/things\nContent-Type: application/json\n@thing.json\n"
    )
    m = mix(tmp_path, targets_file=write(tmp_path, "t.txt", text))
    a, b = m.targets
    assert (a.method, a.path, a.headers) == (
        "GET",
        "/path/to/dragon?item=balls",
        (("X-Account-ID", "8675309"),),
    )
    assert (b.name, b.body, b.headers) == (
        "POST /things",
        b'{"a": 1}',
        (("Content-Type", "application/json"),),
    )


# -- the schedule ----------------------------------------------------------------------------


def test_weighted_draw_is_seeded_and_follows_the_weights() -> None:
    targets = [Target("a", "GET", "/a", weight=7), Target("b", "GET", "/b", weight=3)]
    draws = [Schedule(targets, 100, seed=1).next() for _ in range(1)]
    s1, s2 = Schedule(targets, 100, seed=1), Schedule(targets, 100, seed=1)
    first = [s1.next() for _ in range(10_000)]
    assert first == [s2.next() for _ in range(10_000)] and draws[0] == first[0]
    assert [due for due, _ in first[:3]] == [0.0, 0.01, 0.02]
    share = Counter(i for _, i in first)[0] / 10_000
    assert 0.685 < share < 0.715  # 7/10 within 3.3 standard deviations


def test_equal_weights_replay_in_file_order() -> None:
    targets = [Target(n, "GET", f"/{n}") for n in "abc"]
    s = Schedule(targets, 10)
    assert [s.next()[1] for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_recorded_timing_repeats_the_recording_one_mean_gap_later() -> None:
    targets = [
        Target("late", "GET", "/l", offset_s=3.0),
        Target("early", "GET", "/e", offset_s=0.0),
        Target("mid", "GET", "/m", offset_s=1.0),
    ]
    s = Schedule(targets, 99, timing="recorded", speed=2)
    assert [s.next() for _ in range(4)] == [(0.0, 1), (0.5, 2), (1.5, 0), (2.25, 1)]
    assert s.planned_rps == pytest.approx(3 / 2.25)


# -- bad input: one line each, naming field, value, source and what is allowed ---------------


@pytest.mark.parametrize(
    ("traffic", "expected"),
    [
        (
            {"targets": [{"path": "/", "method": "FETCH"}]},
            "invalid traffic.targets[0].method 'FETCH' (from spec.yaml): expected one of GET, HEAD",
        ),
        (
            {"targets": [{"path": "items"}]},
            "invalid traffic.targets[0].path 'items' (from spec.yaml)",
        ),
        (
            {"targets": [{"path": "/", "weight": 0}]},
            "invalid traffic.targets[0].weight 0 (from spec.yaml): expected a number greater"
            " than 0",
        ),
        (
            {"targets": [{"path": "/", "weight": "lots"}]},
            "invalid traffic.targets[0].weight 'lots'",
        ),
        (
            {"targets": [{"path": "/", "body": "x", "body_file": "f"}]},
            "invalid traffic.targets[0].body_file 'given with body' (from spec.yaml): expected"
            " only one",
        ),
        (
            {"targets": [{"path": "/", "body_file": "nope.png"}]},
            "invalid traffic.targets[0].body_file 'nope.png' (from spec.yaml): expected the "
            "path of a readable file (No such file or directory",
        ),
        (
            {"targets": [{"path": "/", "wieght": 2}]},
            "invalid traffic.targets[0].wieght 'an unknown key' (from spec.yaml): expected one "
            "of name, method, path, weight, headers, body, body_file (did you mean 'weight'?)",
        ),
        (
            {"targets": [{"path": "/"}], "path": "/x"},
            "invalid traffic.path '/x' (from spec.yaml): expected either path (one target) or"
            " targets",
        ),
        (
            {"targets": [{"path": "/"}], "targets_file": "a.har"},
            "invalid traffic.targets_file 'a.har' (from spec.yaml): expected either targets or",
        ),
        (
            {"targets_file": "missing.har"},
            "invalid traffic.targets_file 'missing.har' (from spec.yaml)"
            ": expected the path of a readable file (No such file or directory",
        ),
        (
            {"targets": [{"path": "/"}], "timing": "recorded"},
            "invalid traffic.timing 'recorded' (from spec.yaml): expected rate: request 1 of "
            "targets has no recorded time",
        ),
        (
            {"timing": "replay"},
            "invalid traffic.timing 'replay' (from spec.yaml): expected one of rate,",
        ),
        (
            {"speed": 0},
            "invalid traffic.speed 0 (from spec.yaml): expected a speed factor greater than 0",
        ),
        ({"speed": -1.5}, "invalid traffic.speed -1.5"),
        ({"targets": []}, "invalid traffic.targets [] (from spec.yaml): expected a non-empty list"),
        (
            {"targets": [{"method": "GET"}]},
            "invalid traffic.targets[0].path None (from spec.yaml): expected a request",
        ),
    ],
)
def test_bad_spec_targets(tmp_path: Path, traffic: dict[str, Any], expected: str) -> None:
    assert error(tmp_path, **traffic).startswith(expected)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "a.har",
            '{"log": {"entries": [\n{"request": }]}}',
            "invalid JSON 'Expecting value' (from a.har, line 2 column 13): expected a HAR 1.2"
            " file",
        ),
        ("a.har", '{"log": {}}', "invalid log.entries 'missing' (from a.har): expected a HAR 1.2"),
        (
            "a.har",
            har(HAR_ENTRY, {"startedDateTime": "2024-05-01T10:00:00Z"}),
            "invalid request None (from a.har, entry 2): expected an entry with a request",
        ),
        (
            "a.har",
            har({"request": {"method": "BREW", "url": "http://x/"}}),
            "invalid request.method 'BREW' (from a.har, entry 1): expected one of GET",
        ),
        (
            "a.har",
            har({"request": {"method": "GET", "url": "ftp://x/"}}),
            "invalid request.url 'ftp://x/' (from a.har, entry 1): expected a path starting with /",
        ),
        (
            "a.har",
            har({**HAR_ENTRY, "startedDateTime": "yesterday"}),
            "invalid startedDateTime 'yesterday' (from a.har, entry 1): expected an ISO 8601",
        ),
        (
            "t.jsonl",
            '{"path": "/"}\n{"path": "/", "weight": -1}\n',
            "invalid weight -1 (from t.jsonl, line 2): expected a number greater than 0",
        ),
        (
            "t.jsonl",
            '{"path": "/"}\n\n{"path": \n',
            "invalid JSON 'Expecting value' (from t.jsonl, line 3 column 10)",
        ),
        (
            "t.jsonl",
            '{"method": "GET"}\n',
            "invalid request 'no url or path' (from t.jsonl, line 1): expected an entry with a"
            " request",
        ),
        (
            "t.jsonl",
            '{"url": "http://a/", "body": "%%"}\n',
            "invalid body '%%' (from t.jsonl, line 1): expected the body as base64 text",
        ),
        (
            "t.jsonl",
            '{"path": "/", "time": "soon"}\n',
            "invalid time 'soon' (from t.jsonl, line 1): expected seconds since the recording"
            " started",
        ),
        (
            "t.txt",
            "GET /a\nX-Bad\n",
            "invalid header 'X-Bad' (from t.txt, line 2): expected a header line",
        ),
        (
            "t.txt",
            "GET /a\n@nothere.bin\n",
            "invalid body 'nothere.bin' (from t.txt, line 2): expected the path of a readable file",
        ),
        (
            "t.txt",
            "GET /a\nX-Token: a\x0bb\n",
            "invalid header.X-Token 'control character U+000B at offset 1 (value withheld)' "
            "(from t.txt, lines 1-2)",
        ),
        (
            "t.txt",
            "# only comments\n",
            "invalid traffic.targets_file 't.txt' (from spec.yaml): expected a "
            "file with at least one request",
        ),
        (
            "t.csv",
            "GET /\n",
            "invalid traffic.targets_file 't.csv' (from spec.yaml): expected a file ending in .har",
        ),
    ],
)
def test_bad_targets_files(tmp_path: Path, name: str, text: str, expected: str) -> None:
    assert error(tmp_path, targets_file=write(tmp_path, name, text)).startswith(expected)


def test_recorded_timing_on_a_file_without_times(tmp_path: Path) -> None:
    message = error(tmp_path, targets_file=write(tmp_path, "t.txt", "GET /\n"), timing="recorded")
    assert message == (
        "invalid traffic.timing 'recorded' (from spec.yaml): expected rate: request 1 of t.txt has "
        'no recorded time (HAR startedDateTime, or "time" in JSON lines)'
    )


def test_unreadable_targets_file(tmp_path: Path) -> None:
    (tmp_path / "dir.har").mkdir()
    assert "expected the path of a readable file (not a file:" in error(
        tmp_path, targets_file="dir.har"
    )


def test_secrets_never_in_errors(tmp_path: Path) -> None:
    text = "GET /a\nAuthorization: Bearer s3cret\x01\n"
    assert "s3cret" not in error(tmp_path, targets_file=write(tmp_path, "t.txt", text))
    entry = {
        "request": {
            "method": "GET",
            "url": "http://x/",
            "headers": [{"name": "Cookie", "value": ["s3cret"]}],
        }
    }
    assert "s3cret" not in error(tmp_path, targets_file=write(tmp_path, "c.har", har(entry)))


# -- mirror.methods and traffic.command ------------------------------------------------------


def mirror_fail(path: tuple[str, ...], value: object, allowed: str) -> Exception:
    return ConfigError("mirror." + ".".join(path).replace(".[", "["), value, "spec.yaml", allowed)


def test_mirror_methods_default_list_and_all() -> None:
    assert mirror_methods(None, mirror_fail) == ("GET", "HEAD", "OPTIONS")
    assert mirror_methods(["post", "GET", "GET"], mirror_fail) == ("GET", "POST")
    assert mirror_methods("all", mirror_fail) == HTTP_METHODS
    with pytest.raises(ConfigError) as info:
        mirror_methods(["GET", "FETCH"], mirror_fail)
    assert str(info.value) == (
        "invalid mirror.methods[1] 'FETCH' (from spec.yaml): expected all, or a list of methods "
        "among GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
    )
    with pytest.raises(ConfigError, match=r"invalid mirror.methods \[\] "):
        mirror_methods([], mirror_fail)


def test_traffic_command_found_on_path_or_by_path(tmp_path: Path) -> None:
    assert traffic_command({"command": ["sh", "-c", "true"]}, fail, str(tmp_path)) == (
        "sh",
        "-c",
        "true",
    )
    script = tmp_path / "load.sh"
    script.write_text("#!/bin/sh\n", encoding="utf-8")
    script.chmod(0o755)
    assert traffic_command({"command": "./load.sh --fast"}, fail, str(tmp_path)) == (
        "./load.sh",
        "--fast",
    )
    assert traffic_command({}, fail, str(tmp_path)) is None


@pytest.mark.parametrize(
    ("traffic", "expected"),
    [
        (
            {"command": ["no-such-load-tool-4711", "run"]},
            "invalid traffic.command 'no-such-load-tool-4711' (from spec.yaml): expected an argv "
            "list or a command string, its program on PATH or a path to it "
            "('no-such-load-tool-4711' not found on PATH)",
        ),
        (
            {"command": "./missing.sh"},
            "invalid traffic.command './missing.sh' (from spec.yaml): "
            "expected an argv list or a command string, its program on PATH or a path to it "
            "('./missing.sh' not executable or missing)",
        ),
        ({"command": []}, "invalid traffic.command [] (from spec.yaml)"),
        ({"command": "sh -c 'unclosed"}, 'invalid traffic.command "sh -c \'unclosed"'),
        (
            {"command": ["sh"], "targets": [{"path": "/"}]},
            "invalid traffic.targets [{'path': '/'}] (from spec.yaml): expected no targets with "
            "traffic.command",
        ),
    ],
)
def test_bad_traffic_command(tmp_path: Path, traffic: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        traffic_command(traffic, fail, str(tmp_path))
    assert str(info.value).startswith(expected)

"""Hostile input at every entry point, through functions-framework's test client.

Invariant, for generated bodies, headers, query strings and Pub/Sub envelopes: the reply is a 4xx
with a reason, or the request is acted on (2xx), or, for notify, the message is acknowledged;
never a 5xx for bad input, never a traceback in a reply, and a rejected request changes nothing
in the ledger. The budget is the suite's hypothesis profile (tests/conftest.py). Below the
properties, one regression test for each malformed input that answered 500 or made notify raise.
"""

from __future__ import annotations

import base64
import copy
import json
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app
from hypothesis import given
from hypothesis import strategies as st

from orchestrator import wiring
from orchestrator.app.rerun_request import RERUN_FIELDS
from orchestrator.app.status import StatusReader
from orchestrator.present.slack import SlackMessages
from tests.fakes import LoopedNotify, RecordingEventBus, RecordingNotifier
from tests.unit.test_rerun import KEYS, RUN_ID, Ops

MAIN = str(Path(__file__).resolve().parents[2] / "main.py")


def fullwidth(text: str) -> str:
    """ASCII digits as fullwidth ones (U+FF10...), which int() and fromisoformat may accept."""
    return "".join(chr(0xFF10 + int(c)) if c in string.digits else c for c in text)


class FakeWiring:
    def __init__(self, ops: Ops) -> None:
        self.settings = ops.w.settings
        self.service = ops.w.service
        self.reruns = ops.reruns
        self.status = StatusReader(ops.w.ledger, ops.w.clock)
        self.slack = RecordingNotifier()
        self.notify_service = LoopedNotify(
            ops.w.settings,
            ops.w.ledger,
            self.slack,
            RecordingEventBus(),
            ops.w.clock,
            SlackMessages(ops.w.settings),
            lambda: ops.w.transfers,
        )


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Ops, FakeWiring]]:
    # One world for every example (hypothesis runs many per test): a PARTIAL run to rerun and
    # look at. Examples that are acted on may change it; the invariants hold whatever it holds.
    ops = Ops().closed_partial()
    fake = FakeWiring(ops)
    wiring.install(fake)  # type: ignore[arg-type]
    yield ops, fake
    wiring.reset()


_clients: dict[str, Any] = {}


def client(target: str) -> Any:
    if target not in _clients:
        kind = "cloudevent" if target == "notify" else "http"
        _clients[target] = create_app(target, MAIN, kind).test_client()
    return _clients[target]


def snapshot(ops: Ops) -> Any:
    ledger = ops.w.ledger
    return copy.deepcopy(
        (ledger.runs, ledger.table_docs, ledger.claimed, ledger.done, ledger.remembered)
    )


def check_http(response: Any, before: Any, ops: Ops) -> None:
    text = response.get_data(as_text=True)
    assert response.status_code < 500, text
    assert "Traceback" not in text and 'File "' not in text
    if 400 <= response.status_code < 500:
        body = json.loads(text)
        assert body.get("message"), body  # the reason
        assert snapshot(ops) == before, "a rejected request changed the ledger"


# --------------------------------------------------------------------------- strategies

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
# ASCII digits, and digits of other scripts that str.isdigit or int() accept: superscripts,
# Arabic-Indic, Extended Arabic-Indic, Devanagari, Bengali, Tamil, Thai, Myanmar, fullwidth.
OTHER_DIGITS = "\u00b2\u00b3\u00b9\u0660\u0661\u0662\u06f3\u096a\u096b\u09ec\u0bed\u0e58\u1049"
unicode_digits = st.sampled_from("0123456789" + OTHER_DIGITS + fullwidth("012"))
odd_spaces = st.sampled_from([" ", "\t", "\u00a0", "\u2003", "\u3000", "\ufeff", ""])


@st.composite
def times(draw: st.DrawFn) -> str:
    """Time texts a caller might send: valid RFC 3339 in every zone, near datetime's limits,
    with other scripts' digits, odd spaces, or plain garbage."""
    moment = draw(
        st.datetimes(
            min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.none()
        )
    )
    offset = timedelta(minutes=draw(st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59)))
    text = moment.replace(tzinfo=timezone(offset)).isoformat()
    choice = draw(st.integers(0, 5))
    if choice == 1:
        text = text.replace("+00:00", "Z")
    elif choice == 2:
        digits = draw(st.lists(unicode_digits, min_size=4, max_size=4))
        text = "".join(digits) + text[4:]
    elif choice == 3:
        text = draw(odd_spaces) + text + draw(odd_spaces)
    elif choice == 4:
        text = draw(st.sampled_from(["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"]))
    elif choice == 5:
        text = draw(st.text(max_size=40))
    return text


def deep(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=20, max_value=30_000).map(lambda n: deep(n).encode()),
    st.integers(min_value=20, max_value=10_000).map(
        lambda n: ('{"a":' * n + "1" + "}" * n).encode()
    ),
    st.sampled_from(
        [b'{"slot": 1, "slot": 2}', b'{"a": NaN}', b'{"a": Infinity}', b"1" * 5000, b"\xff\xfe"]
    ),
)


# --------------------------------------------------------------------------- start_export


@given(body=raw_bodies)
def test_start_export_any_body(stack: tuple[Ops, FakeWiring], body: bytes) -> None:
    ops, _ = stack
    before = snapshot(ops)
    response = client("start_export").post("/", data=body, content_type="application/json")
    check_http(response, before, ops)


@given(slot=st.one_of(times(), json_values))
def test_start_export_any_slot(stack: tuple[Ops, FakeWiring], slot: Any) -> None:
    ops, _ = stack
    before = snapshot(ops)
    response = client("start_export").post("/", json={"slot": slot})
    check_http(response, before, ops)


latin1_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
)


@given(header=st.one_of(times().filter(lambda t: all(ord(c) < 256 for c in t)), latin1_text))
def test_start_export_any_schedule_time_header(stack: tuple[Ops, FakeWiring], header: str) -> None:
    ops, _ = stack
    before = snapshot(ops)
    response = client("start_export").post(
        "/", headers={"X-CloudScheduler-ScheduleTime": header.strip()}
    )
    check_http(response, before, ops)


# --------------------------------------------------------------------------- poll


@given(body=raw_bodies.filter(lambda b: b.strip() not in (b"", b"{}")))
def test_poll_any_body_but_empty(stack: tuple[Ops, FakeWiring], body: bytes) -> None:
    ops, _ = stack
    before = snapshot(ops)
    response = client("poll").post("/", data=body, content_type="application/json")
    check_http(response, before, ops)
    assert response.status_code == 400


# --------------------------------------------------------------------------- rerun

rerun_fields = st.sampled_from([*sorted(RERUN_FIELDS), "colour", "RUN_ID", ""])
rerun_values = st.one_of(
    json_values,
    times(),
    st.sampled_from([RUN_ID, "20261127150001", fullwidth("202611271500"), *KEYS]),
    st.lists(st.sampled_from([*KEYS, "shop.nope", " ", "a.b.c.d"]), max_size=3),
    st.builds(lambda d: "".join(d), st.lists(unicode_digits, min_size=8, max_size=10)).map(
        lambda d: f"{d[:4]}-{d[4:6]}-{d[6:8]}"
    ),
)


@given(body=st.dictionaries(rerun_fields, rerun_values, max_size=5))
def test_rerun_any_body(stack: tuple[Ops, FakeWiring], body: dict[str, Any]) -> None:
    ops, _ = stack
    body = {**body, "dry_run": True}  # acted-on examples then change nothing either
    before = snapshot(ops)
    response = client("rerun").post("/", json=body)
    check_http(response, before, ops)


@given(body=raw_bodies)
def test_rerun_any_raw_body(stack: tuple[Ops, FakeWiring], body: bytes) -> None:
    ops, _ = stack
    before = snapshot(ops)
    response = client("rerun").post("/", data=body, content_type="application/json")
    check_http(response, before, ops)


# --------------------------------------------------------------------------- status

query_names = st.sampled_from(["run_id", "limit", "Limit", "x", "run_id[]"])
query_values = st.one_of(
    st.text(max_size=20),
    st.lists(unicode_digits, min_size=1, max_size=4).map("".join),
    st.sampled_from([RUN_ID, "20261127150001", "0", "101", "9" * 400, " 5 ", "5\u00a0"]),
)


@given(pairs=st.lists(st.tuples(query_names, query_values), max_size=3))
def test_status_any_query(stack: tuple[Ops, FakeWiring], pairs: list[tuple[str, str]]) -> None:
    ops, _ = stack
    before = snapshot(ops)
    response = client("status").get("/", query_string=pairs)
    check_http(response, before, ops)


# --------------------------------------------------------------------------- notify


@st.composite
def dts_runs(draw: st.DrawFn) -> dict[str, Any]:
    """TransferRun-shaped data with every field possibly wrong."""
    ops_table = draw(st.sampled_from(KEYS))
    run: dict[str, Any] = {
        "name": draw(
            st.one_of(
                st.just(f"projects/p/locations/l/transferConfigs/{ops_table}/runs/r1"),
                st.text(max_size=30),
                json_values,
            )
        ),
        "runTime": draw(st.one_of(times(), json_values)),
        "state": draw(
            st.one_of(st.sampled_from(["SUCCEEDED", "FAILED", "CANCELLED"]), json_values)
        ),
        "errorStatus": draw(
            st.one_of(
                st.fixed_dictionaries(
                    {
                        "code": st.one_of(
                            st.integers(min_value=-(2**200), max_value=2**200),
                            st.lists(unicode_digits, min_size=1, max_size=12).map("".join),
                            json_values,
                        ),
                        "message": st.one_of(st.text(max_size=40), json_values),
                    }
                ),
                json_values,
            )
        ),
        "params": draw(st.one_of(st.dictionaries(st.text(max_size=10), json_values), json_values)),
    }
    for key in ("startTime", "endTime"):
        if draw(st.booleans()):
            run[key] = draw(st.one_of(times(), json_values))
    return run


@st.composite
def our_events(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, str]]:
    kind = draw(
        st.sampled_from(
            [
                *("EXPORT_STARTED", "EXPORT_FAILED", "EXPORT_LATE", "TABLES_SKIPPED"),
                *("HANDOFF_DONE", "TABLE_FAILED", "RUN_CLOSED", "NOPE"),
            ]
        )
    )
    data = {
        "runId": draw(st.one_of(st.just(RUN_ID), st.text(max_size=14), json_values)),
        "at": draw(st.one_of(times(), json_values)),
        "data": draw(
            st.one_of(
                st.dictionaries(
                    st.sampled_from(
                        [
                            *("deadline_minutes", "tables", "table", "state", "error_code"),
                            *("error_message", "started_at", "finished_at", "failure_cause"),
                            *("status", "minutes"),
                        ]
                    ),
                    st.one_of(json_values, times(), st.integers(-(2**70), 2**70)),
                    max_size=5,
                ),
                json_values,
            )
        ),
    }
    return data, {"rds2bqEvent": kind, "runId": RUN_ID}


attribute_maps = st.one_of(
    st.just({"eventType": "TRANSFER_RUN_FINISHED", "payloadFormat": "JSON_API_V1"}),
    st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=3),
)


@st.composite
def push_bodies(draw: st.DrawFn) -> Any:
    """Pub/Sub push envelopes: the message's data, attributes, id and publish time all varied."""
    shape = draw(st.integers(0, 3))
    if shape == 0:
        payload, attributes = json.dumps(draw(dts_runs())).encode(), draw(attribute_maps)
    elif shape == 1:
        event, attributes = draw(our_events())
        payload = json.dumps(event).encode()
    elif shape == 2:
        payload = draw(raw_bodies)
        attributes = draw(attribute_maps)
    else:
        # Pub/Sub always sends an envelope with a message object; its fields can still be wrong.
        # (What is no envelope at all never comes from Pub/Sub, and functions-framework's own
        # conversion answers it before our code runs.)
        odd = draw(
            st.dictionaries(st.sampled_from(["data", "attributes", "publishTime"]), json_values)
        )
        return {"message": {"messageId": "odd", "data": "", **odd}, "subscription": "s"}
    message: dict[str, Any] = {
        "data": base64.b64encode(payload).decode(),
        "messageId": draw(st.one_of(st.text(min_size=1, max_size=12, alphabet=string.digits))),
        "attributes": attributes,
    }
    if draw(st.booleans()):
        message["publishTime"] = draw(st.one_of(times(), json_values))
    return {"message": message, "subscription": "projects/p/subscriptions/s"}


@given(body=push_bodies())
def test_notify_any_push_body(stack: tuple[Ops, FakeWiring], body: Any) -> None:
    ops, _ = stack
    response = client("notify").post("/", data=json.dumps(body), content_type="application/json")
    text = response.get_data(as_text=True)
    # 2xx: acknowledged (handled, or dropped with a log line). The framework may refuse what is
    # no envelope at all with its own 4xx; never a 5xx (Pub/Sub would redeliver it for days).
    assert response.status_code < 500, text
    assert "Traceback" not in text
    assert ops.w.ledger.held == set(), "a claim was left held"


# --------------------------------------------------------------------------- regressions


def push(data: Any, attributes: dict[str, str] | None = None, mid: str = "r1") -> dict[str, Any]:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return {
        "message": {
            "data": base64.b64encode(raw).decode(),
            "messageId": mid,
            "attributes": attributes
            or {"eventType": "TRANSFER_RUN_FINISHED", "payloadFormat": "JSON_API_V1"},
        },
        "subscription": "projects/p/subscriptions/s",
    }


@pytest.mark.parametrize(
    ("target", "body"),
    [
        ("start_export", deep(5000)),  # deep, well under the 64 KB cap: RecursionError was a 500
        ("rerun", '{"a":' * 3000 + "1" + "}" * 3000),
        ("start_export", '{"slot": "2026-11-27T15:00:00Z", "slot": "2026-11-28T15:00:00Z"}'),
        ("start_export", '{"slot": "9999-12-31T23:59:59-23:59"}'),  # past datetime.max in UTC
        ("start_export", '{"slot": "0001-01-01T00:00:00+23:59"}'),  # before datetime.min in UTC
        ("rerun", json.dumps({"mode": "export", "as_of": fullwidth("2026") + "-11-25"})),
        ("rerun", '{"mode": "export", "as_of": "20261125"}'),
    ],
)
def test_bodies_that_answered_500_answer_400(
    stack: tuple[Ops, FakeWiring], target: str, body: str
) -> None:
    ops, _ = stack
    before = snapshot(ops)
    response = client(target).post("/", data=body, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["message"]
    assert snapshot(ops) == before


@pytest.mark.parametrize(
    "header",
    [
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+05:00",
        fullwidth("2026") + "-11-27T15:00:00Z",
    ],
)
def test_schedule_time_headers_that_answered_500_answer_400(
    stack: tuple[Ops, FakeWiring], header: str
) -> None:
    ops, _ = stack
    before = snapshot(ops)
    response = client("start_export").post(
        "/", headers={"X-CloudScheduler-ScheduleTime": header.encode().decode("latin-1")}
    )
    assert (
        response.status_code == 400
        and "X-CloudScheduler-ScheduleTime" in (response.get_json()["message"])
    )
    assert snapshot(ops) == before


@pytest.mark.parametrize(
    "query",
    [
        [("limit", "\u00b2")],  # str.isdigit says yes, int() says no: was a 500
        [("limit", "\u0661\u0660")],  # Arabic-Indic ten: int() reads it, nobody types it
        [("limit", "5"), ("limit", "6")],
        [("run_id", fullwidth("202611271500"))],
    ],
)
def test_query_parameters_that_answered_500_answer_400(
    stack: tuple[Ops, FakeWiring], query: list[tuple[str, str]]
) -> None:
    response = client("status").get("/", query_string=query)
    assert response.status_code == 400 and response.get_json()["message"]


@pytest.mark.parametrize(
    "run",
    [
        {"errorStatus": {"code": 10**40, "message": "x"}},  # very large integer
        {"errorStatus": {"code": 1, "message": "x"}, "runTime": "9999-12-31T23:59:59-23:59"},
        {"runTime": "0001-01-01T00:00:00+23:59"},
        {"endTime": "9999-12-31T23:59:59-01:00"},
        {"errorStatus": {"code": "²", "message": "x"}},
        {"params": {"a": float("nan")}},
    ],
)
def test_event_data_that_made_notify_raise_is_acknowledged(
    stack: tuple[Ops, FakeWiring], run: dict[str, Any]
) -> None:
    ops, _ = stack
    table = ops.table(KEYS[1])
    data = {
        "name": table.dts_run or "projects/p/locations/l/transferConfigs/c/runs/r",
        "runTime": "2026-11-27T15:00:00Z",
        "state": "SUCCEEDED",  # news for the FAILED table: recorded, were it well formed
        **run,
    }
    response = client("notify").post(
        "/", data=json.dumps(push(json.dumps(data).encode())), content_type="application/json"
    )
    assert response.status_code < 300, response.get_data(as_text=True)
    assert ops.w.ledger.held == set()


def test_an_unexpected_error_in_notify_is_acknowledged_and_releases_its_claim(
    stack: tuple[Ops, FakeWiring],
) -> None:
    # GIVEN an event whose handling hits a defect (here: Slack rendering of an absurd deadline)
    ops, fake = stack

    class Broken(RecordingNotifier):
        def post(self, payload: dict[str, Any]) -> None:
            raise OverflowError("a defect, not one of our errors")

    fake.notify_service.notifier = Broken()
    try:
        event = {"runId": RUN_ID, "at": "2026-11-27T15:10:00Z", "data": {"deadline_minutes": 1}}
        body = push(event, {"rds2bqEvent": "EXPORT_LATE", "runId": RUN_ID}, mid="broken-1")
        # WHEN notify receives it
        response = client("notify").post(
            "/", data=json.dumps(body), content_type="application/json"
        )
    finally:
        fake.notify_service.notifier = fake.slack
    # THEN it is acknowledged (no redelivery for days) and its claim is not left held
    assert response.status_code < 300
    assert ops.w.ledger.held == set()


def test_a_run_time_out_of_range_in_an_event_is_dropped_not_raised() -> None:
    # parse_timestamp said OverflowError for times that overflow in UTC; callers expect ValueError
    from orchestrator.core.timestamps import parse_timestamp

    with pytest.raises(ValueError):
        parse_timestamp("9999-12-31T23:59:59-23:59")
    assert parse_timestamp("2026-11-28T00:00:00+09:00") == datetime(2026, 11, 27, 15, tzinfo=UTC)


def test_a_far_future_run_time_is_dropped_not_rendered_in_local_time(
    stack: tuple[Ops, FakeWiring],
) -> None:
    # 9999-12-31 20:00 UTC is past datetime.max in Asia/Tokyo: rendering the unknown run's
    # Slack message raised OverflowError, a 500, and Pub/Sub redelivered it.
    ops, fake = stack
    data = {
        "name": "projects/p/locations/l/transferConfigs/c/runs/r",
        "runTime": "9999-12-31T20:00:00Z",
        "state": "FAILED",
    }
    before = len(fake.slack.payloads)
    response = client("notify").post(
        "/", data=json.dumps(push(data, mid="far")), content_type="application/json"
    )
    assert response.status_code < 300
    assert len(fake.slack.payloads) == before  # dropped as malformed, not posted
    assert ops.w.ledger.held == set()


@given(body=st.dictionaries(rerun_fields, rerun_values, max_size=5))
def test_rerun_any_body_for_real(stack: tuple[Ops, FakeWiring], body: dict[str, Any]) -> None:
    # Not a dry run: what is acted on may start runs; what is refused must still change nothing,
    # including a request_id remembered before a refusal.
    ops, _ = stack
    before = snapshot(ops)
    response = client("rerun").post("/", json=body)
    check_http(response, before, ops)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (deep(17), "nests deeper than 16"),
        ('{"a": 1, "a": 2}', "appears more than once"),
        ('{"a": NaN}', "NaN is not a JSON number"),
        ('{"a": -Infinity}', "-Infinity is not a JSON number"),
        (f'{{"a": [{2**63}]}}', "out of range"),
        ("1" * 5000, "unreadable"),  # more digits than int() converts
        ("{", "line 1 column 2"),
    ],
)
def test_strict_json_refuses_with_a_short_reason(text: str, reason: str) -> None:
    from orchestrator.core import jsontext

    with pytest.raises(jsontext.JsonTextError, match=reason):
        jsontext.loads(text)


def test_strict_json_keeps_what_is_fine() -> None:
    from orchestrator.core import jsontext

    text = json.dumps({"a": [deep(3), {"b": 2**63 - 1, "c": '"[[["'}], "d": None})
    assert jsontext.loads(text) == json.loads(text)
    assert jsontext.depth('["[[[[", {"x": "\\"]"}]') == 2

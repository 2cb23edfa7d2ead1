"""Firestore REST mechanics without a network: the value codec, query bodies, and the requests the
API object sends (over a recording stand-in for ``GoogleHttp``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from orchestrator.adapters.firestore_rest import (
    FirestoreApi,
    decode_fields,
    decode_value,
    encode_fields,
    encode_value,
    field_path,
    structured_query,
)
from orchestrator.adapters.google_http import ApiError, GoogleHttp
from orchestrator.adapters.ledger import _run_doc, _to_doc, build_ledger
from orchestrator.config import Settings, load_settings
from orchestrator.model import Run, RunState, TableRun, TableState
from orchestrator.retry import Backoff
from tests.unit.test_config import VALID

T0 = datetime(2026, 11, 27, 15, 0, 1, 123456, tzinfo=UTC)


def wire(value: Any) -> Any:
    """As the server would send it back: through JSON."""
    return json.loads(json.dumps(encode_value(value)))


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -(2**63),
        2**63 - 1,
        1.5,
        0.0,
        "",
        "日本語 with `ticks`",
        b"\x00\xff",
        T0,
        [],
        [1, "a", None, [True, {"x": 2}]],
        {},
        {"a": {"b": {"c": [T0, 1.25]}}, "weird key.with dots": "v"},
    ],
)
def test_values_round_trip(value: Any) -> None:
    assert decode_value(wire(value)) == value


def test_ints_and_bools_stay_apart() -> None:
    assert wire(True) == {"booleanValue": True}
    assert wire(1) == {"integerValue": "1"}  # int64 is a string in JSON
    assert type(decode_value(wire(True))) is bool
    assert type(decode_value(wire(1))) is int
    assert type(decode_value(wire(1.0))) is float
    assert (
        decode_value({"doubleValue": 3}) == 3.0 and type(decode_value({"doubleValue": 3})) is float
    )


def test_none_is_null() -> None:
    assert wire(None) == {"nullValue": None}


def test_non_finite_doubles_use_their_json_names() -> None:
    assert wire(math.inf) == {"doubleValue": "Infinity"}
    assert wire(-math.inf) == {"doubleValue": "-Infinity"}
    assert math.isnan(decode_value(wire(math.nan)))


def test_tuples_and_str_enums_are_stored_as_arrays_and_strings() -> None:
    assert wire(("a", "b")) == {
        "arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}
    }
    assert wire(RunState.EXPORTING) == {"stringValue": "EXPORTING"}
    assert type(decode_value(wire(RunState.EXPORTING))) is str


def test_values_out_of_range_or_of_unknown_type_are_refused() -> None:
    with pytest.raises(ValueError, match="64-bit"):
        encode_value(2**63)
    with pytest.raises(TypeError, match="set"):
        encode_value({1, 2})
    with pytest.raises(TypeError, match="field names"):
        encode_fields({1: "x"})
    with pytest.raises(ValueError, match="unknown"):
        decode_value({"fancyValue": 1})


# --------------------------------------------------------------------------- timestamps


def stamp(value: datetime) -> str:
    return str(encode_value(value)["timestampValue"])


def test_timestamps_are_utc_with_microseconds() -> None:
    tokyo = timezone(timedelta(hours=9))
    assert stamp(T0) == "2026-11-27T15:00:01.123456Z"
    assert stamp(T0.astimezone(tokyo)) == "2026-11-27T15:00:01.123456Z"
    assert stamp(T0.replace(tzinfo=None)) == "2026-11-27T15:00:01.123456Z"  # naive: UTC
    assert stamp(T0.replace(microsecond=0)) == "2026-11-27T15:00:01Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T15:00:01Z", T0.replace(microsecond=0)),
        ("2026-11-27T15:00:01.1Z", T0.replace(microsecond=100000)),
        ("2026-11-27T15:00:01.123456Z", T0),
        ("2026-11-27T15:00:01.123456789Z", T0),  # nanoseconds truncated, as the SDK did
        ("2026-11-28T00:00:01.123456+09:00", T0),
        ("2026-11-27t15:00:01.123456z", T0),
    ],
)
def test_timestamps_parse_to_aware_utc(text: str, expected: datetime) -> None:
    parsed = decode_value({"timestampValue": text})
    assert parsed == expected and parsed.tzinfo is UTC


def test_a_bad_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        decode_value({"timestampValue": "2026-11-27 15:00:01"})


def test_records_round_trip_with_every_field_type() -> None:
    run = Run(
        "202611271500",
        T0,
        "daily",
        "rds2bq-prod-202611271500",
        ("shop.orders", "shop.items"),
        state=RunState.EXPORTED,
        extracted_gb=1.5,
        percent=100,
        snapshot_time=T0 - timedelta(hours=6),
        outbox=(),
    )
    fields = decode_fields(json.loads(json.dumps(encode_fields(_run_doc(run)))))
    assert fields["open"] is True
    assert fields["state"] == "EXPORTED" and fields["tables"] == ["shop.orders", "shop.items"]
    assert fields["snapshot_time"] == T0 - timedelta(hours=6) and fields["closed_at"] is None
    table = TableRun("shop.orders", TableState.STARTED, error_code=7, started_at=T0)
    assert decode_fields(json.loads(json.dumps(encode_fields(_to_doc(table))))) == _to_doc(table)


# --------------------------------------------------------------------------- queries


def test_field_paths_are_quoted_only_when_needed() -> None:
    assert field_path("run_time") == "run_time"
    assert field_path("a.b") == "`a.b`"
    assert field_path("it`s\\") == "`it\\`s\\\\`"


def test_a_query_with_one_filter_order_and_limit() -> None:
    query = structured_query(
        "runs", where=[("open", "EQUAL", True)], order_by=[("run_time", "DESCENDING")], limit=3
    )
    assert query == {
        "from": [{"collectionId": "runs"}],
        "where": {
            "fieldFilter": {
                "field": {"fieldPath": "open"},
                "op": "EQUAL",
                "value": {"booleanValue": True},
            }
        },
        "orderBy": [{"field": {"fieldPath": "run_time"}, "direction": "DESCENDING"}],
        "limit": 3,
    }


def test_filters_are_anded_and_in_takes_an_array() -> None:
    query = structured_query("tables", where=[("state", "IN", ["A", "B"]), ("n", "EQUAL", 1)])
    composite = query["where"]["compositeFilter"]
    assert composite["op"] == "AND"
    assert composite["filters"][0]["fieldFilter"]["value"] == {
        "arrayValue": {"values": [{"stringValue": "A"}, {"stringValue": "B"}]}
    }
    assert structured_query("tables") == {"from": [{"collectionId": "tables"}]}


def test_unknown_operators_and_directions_are_refused() -> None:
    with pytest.raises(ValueError, match="operator"):
        structured_query("c", where=[("a", "==", 1)])
    with pytest.raises(ValueError, match="direction"):
        structured_query("c", order_by=[("a", "desc")])


# --------------------------------------------------------------------------- requests


class RecordingHttp(GoogleHttp):
    """Answers from a script and records every call; no network."""

    def __init__(self, *answers: Any) -> None:
        super().__init__("http://firestore.invalid/v1/")
        self.answers = list(answers)
        self.calls: list[tuple[str, str, Any]] = []

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        self.calls.append((method, path, body))
        answer = self.answers.pop(0) if self.answers else {}
        if isinstance(answer, Exception):
            raise answer
        return answer


def api_over(http: GoogleHttp, database: str = "(default)") -> FirestoreApi:
    return FirestoreApi(http, "p", database, sleep=lambda _: None)


ROOT = "projects/p/databases/(default)/documents"
URL_ROOT = "projects/p/databases/%28default%29/documents"


def test_get_escapes_each_segment_and_reads_fields_and_update_time() -> None:
    http = RecordingHttp(
        {
            "name": f"{ROOT}/runs/a b:c",
            "fields": {"n": {"integerValue": "2"}},
            "updateTime": "2026-11-27T15:00:01.123456789Z",
        }
    )
    doc = api_over(http).get("runs/a b:c")
    assert http.calls == [("GET", f"{URL_ROOT}/runs/a%20b%3Ac", None)]
    assert doc is not None and doc.fields == {"n": 2}
    assert doc.update_time == "2026-11-27T15:00:01.123456789Z"  # verbatim, for a precondition


def test_get_of_a_missing_document_is_none_and_other_errors_pass() -> None:
    http = RecordingHttp(ApiError(404, "NOT_FOUND", "gone"), ApiError(403, "PERMISSION_DENIED", ""))
    api = api_over(http)
    assert api.get("runs/x") is None
    with pytest.raises(ApiError):
        api.get("runs/x")
    assert len(http.calls) == 2


def test_reads_are_retried_on_any_transient_fault_within_bounds() -> None:
    doc = {"name": f"{ROOT}/c/1", "fields": {}, "updateTime": "2026-11-27T15:00:01Z"}
    http = RecordingHttp(
        ApiError(0, "UNAVAILABLE", "connection refused"),
        ApiError(0, "DEADLINE_EXCEEDED", "no answer"),
        ApiError(503, "UNAVAILABLE", ""),
        doc,
    )
    slept: list[float] = []
    api = FirestoreApi(http, "p", backoff=Backoff(4, 0.1, 1.0, 10.0), sleep=slept.append)
    assert api.get("c/1") is not None
    assert len(http.calls) == 4 and len(slept) == 3
    http = RecordingHttp(*[ApiError(503, "UNAVAILABLE", "")] * 5)
    with pytest.raises(ApiError):
        FirestoreApi(http, "p", backoff=Backoff(4, 0.1, 1.0, 10.0), sleep=slept.append).get("c/1")
    assert len(http.calls) == 4  # bounded


@pytest.mark.parametrize(
    ("fault", "retried"),
    [
        (ApiError(0, "UNAVAILABLE", "connection refused"), True),  # never reached Firestore
        (ApiError(429, "RESOURCE_EXHAUSTED", ""), True),  # throttled, not applied
        (ApiError(503, "UNAVAILABLE", ""), False),  # may have been applied
        (ApiError(0, "DEADLINE_EXCEEDED", "no answer"), False),  # outcome unknown
        (ApiError(409, "ALREADY_EXISTS", ""), False),
    ],
)
def test_a_commit_is_retried_only_when_it_cannot_have_been_applied(
    fault: ApiError, retried: bool
) -> None:
    http = RecordingHttp(fault, {})
    api = api_over(http)
    if retried:
        api.create("c/1", {"a": 1})
    else:
        with pytest.raises(ApiError):
            api.create("c/1", {"a": 1})
    assert len(http.calls) == (2 if retried else 1)


def test_writes_carry_their_preconditions() -> None:
    http = RecordingHttp()
    api = api_over(http, "ledger-db")
    api.create("c/1", {"a": 1})
    api.update("c/1", {"done": True, "a.b": 2})
    api.update("c/1", {"a": 3}, update_time="2026-11-27T15:00:01.1Z")
    api.set("c/1", {"a": 4})
    api.delete("c/1")
    name = "projects/p/databases/ledger-db/documents/c/1"
    assert {path for _, path, _ in http.calls} == {
        "projects/p/databases/ledger-db/documents:commit"
    }
    writes = [body["writes"][0] for _, _, body in http.calls]
    assert writes[0] == {
        "update": {"name": name, "fields": {"a": {"integerValue": "1"}}},
        "currentDocument": {"exists": False},
    }
    assert writes[1]["updateMask"] == {"fieldPaths": ["done", "`a.b`"]}
    assert writes[1]["currentDocument"] == {"exists": True}
    assert writes[2]["currentDocument"] == {"updateTime": "2026-11-27T15:00:01.1Z"}
    assert "currentDocument" not in writes[3] and "updateMask" not in writes[3]
    assert writes[4] == {"delete": name}


def test_queries_run_under_their_parent_and_return_only_documents() -> None:
    doc = {"name": f"{ROOT}/runs/r/tables/t", "fields": {}, "updateTime": "2026-11-27T15:00:01Z"}
    http = RecordingHttp(
        [{"document": doc, "readTime": "x"}, {"readTime": "x", "done": True}],
        [{"readTime": "x", "done": True}],
    )
    api = api_over(http)
    assert [d.name for d in api.run_query("runs/r", structured_query("tables"))] == [doc["name"]]
    assert api.run_query("", structured_query("runs")) == []
    assert [path for _, path, _ in http.calls] == [
        f"{URL_ROOT}/runs/r:runQuery",
        f"{URL_ROOT}:runQuery",
    ]
    assert http.calls[0][2] == {"structuredQuery": {"from": [{"collectionId": "tables"}]}}


def test_count_is_an_aggregation_query() -> None:
    http = RecordingHttp(
        [{"result": {"aggregateFields": {"count": {"integerValue": "1234"}}}, "readTime": "x"}]
    )
    query = structured_query("tables", where=[("state", "IN", ["PENDING"])])
    assert api_over(http).count("runs/r", query) == 1234
    method, path, body = http.calls[0]
    assert (method, path) == ("POST", f"{URL_ROOT}/runs/r:runAggregationQuery")
    assert body == {
        "structuredAggregationQuery": {
            "structuredQuery": query,
            "aggregations": [{"alias": "count", "count": {}}],
        }
    }


# --------------------------------------------------------------------------- build_ledger


@pytest.fixture
def settings() -> Settings:
    env = {**VALID, "RDS2BQ_FIRESTORE_DATABASE": "ledger"}
    return load_settings(env, read_text=lambda _: "shop.orders\n")


def test_build_ledger_uses_the_emulator_when_its_host_is_set(settings: Settings) -> None:
    ledger = build_ledger(settings, {"FIRESTORE_EMULATOR_HOST": "127.0.0.1:8123"})
    api = ledger._api
    assert api.http.base_url == "http://127.0.0.1:8123/v1/"
    assert api.root == f"projects/{settings.gcp_project}/databases/ledger/documents"


def test_build_ledger_goes_to_firestore_otherwise(settings: Settings) -> None:
    ledger = build_ledger(settings, {})
    assert ledger._api.http.base_url == "https://firestore.googleapis.com/v1/"

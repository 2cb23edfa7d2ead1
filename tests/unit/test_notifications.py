"""notifications.py: what arrives on the topic, parsed or refused; never a secret kept."""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.adapters.pubsub import encode_message
from orchestrator.core.errors import PermanentError
from orchestrator.core.events import MAX_DATA_BYTES, Event, ExportStarted, RunClosed, TableFailed
from orchestrator.core.model import EventKind, RunState, TableState
from orchestrator.core.notifications import (
    DtsRunState,
    MalformedMessageError,
    PubsubMessage,
    TransferRunFinished,
    message_from_push,
    parse_message,
)
from orchestrator.core.timestamps import parse_timestamp

EVENTS = Path(__file__).resolve().parents[1] / "events"
CANARY = "CANARY"  # every secret-ish param of the canonical DTS messages holds this
DTS_ATTRS = {"eventType": "TRANSFER_RUN_FINISHED", "payloadFormat": "JSON_API_V1"}
KEY_ID, TEMP_KEY_ID = "AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"  # AWS's documented samples
EVENT = {"rds2bqEvent": "RUN_CLOSED"}
CONFIG = (
    "projects/rds2bq-test/locations/asia-northeast1/transferConfigs/"
    "6543a1b2-0000-2c4d-8e9f-001a2b3c4d5e"
)


def load(name: str) -> PubsubMessage:
    return message_from_push(json.loads((EVENTS / name).read_text()))


def dts_message(**changes: Any) -> PubsubMessage:
    """The canonical SUCCEEDED run with top-level fields changed (None deletes one)."""
    body = json.loads(load("dts_run_succeeded.json").data)
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return PubsubMessage(json.dumps(body).encode(), DTS_ATTRS, "m-1")


def malformed_reason(message: PubsubMessage) -> str:
    with pytest.raises(MalformedMessageError) as caught:
        parse_message(message)
    return caught.value.reason


# --------------------------------------------------------------------------- DTS notifications


def test_succeeded_run_is_parsed_to_what_rds2bq_needs() -> None:
    # GIVEN the canonical SUCCEEDED notification WHEN parsed
    note = parse_message(load("dts_run_succeeded.json"))

    # THEN every field rds2bq uses is there, times are aware UTC
    assert isinstance(note, TransferRunFinished)
    assert note.config_name == CONFIG
    assert note.run_name == CONFIG + "/runs/6571d3c4-0000-2e8f-b1a2-3c4d5e6f7a8b"
    assert note.run_time == datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
    assert note.run_time.utcoffset() == timedelta(0)
    assert note.state is DtsRunState.SUCCEEDED
    assert note.state.table_state is TableState.SUCCEEDED
    assert (note.error_code, note.error_message) == (0, "")
    assert note.start_time == datetime(2026, 11, 27, 15, 10, 3, 123456, tzinfo=UTC)
    assert note.end_time == datetime(2026, 11, 27, 15, 14, 41, 500000, tzinfo=UTC)
    assert note.destination_dataset == "rds_shop"
    assert note.data_source_id == "amazon_s3"
    assert note.data_path.endswith('{run_time|"%Y%m%d%H%M"}/shop/shop.orders/*.parquet')
    assert note.destination_table_name_template == "shop__orders"
    assert (note.project, note.location, note.run_id) == (
        "rds2bq-test",
        "asia-northeast1",
        "6571d3c4-0000-2e8f-b1a2-3c4d5e6f7a8b",
    )
    assert note.config_id == "6543a1b2-0000-2c4d-8e9f-001a2b3c4d5e"


def test_failed_run_keeps_dts_error_but_scrubs_the_echoed_key() -> None:
    note = parse_message(load("dts_run_failed.json"))

    assert isinstance(note, TransferRunFinished)
    assert note.state is DtsRunState.FAILED
    assert note.error_code == 9
    assert note.error_message.startswith("Failed to list objects under s3://acme-rds-exports/")
    assert "Access Denied" in note.error_message
    assert "[REDACTED]" in note.error_message  # the key id DTS echoed in its message
    assert CANARY not in note.error_message


def test_cancelled_run_without_start_time() -> None:
    note = parse_message(load("dts_run_cancelled.json"))

    assert isinstance(note, TransferRunFinished)
    assert note.state is DtsRunState.CANCELLED
    assert note.state.table_state is TableState.CANCELLED
    assert note.start_time is None
    assert note.error_message == "Transfer run was cancelled by the user."


@pytest.mark.parametrize(
    "name", ["dts_run_succeeded.json", "dts_run_failed.json", "dts_run_cancelled.json"]
)
def test_no_param_but_the_two_kept_survives_parsing(name: str) -> None:
    # GIVEN a message whose params hold canaries in access_key_id, secret_access_key, and a
    # param nobody knows about
    message = load(name)
    params = json.loads(message.data)["params"]
    assert CANARY in params["access_key_id"]
    assert CANARY in params["secret_access_key"]
    assert CANARY in params["some_future_param"]

    # WHEN parsed
    note = parse_message(message)

    # THEN no trace of them: not in repr, not in any field, not as a key
    assert CANARY not in repr(note)
    assert CANARY not in str(note)
    assert CANARY not in json.dumps(dataclasses.asdict(note), default=str)
    assert not hasattr(note, "params")
    assert {f.name for f in dataclasses.fields(note)}.isdisjoint(
        {"access_key_id", "secret_access_key", "some_future_param", "params"}
    )


def test_nanosecond_and_offset_timestamps_become_utc() -> None:
    assert parse_timestamp("2026-11-27T15:10:03.123456789Z") == datetime(
        2026, 11, 27, 15, 10, 3, 123456, tzinfo=UTC
    )
    assert parse_timestamp("2026-11-28T00:00:00+09:00") == datetime(2026, 11, 27, 15, tzinfo=UTC)


def test_legacy_run_name_without_location() -> None:
    note = parse_message(dts_message(name="projects/p/transferConfigs/c/runs/r"))

    assert isinstance(note, TransferRunFinished)
    assert (note.project, note.location, note.config_id, note.run_id) == ("p", "", "c", "r")
    assert note.config_name == "projects/p/transferConfigs/c"


def test_an_aws_key_id_in_any_error_text_is_scrubbed() -> None:
    message = dts_message(
        params={"data_path": "s3://b/p/*.parquet"},
        errorStatus={
            "code": 7,
            "message": "denied for AKIAIOSFODNN7EXAMPLE and ASIAY34FZKBOKMUTVV7A",
        },
        state="FAILED",
    )
    note = parse_message(message)

    assert isinstance(note, TransferRunFinished)
    assert note.error_message == "denied for [REDACTED] and [REDACTED]"


# --------------------------------------------------------------------------- our events


def test_event_round_trip() -> None:
    event = TableFailed(
        "202611271500",
        datetime(2026, 11, 27, 15, 14, 43, 250000, tzinfo=UTC),
        table="shop.orders",
        state=TableState.FAILED,
        error_code=9,
    )

    data, attributes = encode_message(event)

    assert attributes == {"rds2bqEvent": "TABLE_FAILED", "runId": "202611271500"}
    assert parse_message(PubsubMessage(data, attributes, "m-2")) == event


def test_event_datetimes_travel_as_rfc3339_strings() -> None:
    at = datetime(2026, 11, 28, 0, 5, tzinfo=UTC)
    event = ExportStarted("202611271500", at, snapshot_time=at)

    data, attributes = encode_message(event)
    parsed = parse_message(PubsubMessage(data, attributes))

    assert json.loads(data)["data"]["snapshot_time"] == "2026-11-28T00:05:00Z"
    assert isinstance(parsed, ExportStarted)
    assert parsed.snapshot_time == at  # and come back as the datetime they were


def test_canonical_event_file_parses() -> None:
    event = parse_message(load("rds2bq_event_table_failed.json"))

    assert isinstance(event, Event)
    assert event.kind is EventKind.TABLE_FAILED
    assert event.run_id == "202611271500"
    assert event.at == datetime(2026, 11, 27, 15, 14, 43, 250000, tzinfo=UTC)
    assert isinstance(event, TableFailed)
    assert event.table == "shop.orders"
    # a message published before the data carried its kind (it is in the attribute only)
    assert "kind" not in json.loads(load("rds2bq_event_table_failed.json").data)
    assert event == TableFailed(
        "202611271500",
        datetime(2026, 11, 27, 15, 14, 43, 250000, tzinfo=UTC),
        table="shop.orders",
        state=TableState.FAILED,
        error_code=9,
        error_message="Access Denied",
        dts_run=CONFIG + "/runs/6571d3c4-0000-2e8f-b1a2-3c4d5e6f7a8c",
        started_at=datetime(2026, 11, 27, 15, 10, 3, 123456, tzinfo=UTC),
        finished_at=datetime(2026, 11, 27, 15, 14, 41, 500000, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        (
            RunClosed("not-a-run", datetime(2026, 1, 1, tzinfo=UTC), state=RunState.FAILED),
            "run id",
        ),
        (RunClosed("202601010000", datetime(2026, 1, 1), state=RunState.FAILED), "naive"),
        (
            RunClosed(
                "202601010000",
                datetime(2026, 1, 1, tzinfo=UTC),
                state=RunState.FAILED,
                failure_cause="x" * MAX_DATA_BYTES,
            ),
            "limit",
        ),
    ],
)
def test_encode_refuses_what_the_parser_would_refuse(event: Event, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        encode_message(event)


# --------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("malformed_not_json.json", "data is not JSON"),
        ("malformed_missing_fields.json", "missing 'name'"),
        ("malformed_unknown_event_type.json", "unknown event type 'TRANSFER_CONFIG_DELETED'"),
        ("malformed_empty_data.json", "empty data"),
    ],
)
def test_canonical_malformed_messages(name: str, reason: str) -> None:
    message = load(name)

    with pytest.raises(MalformedMessageError) as caught:
        parse_message(message)

    assert caught.value.reason == reason
    assert caught.value.message_id == message.message_id
    assert isinstance(caught.value, PermanentError)  # acknowledged, never retried


def test_five_megabytes_is_refused_before_decoding_and_fast() -> None:
    blob = b"{" + b'"a":"' + b"x" * (5 * 1024 * 1024) + b'"}'

    started = time.perf_counter()
    reason = malformed_reason(PubsubMessage(blob, DTS_ATTRS, "big"))
    elapsed = time.perf_counter() - started

    assert reason == f"data larger than {MAX_DATA_BYTES} bytes"
    assert elapsed < 0.05


def test_five_megabytes_in_a_push_body_is_refused_before_base64_decoding() -> None:
    data = base64.b64encode(b"x" * (5 * 1024 * 1024)).decode()

    with pytest.raises(MalformedMessageError, match="larger than"):
        message_from_push({"message": {"data": data, "messageId": "1"}})


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"name": None}, "missing 'name'"),
        ({"runTime": None}, "missing 'runTime'"),
        ({"state": None}, "missing 'state'"),
        ({"name": "transferConfigs/c/runs/r"}, "'name' is not"),
        ({"state": "RUNNING"}, "state 'RUNNING' is not a finished state"),
        ({"state": 3}, "'state' is not text"),
        ({"runTime": "yesterday"}, "'runTime' is not an RFC 3339 timestamp"),
        ({"runTime": "2026-11-27T15:00:00"}, "'runTime' is not an RFC 3339 timestamp"),
        ({"runTime": "2026-13-01T00:00:00Z"}, "'runTime' is not an RFC 3339 timestamp"),
        ({"runTime": 1764255600}, "'runTime' is not a timestamp"),
        ({"startTime": "2026-11-27 nope"}, "'startTime' is not an RFC 3339 timestamp"),
        ({"endTime": "9999-99-99T99:99:99Z"}, "'endTime' is not an RFC 3339 timestamp"),
        ({"errorStatus": "boom"}, "'errorStatus' is not an object"),
        ({"errorStatus": {"code": "x", "message": "m"}}, "'errorStatus.code' is not a number"),
        ({"errorStatus": {"code": 1, "message": ["m"]}}, "'errorStatus.message' is not text"),
        ({"params": ["data_path"]}, "'params' is not an object"),
        ({"params": {"data_path": 5}}, "'data_path' is not text"),
        ({"destinationDatasetId": {"x": 1}}, "'destinationDatasetId' is not text"),
    ],
)
def test_malformed_dts_fields(changes: dict[str, Any], reason: str) -> None:
    assert malformed_reason(dts_message(**changes)).startswith(reason)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (PubsubMessage(b"{}", {}), "neither an rds2bqEvent nor an eventType attribute"),
        (PubsubMessage(b"{}", {"eventType": "TRANSFER_RUN_FINISHED"}), "unsupported payloadFormat"),
        (PubsubMessage(b"[1, 2]", DTS_ATTRS), "data is not a JSON object"),
        (PubsubMessage(b"\xff\xfe{}", DTS_ATTRS), "data is not UTF-8"),
        (PubsubMessage(b"[" * 100_000, DTS_ATTRS), "data is not JSON"),
        (PubsubMessage(b"", EVENT), "empty data"),
        (
            PubsubMessage(b"{}", {"rds2bqEvent": "COFFEE_BREAK"}),
            "unknown rds2bqEvent 'COFFEE_BREAK'",
        ),
        (
            PubsubMessage(b'{"at": "2026-11-27T15:00:00Z"}', EVENT),
            "missing 'runId'",
        ),
        (
            PubsubMessage(
                b'{"runId": "x", "at": "2026-11-27T15:00:00Z"}', {"rds2bqEvent": "RUN_CLOSED"}
            ),
            "'runId' is not YYYYMMDDHHMM",
        ),
        (
            PubsubMessage(
                b'{"runId": "202611271500", "at": "soon"}', {"rds2bqEvent": "RUN_CLOSED"}
            ),
            "'at' is not an RFC 3339 timestamp",
        ),
        (
            PubsubMessage(
                b'{"runId": "202611271500", "at": "2026-11-27T15:00:00Z", "data": []}',
                EVENT,
            ),
            "'data' is not an object",
        ),
        (PubsubMessage("text, not bytes", DTS_ATTRS), "data is not bytes"),  # type: ignore[arg-type]
        (PubsubMessage(b"{}", ["eventType"]), "attributes are not a map"),  # type: ignore[arg-type]
    ],
)
def test_malformed_messages(message: PubsubMessage, reason: str) -> None:
    assert malformed_reason(message).startswith(reason)


def test_reason_never_quotes_the_data() -> None:
    message = PubsubMessage(b'{"secret": "CANARY-in-data"', DTS_ATTRS, "m-3")

    with pytest.raises(MalformedMessageError) as caught:
        parse_message(message)

    assert CANARY not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"message": "x"},
        {"message": {"data": "not base64!!"}},
        {"message": {"data": 5}},
        {"message": {"data": "e30=", "attributes": {"a": 1}}},
        {"message": {"data": "e30=", "publishTime": "later"}},
    ],
)
def test_bad_push_bodies(body: object) -> None:
    with pytest.raises(MalformedMessageError):
        message_from_push(body)


def test_push_body_fields() -> None:
    message = load("dts_run_succeeded.json")

    assert message.message_id == "11000000000001"
    assert message.publish_time == datetime(2026, 11, 27, 15, 14, 42, 1000, tzinfo=UTC)
    assert message.attributes == DTS_ATTRS


def test_random_garbage_only_ever_raises_malformed() -> None:
    # GIVEN mutations of a valid notification and of our event, and random bytes
    rng = random.Random(20261127)
    seeds = [load("dts_run_failed.json"), load("rds2bq_event_table_failed.json")]
    for _ in range(600):
        seed = rng.choice(seeds)
        data = bytearray(seed.data)
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            position = rng.randrange(len(data))
            if op < 0.4:
                data[position] = rng.randrange(256)
            elif op < 0.7:
                del data[position : position + rng.randint(1, 40)]
            else:
                data[position:position] = rng.choice([b"null", b"[", b'"', b"{}", b"1e999"])
        if rng.random() < 0.1:
            data = bytearray(rng.randbytes(rng.randint(0, 200)))
        # WHEN parsed THEN it is a result or our error, nothing else
        try:
            result = parse_message(PubsubMessage(bytes(data), seed.attributes, "fuzz"))
        except MalformedMessageError:
            continue
        assert isinstance(result, TransferRunFinished | Event)
        if isinstance(result, TransferRunFinished):
            # (a mutated error text no longer matches the echoed key, so it is not checked here)
            assert CANARY not in repr(dataclasses.replace(result, error_message=""))


def test_the_client_librarys_own_json_of_a_transfer_run_parses() -> None:
    # GIVEN a TransferRun serialised by the DTS client library itself (the JSON_API_V1 shape)
    from google.cloud.bigquery_datatransfer_v1 import types
    from google.protobuf import struct_pb2, timestamp_pb2
    from google.rpc import status_pb2

    params = struct_pb2.Struct()
    params.update({"data_path": "s3://b/p/*.parquet", "access_key_id": "AKIACANARY0000000001"})
    at = int(datetime(2026, 11, 27, 15, 0, tzinfo=UTC).timestamp())
    run = types.TransferRun(
        name=CONFIG + "/runs/abc",
        run_time=timestamp_pb2.Timestamp(seconds=at),
        start_time=timestamp_pb2.Timestamp(seconds=at + 60, nanos=5),
        state=types.TransferState.FAILED,
        error_status=status_pb2.Status(code=3, message="No files found"),
        params=params,
        destination_dataset_id="rds_shop",
        data_source_id="amazon_s3",
    )
    data = types.TransferRun.to_json(run, use_integers_for_enums=False, indent=None).encode()

    # WHEN parsed
    note = parse_message(PubsubMessage(data, DTS_ATTRS, "lib"))

    # THEN the same facts come out, and the key does not
    assert isinstance(note, TransferRunFinished)
    assert note.run_time == datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
    assert note.start_time == datetime(2026, 11, 27, 15, 1, tzinfo=UTC)
    assert (note.state, note.error_code, note.error_message) == (
        DtsRunState.FAILED,
        3,
        "No files found",
    )
    assert note.data_path == "s3://b/p/*.parquet"
    assert CANARY not in repr(note)

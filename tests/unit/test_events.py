"""core/events.py: one typed event per kind, their own JSON both ways, and the outbox that keeps it
(also the entries the previous version stored)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.adapters.pubsub import encode_message
from orchestrator.app import outbox
from orchestrator.core import events
from orchestrator.core.errors import BadRequestError, MalformedMessageError
from orchestrator.core.events import (
    Event,
    ExportFailed,
    ExportLate,
    ExportStarted,
    HandoffDone,
    RunClosed,
    SkippedTable,
    TableFailed,
    TablesFinished,
    TablesSkipped,
)
from orchestrator.core.model import EventKind, RunState, TableState
from orchestrator.core.notifications import PubsubMessage, parse_message
from tests.unit.test_service import SLOT, TASK, World

AT = datetime(2026, 11, 27, 15, 14, 43, 250000, tzinfo=UTC)
RUN = "202611271500"
DTS_RUN = "projects/p/locations/asia-northeast1/transferConfigs/c/runs/r"

ONE_OF_EACH: list[Event] = [
    ExportStarted(RUN, AT, "rds2bq-prod-20261127150000", "arn:aws:rds:x:1:cluster:c", AT, 3),
    ExportFailed(RUN, AT, "rds2bq-prod-20261127150000", "CANCELED", "Canceled by operator", 40),
    ExportLate(RUN, AT, "rds2bq-prod-20261127150000", 40, 361, 360),
    TablesSkipped(RUN, AT, (SkippedTable("shop.bad", "slash in name"),), "some warning"),
    HandoffDone(RUN, AT, started=2, failed_to_start=1, skipped=1),
    TableFailed(RUN, AT, "shop.orders", TableState.CANCELLED, 1, "cancelled <&>", DTS_RUN, AT, AT),
    TablesFinished(RUN, AT),
    RunClosed(
        "20261127150501",
        AT,
        RunState.PARTIAL,
        tables=3,
        loaded=1,
        failed=1,
        skipped=1,
        export_started_at=AT - timedelta(hours=1),
        last_load_at=AT,
        snapshot_time=None,
        failure_cause="",
    ),
]


def test_there_is_one_event_class_per_kind() -> None:
    assert set(events.EVENT_TYPES) == set(EventKind)
    assert [e.kind for e in ONE_OF_EACH] == list(EventKind)


@pytest.mark.parametrize("event", ONE_OF_EACH, ids=lambda e: e.kind.value)
def test_every_kind_round_trips_through_its_json_and_through_pubsub(event: Event) -> None:
    text = events.to_json(event)

    assert events.from_json(text) == event
    assert json.loads(text)["kind"] == event.kind.value
    assert parse_message(PubsubMessage(*encode_message(event))) == event


def test_the_wire_keeps_the_shape_published_so_far() -> None:
    # GIVEN a TABLE_FAILED as the previous version published it (tests/events/), re-encoded
    event = ONE_OF_EACH[5]
    data, attributes = encode_message(event)
    body = json.loads(data)

    # THEN the same attributes, the same top-level keys (plus kind) and the same field names
    assert attributes == {"rds2bqEvent": "TABLE_FAILED", "runId": RUN}
    assert set(body) == {"kind", "runId", "at", "data"}
    assert body["data"] == {
        "table": "shop.orders",
        "state": "CANCELLED",
        "error_code": 1,
        "error_message": "cancelled <&>",
        "dts_run": DTS_RUN,
        "started_at": "2026-11-27T15:14:43.250000Z",
        "finished_at": "2026-11-27T15:14:43.250000Z",
    }


def test_a_message_without_kind_in_its_data_takes_the_attribute() -> None:
    text = json.dumps({"runId": RUN, "at": "2026-11-27T15:14:43.25Z", "data": {"started": 2}})

    assert events.from_json(text, kind="HANDOFF_DONE") == HandoffDone(RUN, AT, started=2)


def body(kind: object = None, data: object = None, **top: object) -> dict[str, object]:
    """An event's JSON with the given kind (None: left out) and data (None: left out)."""
    value: dict[str, object] = {"runId": RUN, "at": "2026-11-27T15:00:00Z", **top}
    if kind is not None:
        value["kind"] = kind
    if data is not None:
        value["data"] = data
    return value


@pytest.mark.parametrize(
    ("body", "kind", "reason"),
    [
        (body(), None, "no event kind"),
        (body("RUN_CLOSED"), "HANDOFF_DONE", "'kind' 'RUN_CLOSED' differs from the attribute"),
        (body("NAP"), None, "unknown event kind 'NAP'"),
        (body(7), None, "'kind' is not text"),
        (body("RUN_CLOSED"), None, "RUN_CLOSED without 'state'"),
        (body("RUN_CLOSED", {"state": "X"}), None, "'state' 'X' is not a RunState"),
        (body("HANDOFF_DONE", {"started": "2"}), None, "'started' is not an integer"),
        (body("HANDOFF_DONE", {"started": True}), None, "'started' is not an integer"),
        (body("EXPORT_STARTED", {"snapshot_time": 5}), None, "'snapshot_time' is not a timestamp"),
        (body("EXPORT_LATE", {"percent": 1.5}), None, "'percent' is not an integer"),
        (body("TABLES_SKIPPED", {"tables": ["a"]}), None, "'tables' holds something other"),
        (body("TABLES_SKIPPED", {"tables": {}}), None, "'tables' is not a list"),
        (body("TABLE_FAILED", {"table": None}), None, "'table' is not text"),
        (body("TABLE_FAILED", {"table": "t", "state": "DONE"}), None, "is not a TableState"),
        (body("RUN_CLOSED", runId="2026"), None, "'runId' is not YYYYMMDDHHMM"),
        (body("RUN_CLOSED", at=None), None, "missing 'at'"),
        (body("RUN_CLOSED", at="9999-01-01T00:00:00Z"), None, "'at' is out of range"),
        (body("RUN_CLOSED", data=[]), None, "'data' is not an object"),
        ([1, 2], None, "data is not a JSON object"),
    ],
)
def test_from_json_refuses_what_it_cannot_trust(
    body: object, kind: str | None, reason: str
) -> None:
    with pytest.raises(MalformedMessageError) as caught:
        events.from_json(json.dumps(body), kind=kind)

    assert reason in caught.value.reason
    assert isinstance(caught.value, BadRequestError)  # logged and acknowledged, never retried


times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(8999, 12, 31), timezones=st.just(UTC)
)
texts = st.text(max_size=40)
counts = st.integers(min_value=0, max_value=2**63 - 1)
run_ids = st.sampled_from([RUN, "20261127150501"])
any_event = st.one_of(
    st.builds(ExportStarted, run_ids, times, texts, texts, st.none() | times, counts),
    st.builds(ExportFailed, run_ids, times, texts, texts, texts, counts),
    st.builds(ExportLate, run_ids, times, texts, counts, counts, counts),
    st.builds(
        TablesSkipped,
        run_ids,
        times,
        st.lists(st.builds(SkippedTable, texts, texts), max_size=3).map(tuple),
        texts,
    ),
    st.builds(HandoffDone, run_ids, times, counts, counts, counts),
    st.builds(
        TableFailed,
        run_ids,
        times,
        texts,
        st.sampled_from(TableState),
        counts,
        texts,
        texts,
        st.none() | times,
        st.none() | times,
    ),
    st.builds(TablesFinished, run_ids, times),
    st.builds(
        RunClosed,
        run_ids,
        times,
        st.sampled_from(RunState),
        counts,
        counts,
        counts,
        counts,
        st.none() | times,
        st.none() | times,
        st.none() | times,
        texts,
    ),
)


@given(any_event)
def test_any_event_round_trips_through_its_json(event: Event) -> None:
    assert events.from_json(events.to_json(event)) == event


def test_from_json_refuses_text_that_is_not_json_without_quoting_it() -> None:
    with pytest.raises(MalformedMessageError) as caught:
        events.from_json('{"kind": "CANARY-secret"')

    assert "CANARY" not in str(caught.value)


def test_to_json_refuses_what_from_json_would_refuse() -> None:
    with pytest.raises(ValueError, match="run id"):
        events.to_json(HandoffDone("yesterday", AT))
    with pytest.raises(ValueError, match="naive"):
        events.to_json(HandoffDone(RUN, datetime(2026, 11, 27)))


# --------------------------------------------------------------------------- the outbox


def test_the_outbox_stores_the_events_own_json() -> None:
    event = ONE_OF_EACH[1]

    assert outbox.entry(event) == events.to_json(event)
    assert outbox.decode([outbox.entry(e) for e in ONE_OF_EACH]) == ONE_OF_EACH


def previous_version_entry(event: Event) -> str:
    """An outbox entry as the previous version stored it: the encoded Pub/Sub message, whose
    data had no ``kind``."""
    body = json.loads(events.to_json(event))
    del body["kind"]
    data = json.dumps(body, separators=(",", ":"))
    attributes = {"rds2bqEvent": event.kind.value, "runId": event.run_id}
    return json.dumps({"data": data, "attributes": attributes}, sort_keys=True)


def test_entries_of_the_previous_version_are_still_read() -> None:
    assert outbox.decode([previous_version_entry(e) for e in ONE_OF_EACH]) == ONE_OF_EACH


def test_an_unreadable_entry_is_logged_and_left_out(caplog: pytest.LogCaptureFixture) -> None:
    good = ONE_OF_EACH[4]
    entries = ["{not json", json.dumps({"data": 3, "attributes": {}}), outbox.entry(good)]

    assert outbox.decode(entries) == [good]
    assert len([r for r in caplog.records if "cannot be read" in r.getMessage()]) == 2


def test_a_run_holding_a_previous_version_entry_publishes_it_after_the_upgrade() -> None:
    # GIVEN a run closed by the previous version whose EXPORT_FAILED was not yet published
    w = World(["shop.orders"])
    w.service.start_export(SLOT)
    w.events.events.clear()
    pending = ExportFailed(RUN, SLOT, TASK, "FAILED", "bucket gone", 10)
    stored = w.ledger.runs[RUN]
    w.ledger.runs[RUN] = stored.with_(
        state=RunState.FAILED, closed_at=SLOT, outbox=(previous_version_entry(pending),)
    )

    # WHEN this version polls
    report = w.service.poll()

    # THEN the event goes out as it was, and the run is no longer listed
    assert [r["action"] for r in report.runs] == ["events-published"]
    assert w.events.events == [pending]
    assert w.ledger.runs[RUN].outbox == ()
    assert w.service.poll().runs == []

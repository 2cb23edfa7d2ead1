"""notify over in-memory fakes: ledger updates, one post per failure, one summary, no secret."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import pytest

from orchestrator.app.notify import NotifyService
from orchestrator.core.errors import PermanentError, TransientError
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
from orchestrator.core.notifications import PubsubMessage
from orchestrator.present.slack import SlackMessages
from orchestrator.present.slack_blocks import validate_payload
from tests.fakes import LoopedNotify, RecordingEventBus, RecordingNotifier, event_message
from tests.unit.test_service import SLOT, World, names

CANARY_KEY = "AKIACANARY9999999999"
CANARY_SECRET = "CANARYsecretNEVERshow1234567890abcdef"


def dts_message(
    config: str,
    run_name: str,
    state: str,
    error: str = "",
    message_id: str = "m1",
    run_time: datetime = SLOT,
    published: datetime | None = None,
    ended: bool = True,
) -> PubsubMessage:
    data: dict[str, Any] = {
        "name": run_name,
        "runTime": run_time.isoformat().replace("+00:00", "Z"),
        "scheduleTime": run_time.isoformat().replace("+00:00", "Z"),
        "startTime": (run_time + timedelta(minutes=10)).isoformat().replace("+00:00", "Z"),
        "endTime": (run_time + timedelta(minutes=14)).isoformat().replace("+00:00", "Z"),
        "state": state,
        "destinationDatasetId": "rds_shop",
        "dataSourceId": "amazon_s3",
        "params": {
            "data_path": "s3://b/p/*.parquet",
            "access_key_id": CANARY_KEY,
            "secret_access_key": CANARY_SECRET,
            "destination_table_name_template": "shop__t",
        },
    }
    if error:
        data["errorStatus"] = {"code": 9, "message": error}
    if not ended:
        del data["endTime"]  # DTS leaves it out of some failures
    return PubsubMessage(
        json.dumps(data).encode(),
        {"eventType": "TRANSFER_RUN_FINISHED", "payloadFormat": "JSON_API_V1"},
        message_id,
        published,
    )


class Notify:
    """A handed-off run of ``n`` tables and a notify service beside it."""

    def __init__(self, n: int) -> None:
        self.world = w = World(names(n))
        w.service.start_export(SLOT)
        w.complete(names(n))
        w.service.poll()
        w.clock.advance(minutes=5)
        w.service.poll()
        self.slack = RecordingNotifier()
        self.published = RecordingEventBus()
        self.service = self.notify(LoopedNotify)
        self.tables = {t.key: t for t in w.ledger.tables("202611271500")}

    def notify(self, kind: type[NotifyService] = NotifyService) -> NotifyService:
        """A notify over this world (by default without Pub/Sub delivering back what it
        announces)."""
        w = self.world
        return kind(
            w.settings,
            w.ledger,
            self.slack,
            self.published,
            w.clock,
            SlackMessages(w.settings),
            lambda: w.transfers,
        )

    def finish(
        self, key: str, state: str, error: str = "", mid: str = "", *, ended: bool = True
    ) -> Any:
        table = self.tables[key]
        message_id = mid or f"m-{key}-{state}"
        return self.service.handle(
            dts_message(table.dts_config, table.dts_run, state, error, message_id, ended=ended)
        )

    def deliver_published(self) -> None:
        """What Pub/Sub would do with the events notify itself published."""
        for i, event in enumerate(self.published.events):
            self.service.handle(event_message(event, f"published-{i}"))
        self.published.events.clear()


def test_success_is_recorded_without_a_post() -> None:
    n = Notify(2)
    outcome = n.finish("shop.t0000", "SUCCEEDED")
    assert outcome.action == "recorded"
    assert n.world.ledger.table_docs["202611271500"]["shop.t0000"].state is TableState.SUCCEEDED
    assert n.slack.payloads == []


def test_a_failure_is_posted_at_once_with_dts_reason_and_never_twice() -> None:
    n = Notify(2)
    n.finish("shop.t0001", "FAILED", "Access Denied listing s3://b/p/", mid="a")
    n.finish("shop.t0001", "FAILED", "Access Denied listing s3://b/p/", mid="a")  # redelivered
    n.finish("shop.t0001", "FAILED", "Access Denied listing s3://b/p/", mid="b")  # re-published
    assert len(n.slack.payloads) == 1
    assert "Access Denied" in json.dumps(n.slack.payloads[0])
    table = n.world.ledger.table_docs["202611271500"]["shop.t0001"]
    assert (table.state, table.error_code) == (TableState.FAILED, 9)


def test_fifty_tables_three_failures_give_three_posts_and_one_summary() -> None:
    n = Notify(50)
    failing = {"shop.t0007", "shop.t0021", "shop.t0042"}
    messages = []
    for key in sorted(n.tables):
        state = "FAILED" if key in failing else "SUCCEEDED"
        table = n.tables[key]
        messages.append(
            dts_message(
                table.dts_config,
                table.dts_run,
                state,
                "boom" if state == "FAILED" else "",
                f"m-{key}",
            )
        )
    for message in messages:
        n.service.handle(message)
    assert [e.kind for e in n.published.events] == [EventKind.RUN_CLOSED]
    n.deliver_published()
    assert len(n.slack.payloads) == 4
    summary = json.dumps(n.slack.payloads[-1])
    assert "47" in summary and "3" in summary
    assert n.world.ledger.runs["202611271500"].state is RunState.PARTIAL
    # replaying every message posts nothing new
    for message in messages:
        n.service.handle(message)
    n.deliver_published()
    assert len(n.slack.payloads) == 4


def test_unknown_run_is_reported_once_and_does_not_crash() -> None:
    n = Notify(1)
    stray = dts_message(
        "projects/p/locations/l/transferConfigs/manual",
        "projects/p/locations/l/transferConfigs/manual/runs/x",
        "SUCCEEDED",
        run_time=SLOT - timedelta(days=3),
    )
    assert n.service.handle(stray).action == "unknown-run"
    assert n.service.handle(stray).action == "duplicate"
    assert len(n.slack.payloads) == 1
    assert "did not start" in n.slack.payloads[0]["text"]


@pytest.mark.parametrize("data", [b"", b"not json", b'{"name": 1}', b"{" * 5_000_000])
def test_malformed_messages_are_dropped_with_one_log_line(
    data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notify(1)
    caplog.set_level(logging.WARNING)
    message = PubsubMessage(data, {"eventType": "TRANSFER_RUN_FINISHED"}, "bad")
    assert n.service.handle(message).action == "dropped-malformed"
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 1
    assert n.slack.payloads == []


def test_old_messages_are_dropped() -> None:
    n = Notify(1)
    table = n.tables["shop.t0000"]
    old = dts_message(
        table.dts_config,
        table.dts_run,
        "FAILED",
        "x",
        published=n.world.clock.now() - timedelta(hours=25),
    )
    assert n.service.handle(old).action == "dropped-old"
    assert n.slack.payloads == []


class FlakySlack:
    def __init__(self, error: Exception, times: int) -> None:
        self.error, self.times, self.payloads = error, times, []

    def post(self, payload: Any) -> None:
        if self.times > 0:
            self.times -= 1
            raise self.error
        self.payloads.append(payload)


def test_transient_slack_fault_raises_so_the_platform_retries_and_then_posts_once() -> None:
    n = Notify(1)
    n.service.notifier = FlakySlack(TransientError("Slack 503"), times=1)
    event = ExportLate("202611271500", SLOT, deadline_minutes=60)
    with pytest.raises(TransientError):
        n.service.handle(event_message(event))
    assert n.service.handle(event_message(event)).action == "posted"
    assert len(n.service.notifier.payloads) == 1


def test_permanent_slack_refusal_is_logged_and_acknowledged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    n = Notify(1)
    n.service.notifier = FlakySlack(PermanentError("Slack said 400 invalid_payload"), times=5)
    event = ExportLate("202611271500", SLOT)
    assert n.service.handle(event_message(event)).action == "posted"
    assert any("invalid_payload" in r.getMessage() for r in caplog.records)


def test_every_posted_event_kind_renders_its_own_valid_message() -> None:
    n = Notify(2)
    posted = set(EventKind) - {EventKind.TABLES_FINISHED}  # closes the run: never posted
    every_kind: list[Event] = [
        ExportStarted("202611271500", SLOT),
        ExportFailed("202611271500", SLOT, status="FAILED", failure_cause="cause"),
        ExportLate("202611271500", SLOT, deadline_minutes=60),
        TablesSkipped("202611271500", SLOT, tables=(SkippedTable("shop.t0001", "skipped"),)),
        HandoffDone("202611271500", SLOT),
        TableFailed("202611271500", SLOT, table="shop.t0000"),
        RunClosed("202611271500", SLOT, state=RunState.PARTIAL),
    ]
    assert {e.kind for e in every_kind} == posted
    for i, event in enumerate(every_kind):
        n.service.handle(event_message(event, f"k{i}"))
    assert len(n.slack.payloads) == len(posted)
    assert all(validate_payload(p) == [] for p in n.slack.payloads)
    # one distinct message per kind: none falls through to another kind's rendering
    assert len({p["text"] for p in n.slack.payloads}) == len(posted)


def test_canary_secrets_never_reach_a_log_a_ledger_document_or_slack(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    n = Notify(3)
    for key in sorted(n.tables):
        n.finish(key, "FAILED", f"denied for access key {CANARY_KEY}")
    n.deliver_published()
    stray = dts_message(
        "projects/p/locations/l/transferConfigs/x",
        "projects/p/locations/l/transferConfigs/x/runs/y",
        "FAILED",
        f"bad key {CANARY_KEY}",
        run_time=SLOT - timedelta(days=1),
    )
    n.service.handle(stray)
    assert len(n.slack.payloads) == 3 + 1 + 1
    ledger = n.world.ledger
    documents = json.dumps(
        [asdict(r) for r in ledger.runs.values()]
        + [asdict(t) for d in ledger.table_docs.values() for t in d.values()],
        default=str,
    )
    everything = "\n".join(
        [documents, json.dumps(n.slack.payloads), *(r.getMessage() for r in caplog.records)]
    )
    assert CANARY_KEY not in everything and CANARY_SECRET not in everything
    assert n.world.ledger.runs["202611271500"].state is RunState.FAILED


def test_a_failure_whose_post_failed_transiently_is_posted_on_redelivery() -> None:
    # GIVEN Slack answering 503 to the first post of a table failure
    n = Notify(2)
    n.service.notifier = FlakySlack(TransientError("Slack 503"), times=1)
    # WHEN the DTS message is recorded, its TABLE_FAILED fails to post and is redelivered by the
    # platform, and the DTS message itself comes twice more
    with pytest.raises(TransientError):
        n.finish("shop.t0001", "FAILED", "boom", mid="x")
    assert n.world.ledger.table_docs["202611271500"]["shop.t0001"].state is TableState.FAILED
    assert len(n.service.undelivered) == 1
    n.finish("shop.t0001", "FAILED", "boom", mid="x")
    n.finish("shop.t0001", "FAILED", "boom", mid="y")
    # THEN the failure is posted exactly once: nothing lost, nothing duplicated
    assert len(n.service.notifier.payloads) == 1
    assert not n.service.undelivered


class TimesOutOnce(RecordingEventBus):
    """Publishes, then answers the first call as a timed-out one would: the events went out, and
    the caller cannot know it."""

    timed_out = False

    def publish(self, events: Sequence[Event]) -> None:
        super().publish(events)
        if not self.timed_out:
            self.timed_out = True
            raise TransientError("Pub/Sub publish timed out")


def test_a_failure_announced_again_after_a_fault_is_posted_once() -> None:
    # GIVEN a failure whose announcement went out but whose publish call timed out
    n = Notify(2)
    n.service.events = TimesOutOnce()
    key = "shop.t0001"
    with pytest.raises(TransientError):
        n.finish(key, "FAILED", "boom", mid="a")
    assert len(n.slack.payloads) == 1  # the announcement that did go out is posted
    # WHEN the platform redelivers the message minutes later: it finds the table recorded and
    # announces the failure again
    n.world.clock.advance(minutes=7)
    n.finish(key, "FAILED", "boom", mid="a")
    # THEN both announcements carry the same content (the time is DTS's end of the run, not the
    # delivery's), and the failure is still posted once
    assert len(n.slack.payloads) == 1


def test_a_failure_without_an_end_time_announced_again_after_a_fault_is_posted_once() -> None:
    # GIVEN a failure DTS notified without an end time, whose announcement went out but whose
    # publish call timed out
    n = Notify(2)
    n.service.events = TimesOutOnce()
    key = "shop.t0001"
    with pytest.raises(TransientError):
        n.finish(key, "FAILED", "boom", mid="a", ended=False)
    assert len(n.slack.payloads) == 1
    # WHEN the platform redelivers the message minutes later
    n.world.clock.advance(minutes=7)
    n.finish(key, "FAILED", "boom", mid="a", ended=False)
    # THEN the table keeps the moment the failure was first recorded as its end, the second
    # announcement carries it too, and the failure is still posted once
    first_seen = n.world.clock.now() - timedelta(minutes=7)
    assert n.world.ledger.table_docs["202611271500"][key].finished_at == first_seen
    assert len(n.slack.payloads) == 1


def test_the_last_table_announces_tables_finished_and_that_message_closes_the_run() -> None:
    n = Notify(2)
    raw = n.notify()
    table = n.tables["shop.t0000"]
    raw.handle(dts_message(table.dts_config, table.dts_run, "SUCCEEDED", "", "m0"))
    assert n.published.events == []  # a table is still in flight
    last = n.tables["shop.t0001"]
    raw.handle(dts_message(last.dts_config, last.dts_run, "SUCCEEDED", "", "m1"))
    (finished,) = n.published.events
    assert finished.kind is EventKind.TABLES_FINISHED
    assert n.world.ledger.runs["202611271500"].state is RunState.TRANSFERRING
    n.published.events.clear()
    # its message closes the run (twice delivered, closed once), and posts nothing itself
    assert raw.handle(event_message(finished, "f1")).action == "closed"
    assert raw.handle(event_message(finished, "f1")).action == "recorded"
    assert n.world.ledger.runs["202611271500"].state is RunState.SUCCEEDED
    assert [e.kind for e in n.published.events] == [EventKind.RUN_CLOSED]
    assert n.slack.payloads == []


def test_a_run_whose_tables_finished_was_never_handled_is_closed_by_the_reconcile() -> None:
    # GIVEN every table recorded, and the TABLES_FINISHED that followed lost (never delivered)
    n = Notify(2)
    raw = n.notify()
    for table in n.tables.values():
        raw.handle(dts_message(table.dts_config, table.dts_run, "SUCCEEDED", "", table.key))
    assert n.world.ledger.runs["202611271500"].state is RunState.TRANSFERRING
    # WHEN the poll's reconcile comes due
    n.world.service.events = n.published
    n.world.clock.advance(minutes=n.world.settings.reconcile_after_minutes)
    n.world.service.poll()
    # THEN it closes the run, and RUN_CLOSED goes out
    assert n.world.ledger.runs["202611271500"].state is RunState.SUCCEEDED
    assert EventKind.RUN_CLOSED in [e.kind for e in n.published.events]


def test_tables_finished_for_a_run_with_a_table_in_flight_closes_nothing() -> None:
    n = Notify(2)
    early = TablesFinished("202611271500", SLOT)
    assert n.service.handle(event_message(early)).action == "recorded"
    assert n.world.ledger.runs["202611271500"].state is RunState.TRANSFERRING
    assert n.published.events == []


def test_tables_finished_for_an_unknown_run_is_logged_and_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    n = Notify(1)
    outcome = n.service.handle(event_message(TablesFinished("202601010000", SLOT)))
    assert outcome.action == "unknown-run"
    assert any("202601010000" in r.getMessage() for r in caplog.records)


def test_the_poll_settles_runs_whose_notification_was_lost_and_a_late_one_posts_nothing() -> None:
    from orchestrator.app.ports import RunOutcome

    # GIVEN three transfer runs whose notifications never came, an hour after the hand-off
    n = Notify(3)
    w = n.world
    w.service.events = n.published
    t0, t1, t2 = (n.tables[k] for k in sorted(n.tables))
    w.transfers.outcomes[t0.dts_run] = RunOutcome("SUCCEEDED")
    w.transfers.outcomes[t1.dts_run] = RunOutcome("FAILED", 9, "Access Denied")
    w.clock.advance(minutes=59)
    assert [r["action"] for r in w.service.poll().runs] == ["waiting"]  # not yet: no DTS call
    w.clock.advance(minutes=2)
    # WHEN the poll looks them up
    report = w.service.poll()
    assert report.runs[0]["action"] == "reconciled" and report.runs[0]["settled"] == 2
    docs = w.ledger.table_docs["202611271500"]
    assert docs[t0.key].state is TableState.SUCCEEDED and docs[t1.key].state is TableState.FAILED
    assert docs[t2.key].state is TableState.STARTED  # still running in DTS
    # THEN the failure is posted once, and its late notification posts nothing more
    n.deliver_published()
    assert len(n.slack.payloads) == 1 and "Access Denied" in json.dumps(n.slack.payloads)
    n.finish(t1.key, "FAILED", "Access Denied")
    assert len(n.slack.payloads) == 1
    # AND the run closes once the last one is found finished, with one summary
    w.transfers.outcomes[t2.dts_run] = RunOutcome("SUCCEEDED")
    w.clock.advance(minutes=30)
    assert w.service.poll().runs[0]["action"] == "waiting"  # looked up at most once an hour
    w.clock.advance(minutes=31)
    w.service.poll()
    assert w.ledger.runs["202611271500"].state is RunState.PARTIAL
    n.deliver_published()
    assert len(n.slack.payloads) == 2 and "PARTIAL" in n.slack.payloads[-1]["text"]


def test_a_run_closing_logs_one_run_closed_line_with_its_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The dead-man's switch counts these lines (scheduler.tf); the filter is held against this
    # text in tests/infra/test_monitoring.py.
    n = Notify(2)
    with caplog.at_level(logging.INFO, logger="orchestrator.app.outbox"):
        n.finish("shop.t0000", "SUCCEEDED")
        assert not [r for r in caplog.records if r.getMessage().startswith("run closed")]
        n.finish("shop.t0001", "FAILED", "boom")
        n.finish("shop.t0001", "FAILED", "boom", mid="again")  # a re-published duplicate
    closed = [r for r in caplog.records if r.getMessage().startswith("run closed")]
    assert [r.getMessage() for r in closed] == ["run closed: 202611271500 PARTIAL"]
    assert getattr(closed[0], "run_id", None) == "202611271500"

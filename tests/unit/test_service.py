"""The service over in-memory fakes of its ports: start, poll, hand-off, exactly once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.app.daily import Orchestrator
from orchestrator.app.preflight import Preflight
from orchestrator.app.transfers import TransferRuns
from orchestrator.config import load_settings
from orchestrator.core import machine
from orchestrator.core.errors import (
    BadRequestError,
    ExportQuotaError,
    SourceNotFoundError,
    TransientError,
)
from orchestrator.core.events import HandoffDone
from orchestrator.core.model import (
    EventKind,
    ExportStatus,
    RunState,
    TableExportStatus,
    TableState,
)
from orchestrator.core.retry import Backoff
from tests.fakes import (
    FakeExporter,
    FakeTransfers,
    FixedClock,
    InMemoryLedger,
    InMemoryTables,
    RecordingEventBus,
)
from tests.unit.test_config import VALID

SLOT = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # 00:00 Asia/Tokyo on the 28th
TASK = "rds2bq-prod-20261127150000"


class World:
    """The service over fakes; with ``bq`` (the destination tables) it also runs its preflight
    and compares each load's rows, as the wiring builds it."""

    def __init__(self, tables: list[str], bq: InMemoryTables | None = None, **env: str) -> None:
        self.settings = load_settings({**VALID, **env}, read_text=lambda _: "\n".join(tables))
        self.ledger = InMemoryLedger()
        self.exporter = FakeExporter()
        self.transfers = FakeTransfers.for_tables(tables)
        self.events = RecordingEventBus()
        self.clock = FixedClock(SLOT + timedelta(seconds=20))
        self.exporter_built = 0
        self.runs = TransferRuns(
            self.ledger,
            lambda: self.transfers,
            backoff=Backoff(attempts=3, base_seconds=0.0),
            sleep=lambda _: None,
            destinations=None if bq is None else (lambda: bq),
        )
        self.service = Orchestrator(
            self.settings,
            self.ledger,
            self._exporter,
            lambda: self.transfers,
            self.events,
            self.clock,
            lambda: self.runs,
            preflight=None if bq is None else Preflight(self._exporter, lambda: bq, self.ledger),
        )

    def _exporter(self) -> FakeExporter:
        self.exporter_built += 1
        return self.exporter

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events.events]

    def complete(
        self, exported: list[str], skipped: dict[str, str] | None = None, task: str = TASK
    ) -> None:
        self.exporter.tables_info[task] = [
            TableExportStatus(f"shop.shop.{k.split('.')[1]}", "COMPLETE") for k in exported
        ] + [
            TableExportStatus(f"shop.shop.{k.split('.')[1]}", "SKIPPED", reason=r)
            for k, r in (skipped or {}).items()
        ]
        self.exporter.set_status(
            task, ExportStatus.COMPLETE, percent=100, task_end_time=self.clock.now()
        )


def names(n: int) -> list[str]:
    return [f"shop.t{i:04d}" for i in range(n)]


# --------------------------------------------------------------------------- start_export


def test_start_creates_the_run_and_starts_one_export_with_the_configured_tables() -> None:
    w = World(["shop.orders", "shop.customers"])
    run = w.service.start_export(SLOT)
    assert run.run_id == "202611271500" and run.export_task_id == TASK
    assert run.state is RunState.EXPORTING
    assert w.exporter.export_only[TASK] == ["shop.orders", "shop.customers"]
    assert w.kinds() == [EventKind.EXPORT_STARTED]


def test_a_repeated_start_for_the_same_slot_starts_nothing_new() -> None:
    w = World(["shop.orders"])
    w.service.start_export(SLOT)
    again = w.service.start_export(SLOT + timedelta(seconds=59))  # same minute
    assert again.run_id == "202611271500"
    assert w.exporter.start_calls == 1 and len(w.ledger.runs) == 1
    assert w.kinds() == [EventKind.EXPORT_STARTED]


def test_ten_concurrent_starts_give_one_run_and_one_export() -> None:
    w = World(["shop.orders"])
    with ThreadPoolExecutor(10) as pool:
        runs = list(pool.map(lambda _: w.service.start_export(SLOT), range(10)))
    assert {r.run_id for r in runs} == {"202611271500"}
    assert list(w.exporter.tasks) == [TASK] and len(w.ledger.runs) == 1
    assert w.kinds() == [EventKind.EXPORT_STARTED]


@pytest.mark.parametrize(
    ("slot", "reason"),
    [
        (SLOT + timedelta(hours=1), "in the future"),
        (SLOT - timedelta(hours=49), "older than RDS2BQ_MAX_SLOT_AGE_HOURS"),
    ],
)
def test_invalid_slots_are_refused(slot: datetime, reason: str) -> None:
    w = World(["shop.orders"])
    with pytest.raises(BadRequestError, match=reason):
        w.service.start_export(slot)
    assert w.ledger.runs == {}


def test_source_not_found_closes_the_run_and_says_why() -> None:
    w = World(["shop.orders"], RDS2BQ_SOURCE_ID="gone-cluster")
    with pytest.raises(SourceNotFoundError):
        w.service.start_export(SLOT)
    run = w.ledger.runs["202611271500"]
    assert run.state is RunState.FAILED and "gone-cluster" in run.failure_cause
    assert w.kinds() == [EventKind.EXPORT_FAILED]


def test_five_running_exports_leave_the_run_for_the_next_poll() -> None:
    w = World(["shop.orders"])
    w.exporter.other_running = 5
    with pytest.raises(ExportQuotaError, match="5 exports are already running"):
        w.service.start_export(SLOT)
    assert w.ledger.runs["202611271500"].state is RunState.EXPORT_STARTING
    w.exporter.other_running = 4
    w.service.poll()
    assert w.ledger.runs["202611271500"].state is RunState.EXPORTING
    assert w.exporter.start_calls == 1


# --------------------------------------------------------------------------- poll


def test_idle_poll_is_one_ledger_query_and_no_aws_call() -> None:
    w = World(["shop.orders"])
    report = w.service.poll()
    assert report.runs == [] and w.ledger.queries == 1
    assert w.exporter_built == 0 and w.exporter.calls == 0


def test_poll_follows_the_export_to_complete_and_records_skipped_tables() -> None:
    w = World(["shop.orders", "shop.customers", "shop.audit"])
    w.service.start_export(SLOT)
    w.service.poll()
    w.exporter.set_status(TASK, ExportStatus.IN_PROGRESS, percent=42, extracted_gb=3.5)
    w.service.poll()
    run = w.ledger.runs["202611271500"]
    assert (run.state, run.percent, run.extracted_gb) == (RunState.EXPORTING, 42, 3.5)
    w.complete(["shop.orders"], {"shop.customers": "a column name contains a space"})
    w.service.poll()
    run = w.ledger.runs["202611271500"]
    assert run.state is RunState.EXPORTED and run.export_completed_at == w.clock.now()
    tables = {t.key: t for t in w.ledger.tables(run.run_id)}
    assert tables["shop.orders"].state is TableState.PENDING
    assert tables["shop.customers"].reason == "a column name contains a space"
    assert tables["shop.audit"].state is TableState.SKIPPED_BY_EXPORT
    skipped = next(e for e in w.events.events if e.kind is EventKind.TABLES_SKIPPED)
    assert {t.table for t in skipped.tables} == {"shop.customers", "shop.audit"}
    assert w.transfers.started == {}  # the visibility margin has not passed


def test_failed_export_closes_the_run_with_aws_cause() -> None:
    w = World(["shop.orders"])
    w.service.start_export(SLOT)
    w.exporter.set_status(TASK, ExportStatus.FAILED, failure_cause="The S3 bucket is missing")
    w.service.poll()
    run = w.ledger.runs["202611271500"]
    assert run.state is RunState.FAILED and run.failure_cause == "The S3 bucket is missing"
    assert w.ledger.open_runs() == []


def test_late_export_flagged_once_across_polls() -> None:
    w = World(["shop.orders"], RDS2BQ_EXPORT_DEADLINE_MINUTES="60")
    w.service.start_export(SLOT)
    for _ in range(4):
        w.clock.advance(minutes=30)
        w.exporter.set_status(TASK, ExportStatus.IN_PROGRESS, percent=10)
        w.service.poll()
    assert w.kinds().count(EventKind.EXPORT_LATE) == 1


# --------------------------------------------------------------------------- hand-off


def exported_world(n: int, **env: str) -> World:
    w = World(names(n), **env)
    w.service.start_export(SLOT)
    w.complete(names(n))
    w.service.poll()
    w.clock.advance(minutes=5)
    return w


def test_handoff_starts_each_exported_table_once_with_the_run_time() -> None:
    w = World(["shop.orders", "shop.customers"])
    w.service.start_export(SLOT)
    w.complete(["shop.orders"], {"shop.customers": "unsupported"})
    w.service.poll()
    w.clock.advance(minutes=5)
    w.service.poll()
    assert list(w.transfers.started) == [(w.transfers.configs["shop.orders"].name, SLOT)]
    run = w.ledger.runs["202611271500"]
    assert run.state is RunState.TRANSFERRING and run.handed_off_at is not None
    assert run.handoff_owner == ""
    tables = {t.key: t for t in w.ledger.tables(run.run_id)}
    assert tables["shop.orders"].state is TableState.STARTED
    assert tables["shop.orders"].dts_run.endswith("/runs/r0")
    assert tables["shop.customers"].state is TableState.SKIPPED_BY_EXPORT
    done = next(e for e in w.events.events if e.kind is EventKind.HANDOFF_DONE)
    assert done == HandoffDone("202611271500", done.at, started=1, failed_to_start=0, skipped=1)
    w.service.poll()  # nothing more to do
    assert sum(w.transfers.starts_per_config().values()) == 1


def test_ten_concurrent_polls_start_each_table_exactly_once() -> None:
    w = exported_world(100)
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda _: w.service.poll(), range(10)))
    counts = w.transfers.starts_per_config()
    assert len(counts) == 100 and set(counts.values()) == {1}


def test_fault_after_37_starts_then_another_poll_starts_the_rest_once() -> None:
    w = exported_world(100)
    w.transfers.fail_after = 37
    w.service.poll()
    assert sum(w.transfers.starts_per_config().values()) == 37
    run = w.ledger.runs["202611271500"]
    assert run.handed_off_at is None and run.handoff_owner == ""  # released for the next poll
    w.transfers.fail_after = None
    w.service.poll()
    counts = w.transfers.starts_per_config()
    assert len(counts) == 100 and set(counts.values()) == {1}
    states = {t.state for t in w.ledger.tables("202611271500")}
    assert states == {TableState.STARTED}
    assert w.ledger.runs["202611271500"].handed_off_at is not None


def test_a_crashed_handoff_is_resumed_after_its_lease_and_adopts_what_it_started() -> None:
    w = exported_world(10)
    run_id = "202611271500"
    # GIVEN a poll that claimed the hand-off, marked every table STARTING, started 4 runs in DTS
    # and died before recording them
    claim = w.ledger.transition(
        run_id, lambda r: machine.claim_handoff(r, w.clock.now(), "dead", 600, 5)
    )
    assert claim.run is not None
    tables = w.ledger.tables(run_id)
    configs = w.transfers.configs
    w.ledger.put_tables(
        run_id, [t.with_(state=TableState.STARTING, dts_config=configs[t.key].name) for t in tables]
    )
    for t in tables[:4]:
        w.transfers.start_run(configs[t.key].name, SLOT)
    # WHEN polls come while the lease holds, then after it expired
    w.service.poll()
    assert sum(w.transfers.starts_per_config().values()) == 4
    w.clock.advance(seconds=601)
    w.service.poll()
    # THEN every table is started exactly once and the four are adopted
    counts = w.transfers.starts_per_config()
    assert len(counts) == 10 and set(counts.values()) == {1}
    assert {t.state for t in w.ledger.tables(run_id)} == {TableState.STARTED}


def test_transient_dts_errors_are_retried() -> None:
    w = exported_world(3)
    w.transfers.transient_failures = 2
    w.service.poll()
    assert set(w.transfers.starts_per_config().values()) == {1}
    assert len(w.transfers.starts_per_config()) == 3


def test_permanent_dts_error_and_missing_config_fail_only_their_table() -> None:
    w = exported_world(3)
    keys = names(3)
    w.transfers.permanent_for.add(w.transfers.configs[keys[0]].name)
    del w.transfers.configs[keys[1]]
    w.service.poll()
    tables = {t.key: t for t in w.ledger.tables("202611271500")}
    assert tables[keys[0]].state is TableState.FAILED
    assert "DTS refused the run" in tables[keys[0]].reason
    assert tables[keys[1]].state is TableState.FAILED
    assert "python -m orchestrator sync" in tables[keys[1]].reason
    assert tables[keys[2]].state is TableState.STARTED
    failed = [e.table for e in w.events.events if e.kind is EventKind.TABLE_FAILED]
    assert sorted(failed) == sorted(keys[:2])


class FlakyBus:
    """Pub/Sub that is down for the next ``down`` publishes."""

    def __init__(self, down: int) -> None:
        self.down = down
        self.events: list[object] = []

    def publish(self, events: list[object]) -> None:
        if self.down > 0:
            self.down -= 1
            raise TransientError("Pub/Sub unavailable")
        self.events.extend(events)


def test_an_event_whose_publish_failed_is_published_by_the_next_poll() -> None:
    # GIVEN Pub/Sub down when the export fails and the run closes
    w = World(["shop.orders"])
    w.service.start_export(SLOT)
    bus = FlakyBus(down=1)
    w.service.events = bus
    w.exporter.set_status(TASK, ExportStatus.FAILED, failure_cause="bucket gone")
    report = w.service.poll()
    assert report.runs[0]["action"] == "retry-later"
    run = w.ledger.runs["202611271500"]
    assert run.state is RunState.FAILED and len(run.outbox) == 1  # kept with the state
    # WHEN the next poll comes (the closed run is still listed: it holds an event)
    report = w.service.poll()
    # THEN the event is published once and the run is no longer listed
    assert [r["action"] for r in report.runs] == ["events-published"]
    assert [e.kind for e in bus.events] == [EventKind.EXPORT_FAILED]
    assert bus.events[0].failure_cause == "bucket gone"
    assert w.ledger.runs["202611271500"].outbox == ()
    assert w.service.poll().runs == []


def test_a_table_still_loading_for_an_older_run_waits_for_that_load() -> None:
    # GIVEN yesterday's run still loading shop.orders (its DTS run has not finished)
    w = World(["shop.orders", "shop.customers"])
    w.service.start_export(SLOT)
    w.complete(["shop.orders", "shop.customers"])
    w.service.poll()
    w.clock.advance(minutes=5)
    w.service.poll()
    yesterday = "202611271500"
    w.ledger.put_tables(
        yesterday,
        [
            t.with_(state=TableState.SUCCEEDED)
            for t in w.ledger.tables(yesterday)
            if t.key == "shop.customers"
        ],
    )
    # WHEN today's export completes and is handed off
    today = SLOT + timedelta(days=1)
    w.clock.current = today + timedelta(seconds=20)
    w.service.start_export(today)
    task = f"rds2bq-prod-{today:%Y%m%d%H%M%S}"
    w.exporter.tables_info[task] = [
        TableExportStatus("shop.shop.orders", "COMPLETE"),
        TableExportStatus("shop.shop.customers", "COMPLETE"),
    ]
    w.exporter.set_status(task, ExportStatus.COMPLETE, percent=100, task_end_time=today)
    w.clock.advance(minutes=5)
    w.service.poll()
    # THEN only the table that is free starts; the other waits, then starts once the older load ends
    orders = w.transfers.configs["shop.orders"].name
    assert (orders, today) not in w.transfers.started
    assert (w.transfers.configs["shop.customers"].name, today) in w.transfers.started
    w.ledger.put_tables(
        yesterday, [t.with_(state=TableState.SUCCEEDED) for t in w.ledger.tables(yesterday)]
    )
    w.service.poll()
    assert len(w.transfers.started[(orders, today)]) == 1
    assert w.ledger.runs[f"{today:%Y%m%d%H%M}"].handed_off_at is not None

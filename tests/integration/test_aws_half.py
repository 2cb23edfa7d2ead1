"""The AWS half of a day over real wire: moto's server and the Firestore emulator."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.aws import ExportControl, seed_account, table_files
from orchestrator.adapters.aws import build_exporter
from orchestrator.adapters.aws_session import build_session
from orchestrator.adapters.ledger import FirestoreLedger
from orchestrator.app.daily import Orchestrator
from orchestrator.core.model import EventKind, RunState, TableState
from tests.fakes import FakeTransfers, FixedClock, RecordingEventBus
from tests.stack import firestore_client, settings_for

pytestmark = pytest.mark.integration
TABLES = ["shop.orders", "shop.customers", "shop.order_items", "shop.audit_log"]


@pytest.fixture
def day(moto_server: Any, firestore_emulator: Any) -> Any:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    account = seed_account(moto_server.endpoint, now=now)
    settings = settings_for(account, TABLES)
    exporter = build_exporter(settings, build_session("default", account.region))
    ledger = FirestoreLedger(firestore_client(firestore_emulator.host), settings.ledger_collection)
    events = RecordingEventBus()
    clock = FixedClock(now + timedelta(seconds=30))
    service = Orchestrator(
        settings, ledger, lambda: exporter, lambda: FakeTransfers.for_tables(TABLES), events, clock
    )

    class Day:
        pass

    d = Day()
    d.account, d.settings, d.ledger, d.events, d.clock, d.service = (
        account,
        settings,
        ledger,
        events,
        clock,
        service,
    )
    d.slot = now
    d.control = ExportControl(account)
    return d


def test_ten_concurrent_starts_give_one_export_task_and_one_run(day: Any) -> None:
    with ThreadPoolExecutor(10) as pool:
        runs = list(pool.map(lambda _: day.service.start_export(day.slot), range(10)))
    run_ids = {r.run_id for r in runs}
    assert len(run_ids) == 1
    run_id = run_ids.pop()
    tasks = [t for t in day.control.tasks() if t.startswith(f"rds2bq-{day.settings.env}-{run_id}")]
    assert tasks == [runs[0].export_task_id]
    assert [r.run_id for r in day.ledger.recent_runs(10)] == [run_id]
    assert [e.kind for e in day.events.events] == [EventKind.EXPORT_STARTED]
    task = day.control.task(tasks[0])
    assert task.export_only == TABLES and task.s3_prefix == "rds2bq"
    assert task.kms_key_id == day.account.kms_key_arn
    assert task.source_arn.endswith(":cluster:shop-aurora")


def test_poll_sequence_starting_in_progress_complete_with_a_skipped_table(day: Any) -> None:
    run = day.service.start_export(day.slot)
    task = run.export_task_id
    report = day.service.poll()
    assert report.runs[0]["action"] == "export-starting"

    day.control.progress(task, 35, gb=2)
    day.clock.advance(minutes=5)
    day.service.poll()
    stored = day.ledger.get_run(run.run_id)
    assert (stored.state, stored.export_status, stored.percent, stored.extracted_gb) == (
        RunState.EXPORTING,
        "IN_PROGRESS",
        35,
        2,
    )

    day.control.complete(
        task,
        {
            "shop.shop.orders": table_files("shop/shop.orders", (1, 2, 4)),
            "shop.shop.customers": table_files("shop/shop.customers", old_naming=True),
            "shop.shop.order_items": table_files("shop/shop.order_items"),
        },
        skipped={"shop.shop.audit_log": "Column name 'note;' contains a character RDS skips"},
        end_time=day.clock.now(),
    )
    day.clock.advance(minutes=1)  # inside the 5-minute visibility margin: no hand-off yet
    report = day.service.poll()
    assert report.runs[0]["action"] == "export-complete", report
    stored = day.ledger.get_run(run.run_id)
    assert stored.state is RunState.EXPORTED and stored.percent == 100
    assert stored.export_completed_at == day.clock.now() - timedelta(minutes=1)
    tables = {t.key: t for t in day.ledger.tables(run.run_id)}
    assert {k for k, t in tables.items() if t.state is TableState.PENDING} == {
        "shop.orders",
        "shop.customers",
        "shop.order_items",
    }
    assert tables["shop.audit_log"].state is TableState.SKIPPED_BY_EXPORT
    assert "note;" in tables["shop.audit_log"].reason
    skipped = [e for e in day.events.events if e.kind is EventKind.TABLES_SKIPPED]
    assert len(skipped) == 1


def test_failed_export_closes_the_run_with_the_cause(day: Any) -> None:
    run = day.service.start_export(day.slot)
    day.control.fail(run.export_task_id, "The IAM role doesn't have s3:PutObject on the bucket")
    day.service.poll()
    stored = day.ledger.get_run(run.run_id)
    assert stored.state is RunState.FAILED and "s3:PutObject" in stored.failure_cause
    assert day.ledger.open_runs() == []


def test_idle_poll_makes_no_aws_call(day: Any) -> None:
    built = []
    service = Orchestrator(
        day.settings,
        day.ledger,
        lambda: built.append(1) or None,
        lambda: None,
        day.events,
        day.clock,
    )
    assert service.poll().runs == []
    assert built == []

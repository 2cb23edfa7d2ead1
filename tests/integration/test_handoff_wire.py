"""The hand-off over real wire: the Firestore emulator for the ledger, the DTS adapter on the REST
stand-in, configs created by ``sync``. Exactly once, whatever the concurrency and faults."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.bigquery_standin import BigQueryStandin
from devstack.dts import DtsStandin
from orchestrator.adapters.bigquery import build_destination_tables
from orchestrator.adapters.dts import build_transfer_runner
from orchestrator.adapters.ledger import FirestoreLedger
from orchestrator.adapters.secrets import EnvSecrets
from orchestrator.app.daily import Orchestrator
from orchestrator.app.sync import sync
from orchestrator.app.transfers import TransferRuns
from orchestrator.core.model import ExportStatus, TableExportStatus, TableState
from orchestrator.core.retry import Backoff
from tests.conftest import GCP_PROJECT
from tests.fakes import FakeExporter, FixedClock, RecordingEventBus
from tests.integration.conftest import make_settings
from tests.stack import firestore_client

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def build(
    n: int,
    dts: DtsStandin,
    dts_client: Any,
    bigquery: BigQueryStandin,
    firestore_emulator: Any,
) -> tuple[Orchestrator, FakeExporter, Any]:
    tables = "\n".join(f"shop.t{i:03d}" for i in range(n))
    settings = make_settings(
        tables=tables,
        ledger_collection=f"runs_{uuid.uuid4().hex[:8]}",
        visibility_margin_minutes="0",
    )
    bigquery.add_dataset(GCP_PROJECT, "rds_shop", "asia-northeast1")
    secrets = EnvSecrets(
        {
            EnvSecrets.variable(settings.dts_keys_secret): json.dumps(
                {"access_key_id": "AKIAWIRE", "secret_access_key": "wire-secret"}
            )
        }
    )
    runner = build_transfer_runner(settings, client=dts_client)
    outcome = sync(settings, runner, build_destination_tables(settings, bigquery.endpoint), secrets)
    assert outcome.result is not None and outcome.result.ok
    ledger = FirestoreLedger(firestore_client(firestore_emulator.host), settings.ledger_collection)
    exporter = FakeExporter()
    service = Orchestrator(
        settings,
        ledger,
        lambda: exporter,
        lambda: runner,
        RecordingEventBus(),
        FixedClock(NOW + timedelta(seconds=30)),
        lambda: TransferRuns(
            ledger,
            lambda: runner,
            backoff=Backoff(attempts=2, base_seconds=0.01),
            sleep=lambda _: None,
        ),
    )
    service.start_export(NOW)
    task = f"rds2bq-prod-{NOW:%Y%m%d%H%M%S}"
    exporter.tables_info[task] = [
        TableExportStatus(f"shop.shop.t{i:03d}", "COMPLETE") for i in range(n)
    ]
    exporter.set_status(task, ExportStatus.COMPLETE, percent=100, task_end_time=NOW)
    return service, exporter, ledger


def starts(dts: DtsStandin) -> Counter[str]:
    return Counter(r.config_name for r in dts.runs() if r.run.run_time == NOW)


def test_ten_concurrent_polls_start_each_table_once(
    dts_standin: DtsStandin,
    dts_client: Any,
    bigquery_standin: BigQueryStandin,
    firestore_emulator: Any,
) -> None:
    service, _, ledger = build(30, dts_standin, dts_client, bigquery_standin, firestore_emulator)
    dts_standin.faults.latency = 0.05
    with ThreadPoolExecutor(10) as pool:
        reports = list(pool.map(lambda _: service.poll(), range(10)))
    counts = starts(dts_standin)
    assert len(counts) == 30 and set(counts.values()) == {1}
    actions = Counter(r["action"] for report in reports for r in report.runs)
    assert actions["handed-off"] == 1
    assert {t.state for t in ledger.tables(f"{NOW:%Y%m%d%H%M}")} == {TableState.STARTED}


def test_a_fault_after_37_of_100_starts_then_another_poll(
    dts_standin: DtsStandin,
    dts_client: Any,
    bigquery_standin: BigQueryStandin,
    firestore_emulator: Any,
) -> None:
    service, _, ledger = build(100, dts_standin, dts_client, bigquery_standin, firestore_emulator)
    dts_standin.faults.fail_after_starts(37, "UNAVAILABLE")
    first = service.poll()
    assert [r["action"] for r in first.runs] == ["export-complete", "handoff-incomplete"]
    assert sum(starts(dts_standin).values()) == 37
    dts_standin.faults.clear()
    service.poll()
    counts = starts(dts_standin)
    assert len(counts) == 100 and set(counts.values()) == {1}
    run = ledger.get_run(f"{NOW:%Y%m%d%H%M}")
    assert run is not None and run.handed_off_at is not None


def test_run_outcome_reads_where_a_transfer_run_stands(
    dts_standin: DtsStandin,
    dts_client: Any,
    bigquery_standin: BigQueryStandin,
    firestore_emulator: Any,
) -> None:
    service, _, ledger = build(2, dts_standin, dts_client, bigquery_standin, firestore_emulator)
    service.poll()
    runner = service.transfers()
    first, second = ledger.tables(f"{NOW:%Y%m%d%H%M}")
    assert runner.run_outcome(first.dts_run).table_state is None  # still pending
    dts_standin.finish_pending()
    # (this test's bucket does not exist: the stand-in fails the runs as DTS would)
    for table in (first, second):
        outcome = runner.run_outcome(table.dts_run)
        assert outcome.table_state is TableState.FAILED and outcome.error_code == 3
        assert "Failed to list files" in outcome.error_message
        assert outcome.started_at is not None and outcome.finished_at is not None

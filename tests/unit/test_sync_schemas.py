"""``sync`` creates a destination table with the columns the latest export of it wrote, and
without a schema (the preflight's job then) when no export is known or it cannot be read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.app.ports import ExportedTable
from orchestrator.app.sync import render_plan, sync
from orchestrator.app.sync_schemas import SchemaSource
from orchestrator.core.errors import PermanentError, TransientError
from orchestrator.core.model import ExportStatus, Run
from orchestrator.core.schema import Column
from tests.fakes import FakeExporter, InMemoryLedger, InMemoryTables
from tests.unit.test_sync_plan import InMemoryStore, settings

SECRETS = {"rds2bq-dts-reader-keys": '{"access_key_id": "AKIAX", "secret_access_key": "s"}'}
DAY = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
ORDERS = (Column("id", "INT64", "int64"), Column("total", "NUMERIC", "decimal128(20, 2)"))
OLD_ORDERS = ORDERS[:1]
ITEMS = (Column("order_id", "INT64", "int64"),)


class DictSecrets:
    def get(self, name: str) -> str:
        return SECRETS[name]


def exported_run(
    ledger: InMemoryLedger,
    days_ago: int,
    tables: tuple[str, ...] = ("shop.orders", "shop.orders_items"),
    status: ExportStatus = ExportStatus.COMPLETE,
) -> str:
    time = DAY - timedelta(days=days_ago)
    task_id = f"rds2bq-prod-{time:%Y%m%d%H%M%S}"
    ledger.create_run(Run(task_id, time, "daily", task_id, tables, export_status=status.value))
    return task_id


class Exports(FakeExporter):
    """Footers per (export, table folder); any other folder holds no data file."""

    def __init__(self, by_export: dict[str, dict[str, ExportedTable]]) -> None:
        super().__init__()
        self.by_export = by_export
        self.read: list[tuple[str, list[str]]] = []

    def read_exported_tables(
        self, task_id: str, export_dirs: Sequence[str]
    ) -> dict[str, ExportedTable]:
        self.read.append((task_id, list(export_dirs)))
        if self.fail_footers is not None:
            raise self.fail_footers
        found = self.by_export.get(task_id, {})
        return {d: found.get(d, ExportedTable(rows=0)) for d in export_dirs}


def run_sync(
    ledger: InMemoryLedger, exporter: FakeExporter, tables: InMemoryTables, dry_run: bool = False
) -> str:
    outcome = sync(
        settings(),
        InMemoryStore(),
        tables,
        DictSecrets(),
        dry_run=dry_run,
        schemas=SchemaSource(lambda: ledger, lambda: exporter),
    )
    assert outcome.result is None or outcome.result.ok
    return render_plan(outcome.plan)


def test_new_tables_get_the_latest_exports_columns() -> None:
    # GIVEN two complete exports, the newer with a column more, and a newest one still running
    ledger = InMemoryLedger()
    older, newer = exported_run(ledger, 2), exported_run(ledger, 1)
    exported_run(ledger, 0, status=ExportStatus.IN_PROGRESS)
    exporter = Exports(
        {
            older: {"shop/shop.orders": ExportedTable(5, OLD_ORDERS, 1)},
            newer: {
                "shop/shop.orders": ExportedTable(9, ORDERS, 1),
                "shop/shop.orders_items": ExportedTable(3, ITEMS, 1),
            },
        }
    )
    tables = InMemoryTables()
    # WHEN sync creates the destination tables
    text = run_sync(ledger, exporter, tables)
    # THEN each has the newest complete export's columns, read once from that export alone
    assert tables.tables["shop__orders"].columns == ORDERS
    assert tables.tables["shop__orders_items"].columns == ITEMS
    assert exporter.read == [(newer, ["shop/shop.orders", "shop/shop.orders_items"])]
    assert f"+ table   shop__orders  (2 columns, as export {newer} wrote them)" in text


def test_an_older_export_serves_a_table_the_newest_did_not_write() -> None:
    # GIVEN a newest export without the items table's files, an older one with them
    ledger = InMemoryLedger()
    older, newer = exported_run(ledger, 2), exported_run(ledger, 1)
    exporter = Exports(
        {
            older: {"shop/shop.orders_items": ExportedTable(3, ITEMS, 1)},
            newer: {"shop/shop.orders": ExportedTable(9, ORDERS, 1)},
        }
    )
    tables = InMemoryTables()
    run_sync(ledger, exporter, tables)
    assert tables.tables["shop__orders"].columns == ORDERS
    assert tables.tables["shop__orders_items"].columns == ITEMS
    assert exporter.read[1] == (older, ["shop/shop.orders_items"])


def test_a_new_install_creates_the_tables_without_a_schema_and_says_who_gives_one() -> None:
    tables = InMemoryTables()
    text = run_sync(InMemoryLedger(), Exports({}), tables)
    assert tables.tables["shop__orders"].columns == ()
    assert (
        "+ table   shop__orders  (no schema yet: the first preflight gives it the export's "
        "columns before the first load)"
    ) in text


@pytest.mark.parametrize(
    "fault", [PermanentError("AccessDenied on s3:GetObject"), TransientError("S3 timed out")]
)
def test_an_export_that_cannot_be_read_leaves_the_tables_without_a_schema(
    fault: Exception,
) -> None:
    # GIVEN an operator whose AWS access does not reach the export
    ledger = InMemoryLedger()
    exported_run(ledger, 1)
    exporter = Exports({})
    exporter.fail_footers = fault
    tables = InMemoryTables()
    # WHEN sync runs THEN the tables are still created, without a schema, and it says why
    text = run_sync(ledger, exporter, tables)
    assert sorted(tables.tables) == ["shop__orders", "shop__orders_items"]
    assert all(t.columns == () for t in tables.tables.values())
    assert f"! columns not read from the export: {fault}" in text


def test_no_table_to_create_reads_neither_the_ledger_nor_aws() -> None:
    def unreachable() -> InMemoryLedger:
        raise AssertionError("built without a table to create")

    outcome = sync(
        settings(),
        InMemoryStore(),
        InMemoryTables(["shop__orders", "shop__orders_items"]),
        DictSecrets(),
        schemas=SchemaSource(unreachable, unreachable),  # type: ignore[arg-type]
    )
    assert outcome.result is not None and outcome.result.ok


def test_a_dry_run_shows_the_columns_it_would_create_the_tables_with() -> None:
    ledger = InMemoryLedger()
    newer = exported_run(ledger, 1, tables=("shop.orders",))
    exporter = Exports({newer: {"shop/shop.orders": ExportedTable(9, ORDERS, 1)}})
    tables = InMemoryTables()
    text = run_sync(ledger, exporter, tables, dry_run=True)
    assert not tables.tables
    assert f"shop__orders  (2 columns, as export {newer} wrote them)" in text
    assert "shop__orders_items  (no schema yet" in text

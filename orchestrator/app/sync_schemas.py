"""The schema ``sync`` gives a destination table it creates: the source's columns, as the most
recent complete export that holds the table wrote them (its Parquet footers).

Best effort. The ledger says which runs exported what; the exporter reads the footers with the AWS
session, which an operator running ``sync`` may not have. Any fault of either, or no export of
the table yet (a new install), leaves the table to be created without a schema: the first
preflight then gives it every exported column before the first load (``app.preflight``).
No SDK import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orchestrator.app.ports import Exporter, Ledger
from orchestrator.core.errors import Rds2bqError
from orchestrator.core.model import ExportStatus, TableRef
from orchestrator.core.schema import Column

log = logging.getLogger(__name__)

# How far back to look for an export of a table: about a week of daily runs and a few reruns.
RECENT_RUNS = 10


@dataclass(frozen=True)
class SourceSchema:
    """A table's columns and the export they were read from."""

    columns: tuple[Column, ...]
    export_task_id: str


@dataclass(frozen=True)
class FoundSchemas:
    """Per destination table id, the schema found; ``problem``: why the search stopped short."""

    schemas: dict[str, SourceSchema]
    problem: str = ""


@dataclass(frozen=True)
class SchemaSource:
    """Finds the exported columns of tables through the ledger and the exporter, each built only
    when a table is to be created."""

    ledger: Callable[[], Ledger]
    exporter: Callable[[], Exporter]
    recent_runs: int = RECENT_RUNS

    def find(self, tables: Sequence[TableRef]) -> FoundSchemas:
        """The newest exported columns of each table, by its destination table id."""
        found: dict[str, SourceSchema] = {}
        wanted = {t.key: t for t in tables}
        if not wanted:
            return FoundSchemas(found)
        try:
            runs = self.ledger().recent_runs(self.recent_runs)
            exports = [r for r in runs if r.export_status == ExportStatus.COMPLETE]
            for run in sorted(exports, key=lambda r: r.run_time, reverse=True):
                held = [wanted[k] for k in run.tables if k in wanted]
                if not held:
                    continue
                read = self.exporter().read_exported_tables(
                    run.export_task_id, sorted({t.export_dir for t in held})
                )
                for table in held:
                    columns = read.get(table.export_dir)
                    if columns is not None and columns.columns:
                        found[table.bq_table] = SourceSchema(columns.columns, run.export_task_id)
                        del wanted[table.key]
                if not wanted:
                    break
        except Rds2bqError as exc:
            log.warning("sync: the exported columns could not be read: %s", exc)
            return FoundSchemas(found, str(exc))
        return FoundSchemas(found)

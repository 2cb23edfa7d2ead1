"""The preflight: as a run's tables are handed to DTS, check what the export wrote against where
it goes, a chunk of tables at a time, each chunk just before its loads are started (the hand-off
starts a chunk's DTS runs while the next chunk is checked: ``chunks``).

For every table the export holds:

- the rows and columns its Parquet files hold (``Exporter.read_exported_tables``: the footers,
  read with ranged GETs, never the data), kept on the table as ``export_rows``: notify compares
  them with the destination's rows after the load (``app.transfers.verified``); and their
  ``core.schema.fingerprint``, kept as ``export_schema``;
- the destination table's columns and rows now (``DestinationTables.describe``: the rows are the
  previous day's, kept as ``previous_rows`` for the digest);
- ``core.schema.plan``: new columns are added to the destination table now, a type the load
  widens is noted, and a change a load cannot make without dropping or retyping a column holds
  the table (HELD, with the difference and the fix); the others go on.

An ordinary day describes no destination. The previous run's load vouches for a table when that
load SUCCEEDED with its rows counted (``loaded_rows``) and with the very columns exported today
(the same ``export_schema``): its destination has those columns, and those rows. So the rows
before the load are the rows that load left, and there is nothing to plan. Every other table is
described: the first day, a table whose columns changed, one the previous run did not load
(failed, held, mismatched, empty, or not in it). The previous run is the latest one handed off
before this one (``previous_run``). What this does not see: a destination changed by hand since
its last load, which the load itself then meets (docs/operations.md, "A HELD or
MISMATCHED table").

A transient fault raises: the tables not checked yet are left for the next poll's hand-off. A
permanent one (a dataset we may not read, a footer that is no Parquet) is logged and leaves the
tables to load unchecked: the checks guard the load, they never stop one on their own fault. A
fault reading the previous run's tables only costs the describes it would have saved.
No SDK import.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import TYPE_CHECKING

from orchestrator.core.errors import PermanentError, TransientError
from orchestrator.core.model import Run, TableRef, TableRun, TableState, parse_table_ref

if TYPE_CHECKING:
    # Types only: the wiring builds the preflight for every poll, an idle one included, which
    # loads neither the ports nor the schema rules (cold start).
    from orchestrator.app.ports import DestinationTable, DestinationTables, Exporter, Ledger
    from orchestrator.core.schema import SchemaPlan

log = logging.getLogger(__name__)


FIRST_CHUNK = 16  # the hand-off's first DTS calls wait for this many checks only
CHUNK = 100  # then this many at a time, the next checked while the last one's loads start
RECENT_RUNS = 10  # where the previous run is looked for (more runs than that today: none is)


class Preflight:
    def __init__(
        self,
        exporter: Callable[[], Exporter],
        destinations: Callable[[], DestinationTables],
        ledger: Ledger,
    ) -> None:
        self.exporter = exporter
        self.destinations = destinations
        self.ledger = ledger
        self._previous: tuple[str, str] = ("", "")  # (a run id, the run before it)
        self._previous_lock = threading.Lock()

    def chunks(self, run: Run, tables: Sequence[TableRun]) -> Iterator[list[TableRun]]:
        """``check`` of ``tables`` a chunk at a time, in order: a small first chunk, so that the
        first loads start at once, and each next chunk checked while the caller starts the loads
        of the one before. Raises TransientError where a chunk could not be checked."""
        if not tables:
            return
        sizes = [list(tables[:FIRST_CHUNK])] + [
            list(tables[i : i + CHUNK]) for i in range(FIRST_CHUNK, len(tables), CHUNK)
        ]
        with ThreadPoolExecutor(2, thread_name_prefix="preflight") as pool:
            # Two chunks in flight: the one the caller takes next, and the one after.
            ahead = iter(sizes)
            pending = deque(pool.submit(self.check, run, c) for c in islice(ahead, 2))
            try:
                while pending:
                    checked = pending.popleft().result()
                    following = next(ahead, None)
                    if following is not None:
                        pending.append(pool.submit(self.check, run, following))
                    yield checked
            finally:
                for future in pending:
                    future.cancel()  # the caller stopped (a fault): check no further

    def check(self, run: Run, tables: Sequence[TableRun]) -> list[TableRun]:
        """The run's tables after the preflight (only PENDING ones change)."""
        from orchestrator.app.ports import ExportedTable
        from orchestrator.core.schema import fingerprint, plan

        pending = [t for t in tables if t.state is TableState.PENDING]
        if not pending:
            return list(tables)
        refs = {t.key: parse_table_ref(t.key) for t in pending}
        dirs = sorted({r.export_dir for r in refs.values()})
        try:
            # S3 beside the ledger and BigQuery: the preflight takes the longer of the two.
            with ThreadPoolExecutor(1, thread_name_prefix="preflight") as pool:
                looked_up = pool.submit(self._look_up, run, refs)
                exported = self.exporter().read_exported_tables(run.export_task_id, dirs)
                vouched, existing = looked_up.result()
            schemas = {d: fingerprint(e.columns) for d, e in exported.items()}
            # Vouched for, but its columns changed today: that destination is looked at now.
            changed = {
                k
                for k, t in vouched.items()
                if t.export_schema != schemas.get(refs[k].export_dir, "")
            }
            if changed:
                tables_changed = sorted({refs[k].bq_table for k in changed})
                existing.update(self.destinations().describe(tables_changed))
        except PermanentError as exc:
            log.error(
                "run %s: preflight skipped, the tables load unchecked: %s",
                run.run_id,
                exc,
                extra={"run_id": run.run_id},
            )
            return list(tables)
        checked: dict[str, TableRun] = {}
        for table in pending:
            ref = refs[table.key]
            wrote = exported.get(ref.export_dir, ExportedTable(rows=0))
            table = table.with_(
                export_rows=wrote.rows, export_schema=schemas.get(ref.export_dir, "")
            )
            if table.key in vouched and table.key not in changed:
                # Loaded with these very columns: the destination has them, and that load's rows.
                checked[table.key] = table.with_(previous_rows=vouched[table.key].loaded_rows)
                continue
            destination = existing.get(ref.bq_table)
            table = table.with_(previous_rows=destination.rows if destination is not None else None)
            if destination is None or not wrote.columns:
                # No table yet (the load fails and says so) or no file (the load is EMPTY).
                checked[table.key] = table
                continue
            schema = plan(wrote.columns, destination.columns)
            checked[table.key] = self._apply(run, table, ref.bq_table, schema)
        held = sum(1 for t in checked.values() if t.state is TableState.HELD)
        log.info(
            "run %s: preflight of %d tables (%d vouched for by the previous run's loads): "
            "%d held for a schema change, %d with new columns",
            run.run_id,
            len(pending),
            len(vouched) - len(changed),
            held,
            sum(1 for t in checked.values() if t.schema_changes),
            extra={"run_id": run.run_id},
        )
        return [checked.get(t.key, t) for t in tables]

    def _look_up(
        self, run: Run, refs: dict[str, TableRef]
    ) -> tuple[dict[str, TableRun], dict[str, DestinationTable]]:
        """The tables the previous run's loads vouch for (by key), and the destinations of the
        others, described. An ordinary day describes none, and so never builds the BigQuery
        client in the poll."""
        vouched = self._vouched(run, list(refs))
        others = sorted({r.bq_table for k, r in refs.items() if k not in vouched})
        return vouched, (self.destinations().describe(others) if others else {})

    def _vouched(self, run: Run, keys: list[str]) -> dict[str, TableRun]:
        """Of ``keys``, the previous run's tables that SUCCEEDED with their rows counted and
        their columns' fingerprint kept."""
        try:
            previous = self.previous_run(run)
            before = self.ledger.get_tables(previous, keys) if previous else {}
        except (TransientError, PermanentError) as exc:
            log.warning(
                "run %s: could not read the previous run's tables, every destination is "
                "described: %s",
                run.run_id,
                exc,
                extra={"run_id": run.run_id},
            )
            return {}
        return {
            k: t
            for k, t in before.items()
            if t.state is TableState.SUCCEEDED and t.loaded_rows is not None and t.export_schema
        }

    def previous_run(self, run: Run) -> str:
        """The id of the latest run handed off before ``run`` ('' when there is none among the
        recent runs), looked up once per run."""
        with self._previous_lock:
            if self._previous[0] != run.run_id:
                earlier = [
                    r
                    for r in self.ledger.recent_runs(RECENT_RUNS)
                    if r.run_time < run.run_time and r.handed_off_at is not None
                ]
                latest = max(earlier, key=lambda r: r.run_time, default=None)
                self._previous = (run.run_id, latest.run_id if latest else "")
            return self._previous[1]

    def _apply(
        self, run: Run, table: TableRun, destination_id: str, schema: SchemaPlan
    ) -> TableRun:
        from orchestrator.core.schema import hold_fix

        if schema.holds:
            reason = "schema change: " + "; ".join(schema.conflicts)
            return table.with_(
                state=TableState.HELD,
                reason=reason,
                error_message=f"{reason}. Fix: {hold_fix(table.key, run.run_id)}",
                schema_changes=schema.changes,
            )
        if schema.added:
            try:
                self.destinations().add_columns(destination_id, schema.added)
            except PermanentError as exc:
                # The truncating load adds them anyway; say that it could not be done first.
                log.warning(
                    "run %s: could not add %s to %s ahead of the load: %s",
                    run.run_id,
                    ", ".join(c.name for c in schema.added),
                    destination_id,
                    exc,
                    extra={"run_id": run.run_id},
                )
        return table.with_(schema_changes=schema.changes)

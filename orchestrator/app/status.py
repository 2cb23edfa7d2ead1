"""Where runs stand: one run with its tables, or the recent runs. Read from the ledger only.

``run_view`` and ``run_line`` are pure (run, tables) -> JSON-ready dicts; ``StatusReader`` reads the
ledger and is what the ``status`` entry point and the CLI call. Status never calls AWS or DTS: the
export's progress is what the last poll recorded, so a status call is cheap and needs no AWS
credentials. Times are UTC (RFC 3339); the CLI shows them in the configured time zone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from orchestrator.core.digest import PROBLEM_ORDER, Digest, digest
from orchestrator.core.errors import BadRequestError, NotFoundError
from orchestrator.core.keys import run_time_of
from orchestrator.core.model import NOT_LOADED_STATES, Run, RunState, TableRun, TableState
from orchestrator.core.prices import Prices

if TYPE_CHECKING:
    # Types only: status reads the ledger and need not import the ports.
    from orchestrator.app.ports import Clock, Ledger

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
_EXPORTING = (RunState.EXPORT_STARTING, RunState.EXPORTING)
_IN_FLIGHT = (TableState.PENDING, TableState.STARTING, TableState.STARTED)


def seconds_between(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, int((end - start).total_seconds()))


def counts(run: Run, tables: Sequence[TableRun]) -> dict[str, int]:
    """How many of the run's tables are loaded, failed, skipped, in flight; ``waiting`` are those
    with no table record yet (the export has not completed)."""

    def count(*states: TableState) -> int:
        return sum(1 for t in tables if t.state in states)

    return {
        "tables": len(run.tables),
        "loaded": count(TableState.SUCCEEDED),
        "failed": count(*NOT_LOADED_STATES),
        "skipped": count(TableState.SKIPPED_BY_EXPORT),
        "running": count(*_IN_FLIGHT),
        "waiting": max(0, len(run.tables) - len(tables)),
    }


def table_view(table: TableRun, now: datetime) -> dict[str, Any]:
    end = table.finished_at or (now if table.state in _IN_FLIGHT else None)
    return {
        "table": table.key,
        "state": table.state.value,
        "attempts": table.attempts,
        "started_at": table.started_at,
        "finished_at": table.finished_at,
        "seconds": seconds_between(table.started_at, end),
        "error_code": table.error_code,
        "error": table.error_message or table.reason,
        "dts_run": table.dts_run,
        "size_bytes": table.size_bytes,
        "export_rows": table.export_rows,
        "previous_rows": table.previous_rows,
        "loaded_rows": table.loaded_rows,
        "change": table.change,
        "schema_changes": list(table.schema_changes),
    }


def digest_view(d: Digest, prices: Prices) -> dict[str, Any]:
    """The digest's totals (``core.digest``): what Slack's run summary says, as JSON."""
    problems: dict[str, int] = {}
    for t in d.problems:
        problems[t.state.value] = problems.get(t.state.value, 0) + 1
    return {
        "rows_loaded": d.rows_loaded,
        "rows_change": d.rows_change,
        "new_tables": d.new_tables,
        "schema_changed_tables": len(d.schema_changed),
        "problems": problems,
        "as_of": d.as_of,
        "as_of_basis": d.as_of_basis,
        "exported_bytes": d.exported_bytes,
        "cost": {
            "currency": "USD",
            "exported_gb": round(d.cost.exported_gb, 3),
            "export": round(d.cost.export_usd, 4),
            "egress": round(d.cost.egress_usd, 4),
            "total": round(d.cost.total_usd, 4),
            "export_per_gb": prices.export_per_gb,
            "egress_per_gb": prices.egress_per_gb,
            "basis": d.cost.basis,
        },
    }


def export_view(run: Run, now: datetime) -> dict[str, Any]:
    end = run.export_completed_at or (now if run.state in _EXPORTING else run.closed_at)
    return {
        "task_id": run.export_task_id,
        "status": run.export_status,
        "percent": run.percent,
        "extracted_gb": run.extracted_gb,
        "source_arn": run.source_arn,
        "snapshot_time": run.snapshot_time,
        "started_at": run.export_started_at,
        "completed_at": run.export_completed_at,
        "seconds": seconds_between(run.export_started_at, end),
        "late": run.late_flagged_at is not None,
        "warning": run.export_warning,
    }


def run_line(run: Run, tables: Sequence[TableRun]) -> dict[str, Any]:
    """One run in a list of recent runs."""
    return {
        "run_id": run.run_id,
        "kind": run.kind,
        "state": run.state.value,
        "run_time": run.run_time,
        "percent": run.percent,
        "parent_run_id": run.parent_run_id,
        "closed_at": run.closed_at,
        "counts": counts(run, tables),
        "failure_cause": run.failure_cause,
    }


def run_view(
    run: Run, tables: Sequence[TableRun], now: datetime, prices: Prices | None = None
) -> dict[str, Any]:
    """One run in full: state, export progress, every table with its error, timings and rows,
    and the digest's totals."""
    prices = prices or Prices()
    return {
        "run_id": run.run_id,
        "kind": run.kind,
        "state": run.state.value,
        "open": run.is_open,
        "run_time": run.run_time,
        "parent_run_id": run.parent_run_id,
        "failure_cause": run.failure_cause,
        "export": export_view(run, now),
        "handed_off_at": run.handed_off_at,
        "closed_at": run.closed_at,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "counts": counts(run, tables),
        "digest": digest_view(digest(run, tables, prices), prices),
        "tables": [table_view(t, now) for t in sorted(tables, key=_table_order)],
    }


def _table_order(table: TableRun) -> tuple[int, str]:
    """Problems first, in the digest's order (``core.digest.PROBLEM_ORDER``), then what is in
    flight, then the rest: what an operator looks for."""
    if table.state in PROBLEM_ORDER:
        return PROBLEM_ORDER.index(table.state), table.key
    in_flight = table.state in _IN_FLIGHT
    return len(PROBLEM_ORDER) + (0 if in_flight else 1), table.key


class StatusReader:
    def __init__(self, ledger: Ledger, clock: Clock, prices: Prices | None = None) -> None:
        self.ledger = ledger
        self.clock = clock
        self.prices = prices or Prices()

    def run(self, run_id: str) -> dict[str, Any]:
        try:
            run_time_of(run_id)
        except ValueError as exc:
            raise BadRequestError(str(exc)) from exc
        run = self.ledger.get_run(run_id)
        if run is None:
            raise NotFoundError(f"run {run_id} is not in the ledger")
        return run_view(run, self.ledger.tables(run_id), self.clock.now(), self.prices)

    def view(self, run: Run) -> dict[str, Any]:
        """The public view of a run a service has just returned (``start_export``): the same as
        ``run(run_id)``, never the ledger's internals (lease, outbox, hand-off owner). Tables are
        read only once the export is over: before, the ledger has none."""
        tables = [] if run.state in _EXPORTING else self.ledger.tables(run.run_id)
        return run_view(run, tables, self.clock.now(), self.prices)

    def recent(self, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequestError(f"limit must be between 1 and {MAX_LIMIT}")
        runs = self.ledger.recent_runs(limit)
        return {"runs": [run_line(r, self.ledger.tables(r.run_id)) for r in runs]}

    def query(self, params: Mapping[str, str]) -> dict[str, Any]:
        """The HTTP query: ``run_id`` for one run, else ``limit`` recent runs."""
        unknown = sorted(set(params) - {"run_id", "limit"})
        if unknown:
            raise BadRequestError(
                f"unknown parameter(s): {', '.join(unknown)}; use run_id or limit"
            )
        run_id = (params.get("run_id") or "").strip()
        if run_id:
            return self.run(run_id)
        text = (params.get("limit") or str(DEFAULT_LIMIT)).strip()
        # ASCII digits only: str.isdigit accepts '²', which int() then refuses.
        if not re.fullmatch(r"[0-9]{1,6}", text):
            raise BadRequestError(f"limit={_clip(text)} is not a whole number")
        return self.recent(int(text))


def _clip(value: str, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""What a rerun checks before anything changes: which tables it means, and what refuses it.

Read-only: the ledger is read, nothing is written. Each refusal names its reason, so that one
answer lists every problem (``app.reruns``, "Every request is checked in full").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from orchestrator.app.ports import Ledger
from orchestrator.app.rerun_request import RerunRequest
from orchestrator.app.transfers import NOT_LOADED
from orchestrator.config import Settings
from orchestrator.core import machine
from orchestrator.core.errors import BadRequestError, ConflictError
from orchestrator.core.model import Run, RunState, TableRun, TableState

NEWER_RUNS_CHECKED = 30  # how far back a re-transfer looks for newer loads of its tables
_IN_FLIGHT = (TableState.PENDING, TableState.STARTING, TableState.STARTED)
_EXPORTING = (RunState.EXPORT_STARTING, RunState.EXPORTING, RunState.EXPORTED)


def check_transferable(run: Run) -> None:
    """Refuse a run that has no completed export to reuse, or whose hand-off is not over."""
    if run.state in _EXPORTING:
        raise ConflictError(
            f"run {run.run_id} is {run.state.value}: its tables are transferred by its "
            "hand-off once the export completes; nothing to re-transfer yet"
        )
    if run.state is RunState.TRANSFERRING and run.handed_off_at is None:
        raise ConflictError(
            f"run {run.run_id} is being handed off right now: wait for the hand-off to end"
        )
    if run.state is RunState.CANCELED or run.export_completed_at is None:
        cause = run.failure_cause or f"ended {run.state.value}"
        raise ConflictError(
            f"run {run.run_id} has no export to reuse ({cause}); re-export instead: "
            f'"mode": "export", "run_id": "{run.run_id}"'
        )


def transfer_keys(
    settings: Settings, request: RerunRequest, run: Run, docs: Mapping[str, TableRun]
) -> list[str]:
    """The tables a re-transfer means: those named (each in the run and still configured), or the
    run's failed ones."""
    if request.failed:
        # Not a HELD table: reloading it accepts its schema change, which is asked for by name.
        failed = NOT_LOADED - {TableState.HELD}
        return [k for k in run.tables if k in docs and docs[k].state in failed]
    configured = {t.key for t in settings.tables}
    not_in_run = [k for k in request.tables if k not in run.tables]
    if not_in_run:
        raise BadRequestError(
            f"unknown table(s) for run {run.run_id}: {', '.join(not_in_run)} (its tables: "
            f"{clip(run.tables)})"
        )
    unconfigured = [k for k in request.tables if k not in configured]
    if unconfigured:
        raise BadRequestError(
            f"{', '.join(unconfigured)} no longer in the tables file (RDS2BQ_TABLES_FILE): "
            "there is no transfer config to rerun"
        )
    return list(request.tables)


def table_refusal(
    key: str, table: TableRun | None, now: datetime, stale_after: timedelta
) -> str | None:
    """Why this table cannot be re-transferred now, or None."""
    if table is None:
        return f"{key} has no record in this run (it was not part of its export)"
    state = table.state
    if state is TableState.SKIPPED_BY_EXPORT:
        return (
            f"{key} was not in the export ({table.reason or 'skipped by AWS'}): re-export it "
            'instead ("mode": "export")'
        )
    if state is TableState.PENDING:
        return f"{key} has not been handed off yet"
    if state is TableState.STARTING and not machine.retransfer_claim_is_stale(
        table, now, stale_after
    ):
        return f"{key} is being started right now; wait for it"
    if state is TableState.STARTED:
        return (
            f"{key}: its DTS run {table.dts_run or '(unknown)'} has not finished yet (never two "
            "runs of one table at once): wait for it"
        )
    return None


def runs_in_the_way(ledger: Ledger, run: Run | None, keys: Sequence[str]) -> list[str]:
    """Other open runs that will load, or are loading, any of these tables."""
    refusals = []
    for other in ledger.open_runs():
        if run is not None and other.run_id == run.run_id:
            continue
        shared = sorted(set(keys) & set(other.tables))
        if not shared:
            continue
        if other.state in _EXPORTING or (
            other.state is RunState.TRANSFERRING and other.handed_off_at is None
        ):
            refusals.append(
                f"run {other.run_id} ({other.kind}, {other.state.value}) is still exporting "
                f"{clip(shared)} and will load them when it completes: wait for it"
            )
            continue
        busy = [
            t.key for t in ledger.tables(other.run_id) if t.key in shared and t.state in _IN_FLIGHT
        ]
        if busy:
            refusals.append(
                f"run {other.run_id} is transferring {clip(busy)} right now (never two "
                "runs of one table at once): wait for it"
            )
    return refusals


def newer_loads(ledger: Ledger, run: Run, keys: Sequence[str]) -> list[str]:
    """Newer runs that loaded any of these tables: an older export would replace their data."""
    refusals = []
    for other in ledger.recent_runs(NEWER_RUNS_CHECKED):
        if other.run_time <= run.run_time:
            continue
        loaded = [
            t.key
            for t in ledger.tables(other.run_id)
            if t.key in keys and t.state is TableState.SUCCEEDED
        ]
        if loaded:
            refusals.append(
                f"{clip(loaded)} loaded by the newer run {other.run_id}: re-transferring "
                f"run {run.run_id}'s older export would replace newer data (send "
                '"force": true if that is what you want)'
            )
    return refusals


def reexport_hint(run: Run, keys: Sequence[str]) -> str:
    """The request that re-exports these tables of ``run``, in the HTTP API's words (the CLI
    shows it as its command line: ``cli_errors.CLI_WORDS``)."""
    return f'("mode": "export", "run_id": "{run.run_id}", "tables": {json.dumps(list(keys))})'


def no_data_file(run: Run, keys: Sequence[str]) -> str:
    """Why these tables, whose load was EMPTY and whose export folder holds no data file, cannot
    be re-transferred, and what loads them: the same export's files are the same nothing."""
    them = "it" if len(keys) == 1 else "them"
    return (
        f"the export {run.export_task_id} wrote no data file for {clip(keys)} (its load was "
        f"EMPTY), so a re-transfer would load nothing again: re-export {them} "
        f"{reexport_hint(run, keys)}"
    )


def export_keys(
    settings: Settings, ledger: Ledger, request: RerunRequest, parent: Run | None
) -> tuple[list[str], list[str]]:
    """The tables a re-export means, in the tables file's order, and notes on those left out."""
    configured = [t.key for t in settings.tables]
    if request.tables:
        unknown = [k for k in request.tables if k not in configured]
        if unknown:
            raise BadRequestError(
                f"unknown table(s): {', '.join(unknown)} (not in the tables file; "
                f"configured: {clip(configured)})"
            )
        wanted: Iterable[str] = request.tables
    elif parent is None:
        wanted = configured
    elif request.failed:
        docs = {t.key: t for t in ledger.tables(parent.run_id)}
        not_loaded = (*NOT_LOADED, TableState.SKIPPED_BY_EXPORT)
        wanted = [
            k for k in parent.tables if not docs or (k in docs and docs[k].state in not_loaded)
        ]
    else:
        wanted = parent.tables
    chosen = set(wanted)
    dropped = sorted(chosen - set(configured))
    notes = [f"left out (no longer in the tables file): {', '.join(dropped)}"] if dropped else []
    return [k for k in configured if k in chosen], notes


def clip(keys: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")

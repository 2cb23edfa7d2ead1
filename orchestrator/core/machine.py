"""Pure transitions of a run: (run, observation, now) -> Transition(run', events). No I/O.

A transition that changes nothing returns ``Transition(None)`` so the ledger writes nothing. Every
function here may be called more than once for the same input (a Firestore transaction retries
its body), so none of them has side effects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from orchestrator.core.events import (
    Event,
    ExportFailed,
    ExportLate,
    ExportStarted,
    HandoffDone,
    RunClosed,
    SkippedTable,
    TableFailed,
    TablesSkipped,
)
from orchestrator.core.keys import export_task_id, is_daily_run_time, run_id_for
from orchestrator.core.model import (
    NOT_LOADED_STATES,
    ExportObservation,
    ExportStatus,
    Run,
    RunState,
    Source,
    TableExportStatus,
    TableRun,
    TableState,
    Transition,
)
from orchestrator.core.redaction import redact

UNCHANGED = Transition(None)
# Vendor text (AWS causes and warnings, DTS errors, refusals quoting them) becomes ledger state
# only here, and is redacted on the way in: whichever path brought it (notify, the poll's
# reconcile, a rerun, a start), status, Slack and the logs then read scrubbed text.
_scrub = redact
_RUNNING = (ExportStatus.STARTING, ExportStatus.IN_PROGRESS, ExportStatus.CANCELING)
# perTableStatus values other than COMPLETE are unconfirmed (docs/platform.md): anything else is
# skipped.
_TABLE_EXPORTED = "COMPLETE"


def new_run(
    env: str,
    run_time: datetime,
    kind: str,
    tables: Sequence[str],
    now: datetime,
    parent_run_id: str = "",
) -> Run:
    # The kind is in the run time (model's run keys): a daily run on second 00, a re-export on
    # any other. A mismatch would let one kind's run take the other's id.
    if (kind == "daily") != is_daily_run_time(run_time):
        raise ValueError(f"a {kind} run cannot have run time {run_time.isoformat()}")
    return Run(
        run_id=run_id_for(run_time),
        run_time=run_time,
        kind=kind,
        export_task_id=export_task_id(env, run_time),
        tables=tuple(tables),
        created_at=now,
        updated_at=now,
        parent_run_id=parent_run_id,
    )


def export_started(run: Run, source: Source, now: datetime) -> Transition:
    """The export task exists (started by us, or adopted): EXPORT_STARTING -> EXPORTING."""
    if run.state is not RunState.EXPORT_STARTING:
        return UNCHANGED
    started = run.with_(
        state=RunState.EXPORTING,
        source_arn=source.arn,
        snapshot_time=source.snapshot_time,
        export_started_at=now,
        export_status=ExportStatus.STARTING,
        updated_at=now,
    )
    return Transition(
        started,
        (
            ExportStarted(
                run.run_id,
                now,
                export_task_id=run.export_task_id,
                source_arn=source.arn,
                snapshot_time=source.snapshot_time,
                tables=len(run.tables),
            ),
        ),
    )


def export_not_started(run: Run, cause: str, now: datetime) -> Transition:
    """The export could not be started for good (no source, no snapshot, a missing permission):
    close the run and say why."""
    if run.state is not RunState.EXPORT_STARTING:
        return UNCHANGED
    cause = _scrub(cause)
    failed = run.with_(state=RunState.FAILED, failure_cause=cause, closed_at=now, updated_at=now)
    return Transition(
        failed,
        (
            ExportFailed(
                run.run_id,
                now,
                export_task_id=run.export_task_id,
                status="NOT_STARTED",
                failure_cause=cause,
            ),
        ),
    )


def observe_export(
    run: Run,
    obs: ExportObservation,
    now: datetime,
    *,
    deadline_minutes: int,
    tables: Sequence[TableRun] | None = None,
) -> Transition:
    """Fold one DescribeExportTasks observation into the run.

    ``tables`` is the per-table classification of a COMPLETE export (``classify_tables``); it is
    required exactly when ``obs.status`` is COMPLETE.
    """
    if run.state not in (RunState.EXPORT_STARTING, RunState.EXPORTING):
        return UNCHANGED  # closed, or the export already completed: later observations add nothing
    progress = run.with_(
        state=RunState.EXPORTING,
        export_status=obs.status.value,
        percent=max(run.percent, obs.percent),
        extracted_gb=max(run.extracted_gb, obs.extracted_gb),
        source_arn=run.source_arn or obs.source_arn,
        snapshot_time=run.snapshot_time or obs.snapshot_time,
        export_started_at=run.export_started_at or obs.task_start_time or now,
        export_warning=_scrub(obs.warning) or run.export_warning,
    )
    if obs.status in _RUNNING:
        return _running(run, progress, now, deadline_minutes)
    if obs.status is ExportStatus.COMPLETE:
        if tables is None:
            raise ValueError("a COMPLETE observation needs the table classification")
        return _complete(progress, obs, tables, now)
    closed_state = RunState.CANCELED if obs.status is ExportStatus.CANCELED else RunState.FAILED
    cause = _scrub(obs.failure_cause) or (
        f"the export ended {obs.status.value} without a cause from AWS"
    )
    closed = progress.with_(state=closed_state, failure_cause=cause, closed_at=now, updated_at=now)
    return Transition(
        closed,
        (
            ExportFailed(
                run.run_id,
                now,
                export_task_id=run.export_task_id,
                status=obs.status.value,
                failure_cause=cause,
                percent=closed.percent,
            ),
        ),
    )


def _running(before: Run, progress: Run, now: datetime, deadline_minutes: int) -> Transition:
    events: tuple[Event, ...] = ()
    started = progress.export_started_at or now
    if progress.late_flagged_at is None and now - started >= timedelta(minutes=deadline_minutes):
        progress = progress.with_(late_flagged_at=now)
        events = (
            ExportLate(
                before.run_id,
                now,
                export_task_id=before.export_task_id,
                percent=progress.percent,
                running_minutes=int((now - started).total_seconds() // 60),
                deadline_minutes=deadline_minutes,
            ),
        )
    if progress.with_(updated_at=before.updated_at) == before:
        return UNCHANGED
    return Transition(progress.with_(updated_at=now), events)


def _complete(
    progress: Run, obs: ExportObservation, tables: Sequence[TableRun], now: datetime
) -> Transition:
    skipped = [t for t in tables if t.state is TableState.SKIPPED_BY_EXPORT]
    to_load = sum(1 for t in tables if t.state is TableState.PENDING)
    events: list[Event] = []
    if skipped:
        events.append(
            TablesSkipped(
                progress.run_id,
                now,
                tables=tuple(SkippedTable(t.key, t.reason) for t in skipped),
                warning=_scrub(obs.warning),
            )
        )
    completed_at = obs.task_end_time or now
    run = progress.with_(
        state=RunState.EXPORTED, percent=100, export_completed_at=completed_at, updated_at=now
    )
    if to_load == 0:
        cause = "the export completed but none of the configured tables was exported"
        run = run.with_(state=RunState.FAILED, failure_cause=cause, closed_at=now)
        events.append(_run_closed(run, tables, now))
    return Transition(run, tuple(events))


def classify_tables(
    table_keys: Iterable[str],
    report: Sequence[TableExportStatus],
    targets: dict[str, frozenset[str]],
) -> list[TableRun]:
    """One TableRun per configured table: PENDING if the export holds it, else SKIPPED_BY_EXPORT.

    ``targets`` maps each table key to the names ``export_tables_info`` may use for it. A table
    absent from the report counts as skipped: AWS leaves some tables out without a word.
    """
    by_target = {entry.target: entry for entry in report}
    result = []
    for key in table_keys:
        entry = next(
            (by_target[t] for t in sorted(targets.get(key, {key})) if t in by_target), None
        )
        if entry is None:
            result.append(
                TableRun(
                    key,
                    TableState.SKIPPED_BY_EXPORT,
                    reason="not in the export (AWS skipped it without a reason)",
                )
            )
        elif entry.status.upper() != _TABLE_EXPORTED:
            reason = _scrub(entry.reason) or f"export status {entry.status}"
            result.append(
                TableRun(
                    key, TableState.SKIPPED_BY_EXPORT, reason=reason, size_bytes=entry.size_bytes
                )
            )
        else:
            result.append(TableRun(key, TableState.PENDING, size_bytes=entry.size_bytes))
    return result


# --------------------------------------------------------------------------- hand-off


def handoff_due(run: Run, now: datetime, margin_minutes: int) -> bool:
    """Whether a poll should try to claim the hand-off (the claim itself decides for certain)."""
    if run.state is RunState.EXPORTED:
        completed = run.export_completed_at or now
        return now >= completed + timedelta(minutes=margin_minutes)
    if run.state is RunState.TRANSFERRING and run.handed_off_at is None:
        return run.handoff_lease_until is None or now >= run.handoff_lease_until
    return False


def claim_handoff(
    run: Run, now: datetime, owner: str, lease_seconds: int, margin_minutes: int
) -> Transition:
    """Take the hand-off lease if it is due and free (or expired: its holder crashed)."""
    if not handoff_due(run, now, margin_minutes):
        return UNCHANGED
    claimed = run.with_(
        state=RunState.TRANSFERRING,
        handoff_owner=owner,
        handoff_lease_until=now + timedelta(seconds=lease_seconds),
        updated_at=now,
    )
    return Transition(claimed)


def release_handoff(run: Run, owner: str, now: datetime) -> Transition:
    """Give the lease back early (tables left over) so the next poll resumes at once."""
    if run.handoff_owner != owner:
        return UNCHANGED
    return Transition(run.with_(handoff_owner="", handoff_lease_until=now, updated_at=now))


def handoff_finished(run: Run, owner: str, now: datetime, tables: Sequence[TableRun]) -> Transition:
    """Release the lease and record the hand-off; close the run if nothing is left in flight."""
    if run.handoff_owner != owner or run.handed_off_at is not None:
        return UNCHANGED  # the lease was lost to another poll; that one reports
    started = sum(
        1 for t in tables if t.state is TableState.STARTED or (t.state.is_final and t.dts_run)
    )
    failed = [t for t in tables if t.state is TableState.FAILED and not t.dts_run]
    held = [t for t in tables if t.state is TableState.HELD and not t.dts_run]  # by the preflight
    done = run.with_(handed_off_at=now, handoff_owner="", handoff_lease_until=None, updated_at=now)
    events: list[Event] = [
        HandoffDone(
            run.run_id,
            now,
            started=started,
            failed_to_start=len(failed),
            skipped=sum(1 for t in tables if t.state is TableState.SKIPPED_BY_EXPORT),
            held=len(held),
        )
    ]
    events += [table_failed_event(run.run_id, t, now) for t in (*held, *failed)]
    closing = close_if_done(done, tables, now)
    if closing.run is not None:
        return Transition(closing.run, (*events, *closing.events))
    return Transition(done, tuple(events))


def table_failed_event(run_id: str, table: TableRun, at: datetime) -> TableFailed:
    return TableFailed(
        run_id,
        at,
        table=table.key,
        state=table.state,
        error_code=table.error_code,
        error_message=table.error_message or table.reason,
        dts_run=table.dts_run,
        started_at=table.started_at,
        finished_at=table.finished_at,
    )


# --------------------------------------------------------------------------- tables and closing


def table_start_recorded(table: TableRun, run_name: str, now: datetime) -> TableRun:
    return table.with_(
        state=TableState.STARTED,
        dts_run=run_name,
        started_at=now,
        attempts=table.attempts + 1,
        reason="",
        error_code=0,
        error_message="",
    )


def unloadable_export(run: Run, env: str) -> str:
    """Why DTS cannot load this run's export ('' when it can): the configs' data_path template
    makes ``model.export_task_id`` of the run time, and a run written by the previous version
    kept its export under an id without seconds, which the template no longer produces."""
    expected = export_task_id(env, run.run_time)
    if run.export_task_id == expected:
        return ""
    return (
        f"export {run.export_task_id} was started by the previous version, whose export ids had "
        f"no seconds; the transfer configs now read {expected}: re-export these tables"
    )


def table_start_failed(table: TableRun, reason: str, now: datetime) -> TableRun:
    reason = _scrub(reason)
    return table.with_(
        state=TableState.FAILED, reason=reason, error_message=reason, finished_at=now
    )


def table_finished(
    table: TableRun,
    run_name: str,
    state: TableState,
    error_code: int,
    error_message: str,
    started_at: datetime | None,
    finished_at: datetime | None,
    *,
    loaded_rows: int | None = None,
) -> TableRun | None:
    """A DTS run of this table finished (``loaded_rows``: the destination's rows after it, when
    counted). None when there is nothing new (a duplicate, or a notification for an older attempt
    than the one the ledger follows)."""
    if table.dts_run and run_name != table.dts_run:
        return None
    if table.state is state and table.dts_run == run_name:
        return None
    return table.with_(
        state=state,
        dts_run=run_name,
        error_code=error_code,
        error_message=_scrub(error_message),
        started_at=started_at or table.started_at,
        finished_at=finished_at,
        loaded_rows=loaded_rows if loaded_rows is not None else table.loaded_rows,
    )


def close_if_done(run: Run, tables: Sequence[TableRun], now: datetime) -> Transition:
    """Close a handed-off run once every table is final: SUCCEEDED, PARTIAL or FAILED."""
    if run.state is not RunState.TRANSFERRING or run.handed_off_at is None:
        return UNCHANGED
    if not tables or not all(t.state.is_final for t in tables):
        return UNCHANGED
    loaded = sum(1 for t in tables if t.state is TableState.SUCCEEDED)
    if loaded == len(tables):
        state = RunState.SUCCEEDED
    elif loaded == 0:
        state = RunState.FAILED
    else:
        state = RunState.PARTIAL
    closed = run.with_(state=state, closed_at=now, updated_at=now)
    return Transition(closed, (_run_closed(closed, tables, now),))


def _run_closed(run: Run, tables: Sequence[TableRun], now: datetime) -> RunClosed:
    def count(*states: TableState) -> int:
        return sum(1 for t in tables if t.state in states)

    finished = [t.finished_at for t in tables if t.finished_at is not None]
    return RunClosed(
        run.run_id,
        now,
        state=run.state,
        tables=len(run.tables),
        loaded=count(TableState.SUCCEEDED),
        failed=count(*NOT_LOADED_STATES),
        skipped=count(TableState.SKIPPED_BY_EXPORT),
        export_started_at=run.export_started_at,
        last_load_at=max(finished, default=None),
        snapshot_time=run.snapshot_time,
        failure_cause=run.failure_cause,
    )


# --------------------------------------------------------------------------- re-transfer
#
# A re-transfer starts a new DTS run of a table of a closed (or still transferring) run, from the
# same export. The table is claimed first (STARTING, with no DTS run name: a notification of the
# new run is then accepted by ``table_finished`` whatever its timing), the DTS run is started, and
# the claim is turned into STARTED with the new run's name. ``handed_off_at`` keeps meaning "the
# hand-off's fan-out is over": a reopened run has it set, so ``close_if_done`` closes it again when
# its tables are final, and a poll never fans out a re-transfer's tables.

RETRANSFERABLE = frozenset({TableState.SUCCEEDED, *NOT_LOADED_STATES})


def retransfer_claim_is_stale(table: TableRun, now: datetime, stale_after: timedelta) -> bool:
    """A re-transfer claim whose holder died before recording its DTS run (the claim time is
    ``started_at``). A fan-out's STARTING (no ``started_at``) is never stale here: polls own it."""
    return (
        table.state is TableState.STARTING
        and not table.dts_run
        and table.started_at is not None
        and now - table.started_at >= stale_after
    )


def claim_retransfer(
    table: TableRun, config_name: str, now: datetime, stale_after: timedelta
) -> TableRun | None:
    """Claim a finished table (or an abandoned claim) for a re-transfer; None if it is in flight,
    pending, or was never exported."""
    if table.state not in RETRANSFERABLE and not retransfer_claim_is_stale(table, now, stale_after):
        return None
    return table.with_(
        state=TableState.STARTING,
        dts_config=config_name,
        dts_run="",
        started_at=now,
        finished_at=None,
        reason="re-transfer requested",
        error_code=0,
        error_message="",
    )


def _holds_claim(table: TableRun, claimed_at: datetime) -> bool:
    return table.state is TableState.STARTING and table.started_at == claimed_at


def retransfer_started(
    table: TableRun, claimed_at: datetime, run_name: str, now: datetime
) -> TableRun | None:
    """Record the new DTS run of a claimed table: STARTED, attempts + 1. If the run's notification
    came first (the table is already final with this run), only the attempt is counted."""
    if _holds_claim(table, claimed_at):
        return table_start_recorded(table, run_name, now).with_(finished_at=None)
    if table.dts_run == run_name and table.state.is_final:
        return table.with_(attempts=table.attempts + 1)
    return None


def retransfer_refused(
    table: TableRun, claimed_at: datetime, reason: str, now: datetime
) -> TableRun | None:
    """DTS refused the new run for good: the table is FAILED again, with the reason."""
    if not _holds_claim(table, claimed_at):
        return None
    return table_start_failed(table, reason, now)


def release_retransfer(
    table: TableRun, claimed_at: datetime, previous: TableRun
) -> TableRun | None:
    """Give a claim back (DTS was not reached): the table is as it was before the claim."""
    return previous if _holds_claim(table, claimed_at) else None


def reopen(run: Run, now: datetime) -> Transition:
    """A closed, handed-off run goes back to TRANSFERRING for a re-transfer, so that notify closes
    it again (and posts a new summary) when its tables are final. An open run is left alone."""
    closed_with_tables = (RunState.SUCCEEDED, RunState.PARTIAL, RunState.FAILED)
    if run.state not in closed_with_tables or run.handed_off_at is None:
        return UNCHANGED
    return Transition(run.with_(state=RunState.TRANSFERRING, closed_at=None, updated_at=now))


def cancel_unstarted(run: Run, cause: str, now: datetime) -> Transition:
    """Close a run whose export was never started (a rerun that could not start it now), so that
    no poll starts it later with other parameters. Silent: the caller was told at once."""
    if run.state is not RunState.EXPORT_STARTING:
        return UNCHANGED
    return Transition(
        run.with_(
            state=RunState.CANCELED, failure_cause=_scrub(cause), closed_at=now, updated_at=now
        )
    )

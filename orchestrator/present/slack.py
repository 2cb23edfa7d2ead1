"""Pure: runs, tables and events -> Slack incoming-webhook payloads (Block Kit): the message of
each thing worth saying, and ``SlackMessages``, the ``Messages`` port.

Every payload is ``{"text": fallback, "blocks": [...]}`` and stays inside Slack's limits however
large the run: long lists are cut to their first entries plus an "… and N more" line pointing at
``python -m orchestrator status RUN_ID``, long texts are clipped (``slack_blocks``: escaping,
limits, validation). Times arrive as aware UTC and are shown in the configured zone, with its
name (``formatting``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from orchestrator.core.digest import as_of, digest
from orchestrator.core.events import (
    Event,
    ExportFailed,
    ExportLate,
    ExportStarted,
    HandoffDone,
    RunClosed,
    TableFailed,
    TablesFinished,
    TablesSkipped,
)
from orchestrator.core.model import NOT_LOADED_STATES, Run, RunState, TableRun, TableState
from orchestrator.core.notifications import TransferRunFinished
from orchestrator.present import slack_blocks as kit
from orchestrator.present import slack_trust as trust
from orchestrator.present.formatting import (
    error_code_name,
    exported_size,
    format_duration,
    format_rows,
    format_time,
)
from orchestrator.present.links import table_url, transfer_run_url
from orchestrator.present.slack_blocks import Payload
from orchestrator.present.slack_context import SlackContext
from orchestrator.present.slack_notices import slot_missed, unknown_run

if TYPE_CHECKING:
    from orchestrator.config import Settings

# Our own budgets, chosen so that a message is read, not scrolled.
FAILURES_SHOWN = 20
FAILURES_BUDGET = 6_000  # characters of failure lines in one summary
SKIPPED_SHOWN = 15
SKIPPED_BUDGET = 1_200
UNFINISHED_BUDGET = 800
LINE_MESSAGE_LIMIT = 200  # one failure's message inside a list
SINGLE_MESSAGE_LIMIT = 2_500  # the message of a single table failure or export failure


class SlackMessages:
    """The ``Messages`` port: every message of one deployment, in Block Kit."""

    def __init__(self, settings: Settings) -> None:
        self.ctx = SlackContext.from_settings(settings)

    def for_event(self, event: Event, run: Run, tables: Sequence[TableRun] = ()) -> Payload:
        return for_event(self.ctx, event, run, tables)

    def unknown_run(self, note: TransferRunFinished) -> Payload:
        return unknown_run(self.ctx, note)

    def slot_missed(self, slot: datetime, run_id: str, grace_minutes: int) -> Payload:
        return slot_missed(self.ctx, slot, run_id, grace_minutes)


# --------------------------------------------------------------------------- message kinds


def table_failed(ctx: SlackContext, run: Run, table: TableRun) -> Payload:
    """One table is not loaded, sent at once: FAILED, CANCELLED or EMPTY with DTS's own message
    (for EMPTY, its log line naming the data path that matched nothing); HELD with the schema
    difference and the fix; MISMATCHED with both row counts and what to do."""
    icon = {
        TableState.FAILED: "❌",
        TableState.EMPTY: "📭",
        TableState.HELD: "⏸️",
        TableState.MISMATCHED: "🔢",
    }.get(table.state, "🚫")
    word = {
        TableState.FAILED: "load failed",
        TableState.HELD: "held for a schema change",
        TableState.MISMATCHED: "row count mismatch",
    }.get(table.state, f"load {str(table.state).lower()}")
    duration = (
        table.finished_at - table.started_at if table.started_at and table.finished_at else None
    )
    run_link = transfer_run_url(table.dts_run, ctx.location)
    fields = [
        kit.field("Table", kit.link(table_url(ctx.project, ctx.dataset, table.key), table.key)),
        kit.field("State", kit.escape(str(table.state))),
        kit.field("Run", _run_label(ctx, run)),
        kit.field("DTS run", kit.link(run_link, "open in console") if run_link else "—"),
        kit.field("Data as of", format_time(as_of(run), ctx.timezone)),
        kit.field("Duration", format_duration(duration)),
    ]
    if table.state is TableState.HELD:
        # Held before the hand-off: no DTS run, no duration; the rows say what waits.
        fields[3:] = [
            kit.field("Data as of", format_time(as_of(run), ctx.timezone)),
            kit.field("Exported rows", format_rows(table.export_rows)),
            kit.field("Destination rows now", format_rows(table.previous_rows)),
        ]
        detail = trust.held_detail(ctx, run.run_id, table)
    elif table.state is TableState.MISMATCHED:
        fields += [
            kit.field("Loaded rows", format_rows(table.loaded_rows)),
            kit.field("Exported rows", format_rows(table.export_rows)),
        ]
        detail = trust.mismatch_detail(ctx, run.run_id, table)
    elif table.error_message:
        detail = "*DTS says:*\n" + kit.code_block(table.error_message, SINGLE_MESSAGE_LIMIT)
    else:
        detail = "_DTS gave no error message._"
    if table.error_code:
        detail += f"\n_error code {error_code_name(table.error_code)}_"
    blocks = [
        kit.header_block(f"{icon} {table.key}: {word}"),
        kit.fields_block(fields),
        kit.section_block(detail),
        _context(ctx, run, shown=("run",)),
    ]
    return kit.build_payload(
        f"{ctx.prefix()}{table.key} {table.state} in run {run.run_id}: "
        f"{kit.oneline(table.error_message) or 'no message'}",
        blocks,
    )


def run_summary(
    ctx: SlackContext, run: Run, tables: Sequence[TableRun], failures_shown: int = FAILURES_SHOWN
) -> Payload:
    """One message per closed run, the run's digest (``core.digest``): counts, rows, size and
    cost first; then failures and holds with their messages, what the export skipped, the largest
    loaded tables with their change, and the schema changes applied."""
    reloaded = retransferred(tables)
    if reloaded:
        return _retransfer_summary(ctx, run, tables, reloaded, failures_shown)
    d = digest(run, tables, ctx.prices)
    by_key = {t.key: t for t in tables}
    failed = [by_key[t.key] for t in d.problems if t.state in NOT_LOADED_STATES]
    skipped = [by_key[t.key] for t in d.problems if t.state is TableState.SKIPPED_BY_EXPORT]
    last_load = max((t.finished_at for t in tables if t.finished_at), default=None)
    elapsed = last_load - run.export_started_at if last_load and run.export_started_at else None

    icon = {RunState.SUCCEEDED: "✅", RunState.PARTIAL: "⚠️"}.get(run.state, "❌")
    fields = [
        kit.field("State", f"*{kit.escape(str(run.state))}*"),
        kit.field("Loaded", f"{len(d.loaded)} of {len(tables)}"),
        kit.field("Failed", str(len(failed))),
        kit.field("Skipped by the export", str(len(skipped))),
    ]
    if d.unfinished:
        fields.append(kit.field("Not finished", str(len(d.unfinished))))
    fields.append(kit.field("Export start → last load", format_duration(elapsed)))
    fields += trust.digest_fields(ctx, d)
    blocks: list[dict[str, Any]] = [
        kit.header_block(f"{icon} {_run_title(ctx, run)}: {run.state}"),
        kit.fields_block(fields),
    ]
    more = f"(see `{ctx.status_command(run.run_id)}`)"
    if run.failure_cause:
        blocks.append(kit.section_block("*Why:*\n" + kit.code_block(run.failure_cause, 1_000)))
    if failed:
        lines = [_failure_line(ctx, t) for t in failed]
        blocks += kit.list_sections(
            f"*Failures and holds ({len(failed)})*", lines, failures_shown, FAILURES_BUDGET, more
        )
    if d.unfinished:
        lines = [f"• {kit.escape(t.key)}: {kit.escape(str(t.state))}" for t in d.unfinished]
        blocks += kit.list_sections(
            f"*Not finished when the run closed ({len(d.unfinished)})*",
            lines,
            SKIPPED_SHOWN,
            UNFINISHED_BUDGET,
            more,
        )
    if skipped:
        lines = [_skipped_line(t) for t in skipped]
        blocks += kit.list_sections(
            f"*Skipped by the export ({len(skipped)})*", lines, SKIPPED_SHOWN, SKIPPED_BUDGET, more
        )
    blocks += trust.loaded_sections(d, more)
    blocks += trust.schema_sections(d, more)
    blocks.append(trust.cost_context(d))
    blocks.append(_context(ctx, run))
    text = (
        f"{ctx.prefix()}run {run.run_id} {run.state}: {len(d.loaded)} loaded, "
        f"{len(failed)} failed, {len(skipped)} skipped"
    )
    return kit.build_payload(text, blocks)


def retransferred(tables: Sequence[TableRun]) -> list[TableRun]:
    """The tables a re-transfer loaded again: those on their second DTS run or later (the
    hand-off starts each table's first). A table DTS refused at the hand-off has no first run,
    so its re-transfer counts as one (the ledger keeps no other trace of a reopened run)."""
    return sorted((t for t in tables if t.attempts > 1), key=lambda t: t.key)


def _run_title(ctx: SlackContext, run: Run) -> str:
    """``Run 2026-11-28 00:00 JST``, or for a re-export ``Re-export of run 202611271500``."""
    if run.kind == "rerun":
        of = f" of run {run.parent_run_id}" if run.parent_run_id else ""
        return f"Re-export{of} ({format_time(run.run_time, ctx.timezone)})"
    return f"Run {format_time(run.run_time, ctx.timezone)}"


def _retransfer_summary(
    ctx: SlackContext,
    run: Run,
    tables: Sequence[TableRun],
    reloaded: Sequence[TableRun],
    failures_shown: int,
) -> Payload:
    """A re-transfer closed the run again: which run, what it reloaded and how that went, then
    where the whole run stands now."""
    done = [t for t in reloaded if t.state == TableState.SUCCEEDED]
    still = [t for t in reloaded if t.state != TableState.SUCCEEDED]
    loaded = sum(1 for t in tables if t.state == TableState.SUCCEEDED)
    failed = sum(1 for t in tables if t.state in NOT_LOADED_STATES)
    skipped = sum(1 for t in tables if t.state == TableState.SKIPPED_BY_EXPORT)
    result = "reloaded" if not still else f"{len(done)} of {len(reloaded)} reloaded"
    fields = [
        kit.field("Reran", _run_label(ctx, run)),
        kit.field("From export", f"`{kit.escape(run.export_task_id)}` (no new export)"),
        kit.field("Reloaded", f"{len(done)} of {len(reloaded)}"),
        kit.field("Run now", f"*{kit.escape(str(run.state))}*: {loaded} of {len(tables)} loaded"),
        kit.field("Failed", str(failed)),
        kit.field("Skipped by the export", str(skipped)),
    ]
    lines = [
        f"• *{kit.escape(t.key)}* (attempt {t.attempts}): {kit.escape(str(t.state))}"
        + (
            f": {kit.code_inline(t.error_message or t.reason, LINE_MESSAGE_LIMIT)}"
            if t.state != TableState.SUCCEEDED and (t.error_message or t.reason)
            else ""
        )
        for t in reloaded
    ]
    blocks: list[dict[str, Any]] = [
        kit.header_block(f"🔁 Re-transfer of run {run.run_id}: {result}, run {run.state}"),
        kit.fields_block(fields),
    ]
    blocks += kit.list_sections(
        f"*Reloaded from the same export ({len(reloaded)})*",
        lines,
        failures_shown,
        FAILURES_BUDGET,
        f"(see `{ctx.status_command(run.run_id)}`)",
    )
    # The tables this re-transfer left as they were and that are still not loaded (an empty
    # load whose export holds no file, one not asked for): the run is not whole without them.
    reloaded_keys = {t.key for t in reloaded}
    left = [t for t in tables if t.state in NOT_LOADED_STATES and t.key not in reloaded_keys]
    if left:
        blocks += kit.list_sections(
            f"*Still not loaded, not in this re-transfer ({len(left)})*",
            [_failure_line(ctx, t) for t in left],
            failures_shown,
            FAILURES_BUDGET,
            f"(see `{ctx.status_command(run.run_id)}`)",
        )
    blocks.append(_context(ctx, run, shown=("run", "export")))
    names = ", ".join(t.key for t in reloaded[:3]) + (", …" if len(reloaded) > 3 else "")
    text = (
        f"{ctx.prefix()}re-transfer of run {run.run_id}: {names} {result}; the run is "
        f"{run.state}: {loaded} loaded, {failed} failed, {skipped} skipped"
    )
    return kit.build_payload(text, blocks)


def tables_skipped(ctx: SlackContext, run: Run, skipped: Sequence[TableRun]) -> Payload:
    """The export completed but left tables out; AWS's reason for each."""
    ordered = sorted(skipped, key=lambda t: t.key)
    count = len(ordered)
    intro = (
        "The export completed without these tables, so this run cannot load them. AWS skips "
        "tables with `/` in the name, column names with spaces or `,;{}()=`, rows of about "
        "2 GB, and PostgreSQL temporary or unlogged tables."
    )
    blocks: list[dict[str, Any]] = [
        kit.header_block(f"⚠️ {kit.plural(count, 'table')} skipped by the export"),
        kit.section_block(intro),
    ]
    blocks += kit.list_sections(
        "*Skipped*",
        [_skipped_line(t) for t in ordered],
        30,
        5_000,
        f"(see `{ctx.status_command(run.run_id)}`)",
    )
    blocks.append(_context(ctx, run))
    names = ", ".join(t.key for t in ordered[:5]) + (", …" if count > 5 else "")
    return kit.build_payload(
        f"{ctx.prefix()}{count} table(s) skipped by the export of run {run.run_id}: {names}", blocks
    )


def export_failed(ctx: SlackContext, run: Run) -> Payload:
    """The RDS export ended FAILED or CANCELED: nothing will be loaded for this run."""
    status = run.export_status or "FAILED"
    icon = "🚫" if status == "CANCELED" else "❌"
    # FAILED and CANCELED come from AWS with its FailureCause; NOT_STARTED is our own verdict.
    word = {"FAILED": "failed", "CANCELED": "canceled", "NOT_STARTED": "could not start"}.get(
        status, status.lower()
    )
    label = "*AWS says (FailureCause):*" if status in ("FAILED", "CANCELED") else "*Cause:*"
    fields = [
        kit.field("Export task", f"`{kit.escape(run.export_task_id)}`"),
        kit.field("Status", kit.escape(status)),
        kit.field("Started", format_time(run.export_started_at, ctx.timezone)),
        kit.field("Progress", f"{run.percent}%"),
        kit.field("Source", kit.code_inline(run.source_arn, 300) if run.source_arn else "—"),
        kit.field("Run", _run_label(ctx, run)),
    ]
    cause = (
        f"{label}\n" + kit.code_block(run.failure_cause, SINGLE_MESSAGE_LIMIT)
        if run.failure_cause
        else "_AWS gave no FailureCause._"
    )
    blocks = [
        kit.header_block(f"{icon} Export {word}: no table is loaded for this run"),
        kit.fields_block(fields),
        kit.section_block(cause),
        _context(ctx, run, shown=("run", "export")),
    ]
    return kit.build_payload(
        f"{ctx.prefix()}export {run.export_task_id} {status}: "
        f"{kit.oneline(run.failure_cause) or 'no FailureCause'}",
        blocks,
    )


def export_late(
    ctx: SlackContext, run: Run, now: datetime, deadline_minutes: int | None = None
) -> Payload:
    """The export is still running past its deadline (sent once per run)."""
    elapsed = now - run.export_started_at if run.export_started_at else None
    fields = [
        kit.field("Export task", f"`{kit.escape(run.export_task_id)}`"),
        kit.field("Status", kit.escape(run.export_status or "IN_PROGRESS")),
        kit.field("Progress", f"{run.percent}%"),
        kit.field("Started", format_time(run.export_started_at, ctx.timezone)),
        kit.field("Running for", format_duration(elapsed)),
    ]
    if deadline_minutes:
        fields.append(kit.field("Deadline", format_duration(timedelta(minutes=deadline_minutes))))
    blocks = [
        kit.header_block(f"⏳ Export still running after {format_duration(elapsed)}"),
        kit.fields_block(fields),
        kit.section_block(
            "Nothing is loaded until the export completes; rds2bq keeps polling and starts "
            "the transfers as soon as it does. Large clusters can take hours."
        ),
        _context(ctx, run, shown=("export",)),
    ]
    return kit.build_payload(
        f"{ctx.prefix()}export {run.export_task_id} still running after "
        f"{format_duration(elapsed)} ({run.percent}%)",
        blocks,
    )


def export_started(ctx: SlackContext, run: Run) -> Payload:
    count = len(run.tables)
    fields = [
        kit.field("Export task", f"`{kit.escape(run.export_task_id)}`"),
        kit.field("Tables", str(count)),
        kit.field("Source", kit.code_inline(run.source_arn, 300) if run.source_arn else "—"),
        kit.field("Data as of", format_time(as_of(run), ctx.timezone)),
        kit.field("Kind", kit.escape(run.kind)),
        kit.field("Run", _run_label(ctx, run)),
    ]
    blocks = [
        kit.header_block(f"🚀 Export started: {kit.plural(count, 'table')}"),
        kit.fields_block(fields),
        _context(ctx, run, shown=("run", "export")),
    ]
    return kit.build_payload(
        f"{ctx.prefix()}export {run.export_task_id} started ({count} tables)", blocks
    )


def handoff_done(ctx: SlackContext, run: Run, tables: Sequence[TableRun]) -> Payload:
    """The export completed and the transfers were started (or refused, with DTS's reason)."""
    started = [
        t
        for t in tables
        if t.state in (TableState.STARTED, TableState.STARTING)
        or (t.state.is_final and t.state != TableState.SKIPPED_BY_EXPORT and t.dts_run)
    ]
    refused = sorted(
        (t for t in tables if t.state == TableState.FAILED and not t.dts_run), key=lambda t: t.key
    )
    skipped = [t for t in tables if t.state == TableState.SKIPPED_BY_EXPORT]
    held = [t for t in tables if t.state == TableState.HELD and not t.dts_run]
    export_time = (
        run.export_completed_at - run.export_started_at
        if run.export_completed_at and run.export_started_at
        else None
    )
    fields = [
        kit.field("Transfers started", f"{len(started)} of {len(tables)}"),
        kit.field("Could not start", str(len(refused))),
        kit.field("Skipped by the export", str(len(skipped))),
        *([kit.field("Held (schema change)", str(len(held)))] if held else []),
        kit.field("Export took", format_duration(export_time)),
        kit.field("Exported", exported_size(run, tables)),
        kit.field("Data as of", format_time(as_of(run), ctx.timezone)),
    ]
    blocks: list[dict[str, Any]] = [
        kit.header_block(f"📦 Export complete: {kit.plural(len(started), 'transfer')} started"),
        kit.fields_block(fields),
    ]
    if refused:
        lines = [
            f"• {kit.escape(t.key)}: "
            + kit.code_inline(t.error_message or t.reason, LINE_MESSAGE_LIMIT)
            for t in refused
        ]
        blocks += kit.list_sections(
            f"*Could not start ({len(refused)})*",
            lines,
            FAILURES_SHOWN,
            FAILURES_BUDGET,
            f"(see `{ctx.status_command(run.run_id)}`)",
        )
    blocks.append(_context(ctx, run))
    return kit.build_payload(
        f"{ctx.prefix()}export {run.export_task_id} complete: {len(started)} "
        f"transfers started, {len(refused)} could not start",
        blocks,
    )


def for_event(
    ctx: SlackContext, event: Event, run: Run, tables: Sequence[TableRun] = ()
) -> Payload:
    """The message for one of our events, given the run (and its tables) from the ledger.

    The ledger is the truth for what the run and its tables are now; the event adds what only it
    knows (an export failure's status and cause, the deadline, the skipped tables' reasons, a
    failed table's DTS outcome when the ledger no longer holds that table)."""
    match event:
        case ExportStarted():
            return export_started(ctx, run)
        case ExportFailed(status=status, failure_cause=cause):
            return export_failed(
                ctx,
                run.with_(
                    export_status=status or run.export_status,
                    failure_cause=cause or run.failure_cause,
                ),
            )
        case ExportLate(deadline_minutes=deadline):
            return export_late(ctx, run, event.at, deadline or None)
        case TablesSkipped(tables=listed):
            skipped = [
                TableRun(key=s.table, state=TableState.SKIPPED_BY_EXPORT, reason=s.reason)
                for s in listed
            ] or [t for t in tables if t.state == TableState.SKIPPED_BY_EXPORT]
            return tables_skipped(ctx, run, skipped)
        case HandoffDone():
            return handoff_done(ctx, run, tables)
        case TableFailed():
            return table_failed(ctx, run, _table_of(event, tables))
        case RunClosed():
            return run_summary(ctx, run, tables)
        case TablesFinished():
            raise ValueError("TABLES_FINISHED closes its run: it is never posted")


def _table_of(event: TableFailed, tables: Sequence[TableRun]) -> TableRun:
    """The failed table as the ledger holds it, else as the event tells it."""
    for table in tables:
        if table.key == event.table:
            return table
    return TableRun(
        key=event.table or "(unknown table)",
        state=event.state,
        error_code=event.error_code,
        error_message=event.error_message,
        dts_run=event.dts_run,
        started_at=event.started_at,
        finished_at=event.finished_at,
    )


# --------------------------------------------------------------------------- validation, text


# --------------------------------------------------------------------------- internals


def _context(ctx: SlackContext, run: Run, shown: Sequence[str] = ()) -> dict[str, Any]:
    """The footer: the deployment, what the body has not ``shown`` (``run``, ``export``), and
    the command for the details. Times carry their zone in the body, so it is not repeated."""
    parts = [f"rds2bq *{kit.escape(ctx.env)}*" if ctx.env else "rds2bq"]
    if "run" not in shown:
        parts.append(f"run `{kit.escape(run.run_id)}` ({kit.escape(run.kind)})")
    if "export" not in shown:
        parts.append(f"export `{kit.escape(run.export_task_id)}`")
    parts.append(f"`{ctx.status_command(run.run_id)}`")
    return {"type": "context", "elements": [kit.mrkdwn(" · ".join(parts))]}


def _run_label(ctx: SlackContext, run: Run) -> str:
    return f"`{kit.escape(run.run_id)}` ({format_time(run.run_time, ctx.timezone)})"


def _failure_line(ctx: SlackContext, table: TableRun) -> str:
    # Only the DTS run is linked (where the details are): a second link per line would halve
    # how many failures fit in one message.
    run_link = transfer_run_url(table.dts_run, ctx.location)
    where = f" · {kit.link(run_link, 'DTS run')}" if run_link else ""
    message = table.error_message or table.reason or "no message"
    if table.state is TableState.HELD:
        # The difference; the fix is the held table's own message (and `status`).
        message = table.reason or message
    return (
        f"• *{kit.escape(table.key)}* {kit.escape(str(table.state))}{where}: "
        f"{kit.code_inline(message, LINE_MESSAGE_LIMIT)}"
    )


def _skipped_line(table: TableRun) -> str:
    reason = table.reason or "no reason given"
    return f"• {kit.escape(table.key)}: {kit.code_inline(reason, LINE_MESSAGE_LIMIT)}"

"""Pure: runs, tables and events -> Slack incoming-webhook payloads (Block Kit), and back to text.

Every payload is ``{"text": fallback, "blocks": [...]}`` and stays inside Slack's limits however
large the run: long lists are cut to their first entries plus an "… and N more" line pointing at
``python -m orchestrator status RUN_ID``, long texts are clipped. Text that comes from outside
(DTS and AWS messages, table names, paths) is escaped for mrkdwn so it cannot mention ``@channel``
or forge a link. Times arrive as aware UTC and are shown in the configured zone, with its name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from orchestrator.core.events import (
    Event,
    ExportFailed,
    ExportLate,
    ExportStarted,
    HandoffDone,
    TableFailed,
    TablesSkipped,
)
from orchestrator.core.model import (
    Run,
    RunState,
    TableRun,
    TableState,
    parse_table_ref,
)
from orchestrator.core.notifications import TransferRunFinished

if TYPE_CHECKING:
    from orchestrator.config import Settings

Payload = dict[str, Any]

# Slack's documented limits for messages (Block Kit reference, chat.postMessage).
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_CONTEXT_TEXT = 3000
MAX_FALLBACK_TEXT = 40_000
MAX_BLOCK_ID = 255
# Not documented: Slack has answered msg_blocks_too_long at ~13,000 characters of block text in
# total, far below 50 x 3000. We stay under a round figure with margin.
MAX_TOTAL_BLOCK_TEXT = 12_000

# Our own budgets, chosen so that a message is read, not scrolled.
FALLBACK_LIMIT = 300  # the notification preview; "keep it short"
FAILURES_SHOWN = 20
FAILURES_BUDGET = 8_000  # characters of failure lines in one summary
SKIPPED_SHOWN = 15
SKIPPED_BUDGET = 1_500
LINE_MESSAGE_LIMIT = 200  # one failure's message inside a list
SINGLE_MESSAGE_LIMIT = 2_500  # the message of a single table failure or export failure

CONSOLE = "https://console.cloud.google.com"
# google.rpc.Code: what the numbers in a Google API's error status (DTS's ``errorStatus.code``)
# mean; an operator searches for the name, the number is what the API sent.
RPC_CODES = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}
_BLOCK_TYPES = ("header", "section", "context", "divider")
_RUN_NAME_RE = re.compile(
    r"projects/(?P<project>[^/]+)(?:/locations/(?P<location>[^/]+))?"
    r"/transferConfigs/(?P<config>[^/]+)/runs/(?P<run>[^/]+)"
)
_LINK_RE = re.compile(r"<([^<>|]+)\|([^<>]*)>|<([^<>|]+)>")


@dataclass(frozen=True)
class SlackContext:
    """What every message needs besides its subject: where things live and how to show times."""

    timezone: ZoneInfo
    project: str
    location: str
    dataset: str
    env: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackContext:
        return cls(
            timezone=settings.timezone,
            project=settings.gcp_project,
            location=settings.bq_location,
            dataset=settings.bq_dataset,
            env=settings.env,
        )

    def status_command(self, run_id: str) -> str:
        return f"python -m orchestrator status {run_id}"


class SlackMessages:
    """The ``Messages`` port: every message of one deployment, in Block Kit."""

    def __init__(self, settings: Settings) -> None:
        self.ctx = SlackContext.from_settings(settings)

    def table_failed(self, run: Run, table: TableRun) -> Payload:
        return table_failed(self.ctx, run, table)

    def for_event(self, event: Event, run: Run, tables: Sequence[TableRun] = ()) -> Payload:
        return for_event(self.ctx, event, run, tables)

    def unknown_run(self, note: TransferRunFinished) -> Payload:
        return unknown_run(self.ctx, note)


# --------------------------------------------------------------------------- formatting


def escape(text: str) -> str:
    """Escape the three characters mrkdwn treats as control (links, mentions, entities)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """Cut escaped text to ``limit`` characters with an ellipsis, never inside an entity."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    amp = cut.rfind("&", max(len(cut) - 5, 0))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def format_time(dt: datetime | None, tz: ZoneInfo) -> str:
    """``2026-11-28 00:05 JST``: local time with the zone's abbreviation (or its key)."""
    if dt is None:
        return "—"
    local = dt.astimezone(tz)
    abbrev = local.tzname() or ""
    zone = abbrev if abbrev.isalpha() else str(tz.key)
    return f"{local:%Y-%m-%d %H:%M} {zone}"


def format_duration(delta: timedelta | None) -> str:
    if delta is None:
        return "—"
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "—"
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def error_code_name(code: int) -> str:
    """``INVALID_ARGUMENT (3)``: a DTS error code by its name, with the number to search for."""
    name = RPC_CODES.get(code)
    return f"{name} ({code})" if name else f"code {code}"


def format_size(size_bytes: float) -> str:
    """``3.1 MB``, ``12 GB``: bytes in the largest unit that keeps a number of at least 1."""
    value = float(max(size_bytes, 0))
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" or value >= 100 else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB" if value < 100 else f"{value:.0f} TB"


def exported_size(run: Run, tables: Sequence[TableRun] = ()) -> str:
    """How much the export wrote. RDS reports whole GB (0 for a small export); the tables' own
    sizes (export_tables_info) are finer, so they are used when RDS says less than 1 GB."""
    table_bytes = sum(t.size_bytes for t in tables)
    if run.extracted_gb >= 1 or not table_bytes:
        return format_size(run.extracted_gb * 1e9) if run.extracted_gb else "under 1 GB"
    return format_size(table_bytes)


def transfer_run_url(run_name: str, default_location: str = "") -> str | None:
    """Console page of a DTS run, from ``projects/P/locations/L/transferConfigs/C/runs/R``."""
    match = _RUN_NAME_RE.fullmatch(run_name)
    if match is None:
        return None
    project, location, config, run = match.group("project", "location", "config", "run")
    location = location or default_location or "us"
    path = "/".join(
        quote(p, safe="") for p in ("locations", location, "configs", config, "runs", run)
    )
    return f"{CONSOLE}/bigquery/transfers/{path}?{urlencode({'project': project})}"


def table_url(ctx: SlackContext, table_key: str) -> str:
    """Console page of the destination table in BigQuery."""
    query = {
        "project": ctx.project,
        "p": ctx.project,
        "d": ctx.dataset,
        "t": bq_table_name(table_key),
        "page": "table",
    }
    return f"{CONSOLE}/bigquery?{urlencode(query, quote_via=quote)}"


def bq_table_name(table_key: str) -> str:
    try:
        return parse_table_ref(table_key).bq_table
    except ValueError:
        return table_key.replace(".", "__")


def as_of(run: Run) -> datetime | None:
    """The data's point in time: the snapshot's, or (live cluster) when the export cloned it."""
    return run.snapshot_time or run.export_started_at


# --------------------------------------------------------------------------- message kinds


def table_failed(ctx: SlackContext, run: Run, table: TableRun) -> Payload:
    """One table's load ended FAILED or CANCELLED: sent at once, with DTS's own message."""
    icon = "❌" if table.state == TableState.FAILED else "🚫"
    word = "failed" if table.state == TableState.FAILED else str(table.state).lower()
    duration = (
        table.finished_at - table.started_at if table.started_at and table.finished_at else None
    )
    run_link = transfer_run_url(table.dts_run, ctx.location)
    fields = [
        _field("Table", _link(table_url(ctx, table.key), table.key)),
        _field("State", escape(str(table.state))),
        _field("Run", _run_label(ctx, run)),
        _field("DTS run", _link(run_link, "open in console") if run_link else "—"),
        _field("Data as of", format_time(as_of(run), ctx.timezone)),
        _field("Duration", format_duration(duration)),
    ]
    if table.error_message:
        detail = "*DTS says:*\n" + _code_block(table.error_message, SINGLE_MESSAGE_LIMIT)
    else:
        detail = "_DTS gave no error message._"
    if table.error_code:
        detail += f"\n_error code {error_code_name(table.error_code)}_"
    blocks = [
        _header(f"{icon} {table.key}: load {word}"),
        _fields(fields),
        _section(detail),
        _context(ctx, run, shown=("run",)),
    ]
    return _payload(
        f"{_prefix(ctx)}{table.key} {table.state} in run {run.run_id}: "
        f"{_oneline(table.error_message) or 'no message'}",
        blocks,
    )


def run_summary(
    ctx: SlackContext, run: Run, tables: Sequence[TableRun], failures_shown: int = FAILURES_SHOWN
) -> Payload:
    """One message per closed run: counts, failures first with their messages, then the rest."""
    by_state = _group(tables)
    loaded = len(by_state.get(TableState.SUCCEEDED, []))
    failed = sorted(
        by_state.get(TableState.FAILED, []) + by_state.get(TableState.CANCELLED, []),
        key=lambda t: (t.state != TableState.FAILED, t.key),
    )
    skipped = sorted(by_state.get(TableState.SKIPPED_BY_EXPORT, []), key=lambda t: t.key)
    unfinished = sorted((t for t in tables if not t.state.is_final), key=lambda t: t.key)
    last_load = max((t.finished_at for t in tables if t.finished_at), default=None)
    elapsed = last_load - run.export_started_at if last_load and run.export_started_at else None

    icon = {RunState.SUCCEEDED: "✅", RunState.PARTIAL: "⚠️"}.get(run.state, "❌")
    reloaded = retransferred(tables)
    if reloaded:
        return _retransfer_summary(ctx, run, tables, reloaded, failures_shown)
    fields = [
        _field("State", f"*{escape(str(run.state))}*"),
        _field("Loaded", f"{loaded} of {len(tables)}"),
        _field("Failed", str(len(failed))),
        _field("Skipped by the export", str(len(skipped))),
    ]
    if unfinished:
        fields.append(_field("Not finished", str(len(unfinished))))
    fields += [
        _field("Export start → last load", format_duration(elapsed)),
        _field("Data as of", format_time(as_of(run), ctx.timezone)),
    ]
    blocks: list[dict[str, Any]] = [
        _header(f"{icon} {_run_title(ctx, run)}: {run.state}"),
        _fields(fields),
    ]
    more = f"(see `{ctx.status_command(run.run_id)}`)"
    if run.failure_cause:
        blocks.append(_section("*Why:*\n" + _code_block(run.failure_cause, 1_000)))
    if failed:
        lines = [_failure_line(ctx, t) for t in failed]
        blocks += _list_sections(
            f"*Failures ({len(failed)})*", lines, failures_shown, FAILURES_BUDGET, more
        )
    if unfinished:
        lines = [f"• {escape(t.key)}: {escape(str(t.state))}" for t in unfinished]
        blocks += _list_sections(
            f"*Not finished when the run closed ({len(unfinished)})*",
            lines,
            SKIPPED_SHOWN,
            SKIPPED_BUDGET,
            more,
        )
    if skipped:
        lines = [_skipped_line(t) for t in skipped]
        blocks += _list_sections(
            f"*Skipped by the export ({len(skipped)})*", lines, SKIPPED_SHOWN, SKIPPED_BUDGET, more
        )
    blocks.append(_context(ctx, run))
    text = (
        f"{_prefix(ctx)}run {run.run_id} {run.state}: {loaded} loaded, {len(failed)} failed, "
        f"{len(skipped)} skipped"
    )
    return _payload(text, blocks)


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
    failed = sum(1 for t in tables if t.state in (TableState.FAILED, TableState.CANCELLED))
    skipped = sum(1 for t in tables if t.state == TableState.SKIPPED_BY_EXPORT)
    result = "reloaded" if not still else f"{len(done)} of {len(reloaded)} reloaded"
    fields = [
        _field("Reran", _run_label(ctx, run)),
        _field("From export", f"`{escape(run.export_task_id)}` (no new export)"),
        _field("Reloaded", f"{len(done)} of {len(reloaded)}"),
        _field("Run now", f"*{escape(str(run.state))}*: {loaded} of {len(tables)} loaded"),
        _field("Failed", str(failed)),
        _field("Skipped by the export", str(skipped)),
    ]
    lines = [
        f"• *{escape(t.key)}* (attempt {t.attempts}): {escape(str(t.state))}"
        + (
            f": {_code_inline(t.error_message or t.reason, LINE_MESSAGE_LIMIT)}"
            if t.state != TableState.SUCCEEDED and (t.error_message or t.reason)
            else ""
        )
        for t in reloaded
    ]
    blocks: list[dict[str, Any]] = [
        _header(f"🔁 Re-transfer of run {run.run_id}: {result}, run {run.state}"),
        _fields(fields),
    ]
    blocks += _list_sections(
        f"*Reloaded from the same export ({len(reloaded)})*",
        lines,
        failures_shown,
        FAILURES_BUDGET,
        f"(see `{ctx.status_command(run.run_id)}`)",
    )
    blocks.append(_context(ctx, run, shown=("run", "export")))
    names = ", ".join(t.key for t in reloaded[:3]) + (", …" if len(reloaded) > 3 else "")
    text = (
        f"{_prefix(ctx)}re-transfer of run {run.run_id}: {names} {result}; the run is "
        f"{run.state}: {loaded} loaded, {failed} failed, {skipped} skipped"
    )
    return _payload(text, blocks)


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
        _header(f"⚠️ {_plural(count, 'table')} skipped by the export"),
        _section(intro),
    ]
    blocks += _list_sections(
        "*Skipped*",
        [_skipped_line(t) for t in ordered],
        30,
        5_000,
        f"(see `{ctx.status_command(run.run_id)}`)",
    )
    blocks.append(_context(ctx, run))
    names = ", ".join(t.key for t in ordered[:5]) + (", …" if count > 5 else "")
    return _payload(
        f"{_prefix(ctx)}{count} table(s) skipped by the export of run {run.run_id}: {names}", blocks
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
        _field("Export task", f"`{escape(run.export_task_id)}`"),
        _field("Status", escape(status)),
        _field("Started", format_time(run.export_started_at, ctx.timezone)),
        _field("Progress", f"{run.percent}%"),
        _field("Source", _code_inline(run.source_arn, 300) if run.source_arn else "—"),
        _field("Run", _run_label(ctx, run)),
    ]
    cause = (
        f"{label}\n" + _code_block(run.failure_cause, SINGLE_MESSAGE_LIMIT)
        if run.failure_cause
        else "_AWS gave no FailureCause._"
    )
    blocks = [
        _header(f"{icon} Export {word}: no table is loaded for this run"),
        _fields(fields),
        _section(cause),
        _context(ctx, run, shown=("run", "export")),
    ]
    return _payload(
        f"{_prefix(ctx)}export {run.export_task_id} {status}: "
        f"{_oneline(run.failure_cause) or 'no FailureCause'}",
        blocks,
    )


def export_late(
    ctx: SlackContext, run: Run, now: datetime, deadline_minutes: int | None = None
) -> Payload:
    """The export is still running past its deadline (sent once per run)."""
    elapsed = now - run.export_started_at if run.export_started_at else None
    fields = [
        _field("Export task", f"`{escape(run.export_task_id)}`"),
        _field("Status", escape(run.export_status or "IN_PROGRESS")),
        _field("Progress", f"{run.percent}%"),
        _field("Started", format_time(run.export_started_at, ctx.timezone)),
        _field("Running for", format_duration(elapsed)),
    ]
    if deadline_minutes:
        fields.append(_field("Deadline", format_duration(timedelta(minutes=deadline_minutes))))
    blocks = [
        _header(f"⏳ Export still running after {format_duration(elapsed)}"),
        _fields(fields),
        _section(
            "Nothing is loaded until the export completes; rds2bq keeps polling and starts "
            "the transfers as soon as it does. Large clusters can take hours."
        ),
        _context(ctx, run, shown=("export",)),
    ]
    return _payload(
        f"{_prefix(ctx)}export {run.export_task_id} still running after "
        f"{format_duration(elapsed)} ({run.percent}%)",
        blocks,
    )


def export_started(ctx: SlackContext, run: Run) -> Payload:
    count = len(run.tables)
    fields = [
        _field("Export task", f"`{escape(run.export_task_id)}`"),
        _field("Tables", str(count)),
        _field("Source", _code_inline(run.source_arn, 300) if run.source_arn else "—"),
        _field("Data as of", format_time(as_of(run), ctx.timezone)),
        _field("Kind", escape(run.kind)),
        _field("Run", _run_label(ctx, run)),
    ]
    blocks = [
        _header(f"🚀 Export started: {_plural(count, 'table')}"),
        _fields(fields),
        _context(ctx, run, shown=("run", "export")),
    ]
    return _payload(f"{_prefix(ctx)}export {run.export_task_id} started ({count} tables)", blocks)


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
    export_time = (
        run.export_completed_at - run.export_started_at
        if run.export_completed_at and run.export_started_at
        else None
    )
    fields = [
        _field("Transfers started", f"{len(started)} of {len(tables)}"),
        _field("Could not start", str(len(refused))),
        _field("Skipped by the export", str(len(skipped))),
        _field("Export took", format_duration(export_time)),
        _field("Exported", exported_size(run, tables)),
        _field("Data as of", format_time(as_of(run), ctx.timezone)),
    ]
    blocks: list[dict[str, Any]] = [
        _header(f"📦 Export complete: {_plural(len(started), 'transfer')} started"),
        _fields(fields),
    ]
    if refused:
        lines = [
            f"• {escape(t.key)}: {_code_inline(t.error_message or t.reason, LINE_MESSAGE_LIMIT)}"
            for t in refused
        ]
        blocks += _list_sections(
            f"*Could not start ({len(refused)})*",
            lines,
            FAILURES_SHOWN,
            FAILURES_BUDGET,
            f"(see `{ctx.status_command(run.run_id)}`)",
        )
    blocks.append(_context(ctx, run))
    return _payload(
        f"{_prefix(ctx)}export {run.export_task_id} complete: {len(started)} "
        f"transfers started, {len(refused)} could not start",
        blocks,
    )


def unknown_run(ctx: SlackContext, note: TransferRunFinished) -> Payload:
    """A DTS run-finished notification that matches no run or table in the ledger."""
    run_link = transfer_run_url(note.run_name, ctx.location)
    fields = [
        _field("Transfer config", _code_inline(note.config_id or note.config_name, 300)),
        _field("DTS run", _link(run_link, "open in console") if run_link else "—"),
        _field("State", escape(str(note.state))),
        _field("Run time", format_time(note.run_time, ctx.timezone)),
        _field("Dataset", escape(note.destination_dataset) or "—"),
        _field("Data path", _code_inline(note.data_path, 500) if note.data_path else "—"),
    ]
    blocks: list[dict[str, Any]] = [
        _header("❓ A transfer run finished that rds2bq did not start"),
        _fields(fields),
    ]
    if note.error_message:
        blocks.append(_section("*DTS says:*\n" + _code_block(note.error_message, 1_500)))
    blocks.append(
        _section(
            "rds2bq has no run waiting for this transfer run: it was started by hand (console, "
            "`bq`), by another tool, or its run was removed from the ledger. Nothing was recorded."
        )
    )
    blocks.append(
        {
            "type": "context",
            "elements": [_mrkdwn(_env_label(ctx).removesuffix(" · "))],
        }
    )
    return _payload(
        f"{_prefix(ctx)}a transfer run finished that rds2bq did not start: "
        f"{note.config_id} {note.state}",
        blocks,
    )


def for_event(
    ctx: SlackContext, event: Event, run: Run, tables: Sequence[TableRun] = ()
) -> Payload:
    """The message for one of our events, given the run (and its tables) from the ledger.

    The ledger is the truth for what the run and its tables are now; the event adds what only it
    knows (an export failure's status and cause, the deadline, the skipped tables' reasons, a
    failed table's DTS outcome when the ledger no longer holds that table)."""
    if isinstance(event, ExportStarted):
        return export_started(ctx, run)
    if isinstance(event, ExportFailed):
        return export_failed(
            ctx,
            run.with_(
                export_status=event.status or run.export_status,
                failure_cause=event.failure_cause or run.failure_cause,
            ),
        )
    if isinstance(event, ExportLate):
        return export_late(ctx, run, event.at, event.deadline_minutes or None)
    if isinstance(event, TablesSkipped):
        listed = [
            TableRun(key=s.table, state=TableState.SKIPPED_BY_EXPORT, reason=s.reason)
            for s in event.tables
        ]
        return tables_skipped(
            ctx, run, listed or [t for t in tables if t.state == TableState.SKIPPED_BY_EXPORT]
        )
    if isinstance(event, HandoffDone):
        return handoff_done(ctx, run, tables)
    if isinstance(event, TableFailed):
        return table_failed(ctx, run, _table_of(event, tables))
    return run_summary(ctx, run, tables)


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


def validate_payload(payload: Mapping[str, Any]) -> list[str]:
    """Every way ``payload`` breaks Slack's limits (empty list: it is valid)."""
    problems: list[str] = []
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        problems.append("text: a non-empty fallback text is required")
    elif len(text) > MAX_FALLBACK_TEXT:
        problems.append(f"text: {len(text)} characters > {MAX_FALLBACK_TEXT}")
    blocks = payload.get("blocks", [])
    if not isinstance(blocks, list):
        return [*problems, "blocks: not a list"]
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"blocks: {len(blocks)} blocks > {MAX_BLOCKS}")
    total = 0
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        if not isinstance(block, Mapping):
            problems.append(f"{where}: not an object")
            continue
        kind = block.get("type")
        block_id = block.get("block_id")
        if block_id is not None and (not isinstance(block_id, str) or len(block_id) > MAX_BLOCK_ID):
            problems.append(f"{where}.block_id: longer than {MAX_BLOCK_ID}")
        if kind == "header":
            total += _check_text(
                block.get("text"), f"{where}.text", MAX_HEADER_TEXT, problems, plain_only=True
            )
        elif kind == "section":
            fields = block.get("fields")
            if block.get("text") is None and not fields:
                problems.append(f"{where}: a section needs text or fields")
            if block.get("text") is not None:
                total += _check_text(block["text"], f"{where}.text", MAX_SECTION_TEXT, problems)
            if fields is not None:
                if not isinstance(fields, list) or len(fields) > MAX_FIELDS:
                    problems.append(f"{where}.fields: more than {MAX_FIELDS} fields")
                else:
                    for number, item in enumerate(fields):
                        total += _check_text(
                            item, f"{where}.fields[{number}]", MAX_FIELD_TEXT, problems
                        )
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= MAX_CONTEXT_ELEMENTS:
                problems.append(f"{where}.elements: 1 to {MAX_CONTEXT_ELEMENTS} elements required")
            else:
                for number, item in enumerate(elements):
                    total += _check_text(
                        item, f"{where}.elements[{number}]", MAX_CONTEXT_TEXT, problems
                    )
        elif kind != "divider":
            problems.append(f"{where}: block type {kind!r} is not one of {_BLOCK_TYPES}")
    if total > MAX_TOTAL_BLOCK_TEXT:
        problems.append(
            f"blocks: {total} characters of text in all > {MAX_TOTAL_BLOCK_TEXT} "
            "(Slack answers msg_blocks_too_long)"
        )
    return problems


def render_text(payload: Mapping[str, Any]) -> str:
    """A payload as terminal text: links as ``text (url)``, entities unescaped (for the demo)."""
    lines: list[str] = []
    blocks = payload.get("blocks") or []
    if not blocks:
        return _plain(str(payload.get("text", "")))
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            title = str(block.get("text", {}).get("text", ""))
            lines += [title, "=" * min(len(title) + 2, 78)]
        elif kind == "section":
            if block.get("text"):
                lines.append(_plain(str(block["text"].get("text", ""))))
            for item in block.get("fields") or []:
                label, _, value = _plain(str(item.get("text", ""))).partition("\n")
                lines.append(f"  {label.strip('*')}: {value}" if value else f"  {label}")
        elif kind == "context":
            lines.append(
                "  "
                + " · ".join(_plain(str(e.get("text", ""))) for e in block.get("elements") or [])
            )
        elif kind == "divider":
            lines.append("-" * 40)
    return "\n".join(lines)


# --------------------------------------------------------------------------- internals


def _payload(fallback: str, blocks: list[dict[str, Any]]) -> Payload:
    return {"text": clip(escape(_oneline(fallback)), FALLBACK_LIMIT), "blocks": blocks[:MAX_BLOCKS]}


def _header(text: str) -> dict[str, Any]:
    # plain_text: Slack does not parse markup here, so nothing to escape; only the length matters.
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": _cut(text, MAX_HEADER_TEXT), "emoji": True},
    }


def _section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(_cut(mrkdwn, MAX_SECTION_TEXT))}


def _fields(items: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "section",
        "fields": [_mrkdwn(_cut(item, MAX_FIELD_TEXT)) for item in items[:MAX_FIELDS]],
    }


def _field(label: str, value: str) -> str:
    return f"*{label}*\n{value}"


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _context(ctx: SlackContext, run: Run, shown: Sequence[str] = ()) -> dict[str, Any]:
    """The footer: the deployment, what the body has not ``shown`` (``run``, ``export``), and
    the command for the details. Times carry their zone in the body, so it is not repeated."""
    parts = [f"rds2bq *{escape(ctx.env)}*" if ctx.env else "rds2bq"]
    if "run" not in shown:
        parts.append(f"run `{escape(run.run_id)}` ({escape(run.kind)})")
    if "export" not in shown:
        parts.append(f"export `{escape(run.export_task_id)}`")
    parts.append(f"`{ctx.status_command(run.run_id)}`")
    return {"type": "context", "elements": [_mrkdwn(" · ".join(parts))]}


def _env_label(ctx: SlackContext) -> str:
    return f"rds2bq *{escape(ctx.env)}* · " if ctx.env else "rds2bq · "


def _prefix(ctx: SlackContext) -> str:
    return f"rds2bq {ctx.env}: " if ctx.env else "rds2bq: "


def _run_label(ctx: SlackContext, run: Run) -> str:
    return f"`{escape(run.run_id)}` ({format_time(run.run_time, ctx.timezone)})"


def _link(url: str | None, text: str) -> str:
    # The URL is built by us from percent-encoded parts, so it holds no '<', '>' or '|'.
    return f"<{url}|{escape(text)}>" if url else escape(text)


def _failure_line(ctx: SlackContext, table: TableRun) -> str:
    # Only the DTS run is linked (where the details are): a second link per line would halve
    # how many failures fit in one message.
    run_link = transfer_run_url(table.dts_run, ctx.location)
    where = f" · {_link(run_link, 'DTS run')}" if run_link else ""
    message = table.error_message or table.reason or "no message"
    return (
        f"• *{escape(table.key)}* {escape(str(table.state))}{where}: "
        f"{_code_inline(message, LINE_MESSAGE_LIMIT)}"
    )


def _skipped_line(table: TableRun) -> str:
    reason = table.reason or "no reason given"
    return f"• {escape(table.key)}: {_code_inline(reason, LINE_MESSAGE_LIMIT)}"


def _list_sections(
    title: str, lines: Sequence[str], shown: int, budget: int, more_hint: str
) -> list[dict[str, Any]]:
    """Sections holding ``title`` and the first lines that fit both ``shown`` and ``budget``
    characters, then "… and N more" so a huge run still gives one readable message."""
    kept: list[str] = []
    used = 0
    for line in lines[:shown]:
        if used + len(line) > budget:
            break
        kept.append(line)
        used += len(line) + 1
    rest = len(lines) - len(kept)
    if rest:
        kept.append(f"… and {rest} more {more_hint}")
    sections: list[dict[str, Any]] = []
    current = title
    for line in kept:
        if len(current) + 1 + len(line) > MAX_SECTION_TEXT:
            sections.append(_section(current))
            current = line
        else:
            current = f"{current}\n{line}"
    sections.append(_section(current))
    return sections


def _code_inline(text: str, limit: int) -> str:
    # Inline code stops mrkdwn formatting (*, _, ~) inside vendor text; backticks would end it.
    return "`" + clip(escape(_oneline(text).replace("`", "'")), limit) + "`"


def _code_block(text: str, limit: int) -> str:
    return "```" + clip(escape(text.strip().replace("```", "'''")), limit) + "```"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _oneline(text: str) -> str:
    return " ".join(text.split())


def _cut(text: str, limit: int) -> str:
    """Last-resort length guard on composed text (user parts were clipped before composing)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _group(tables: Iterable[TableRun]) -> dict[TableState, list[TableRun]]:
    groups: dict[TableState, list[TableRun]] = {}
    for table in tables:
        groups.setdefault(table.state, []).append(table)
    return groups


def _check_text(
    obj: object, where: str, limit: int, problems: list[str], plain_only: bool = False
) -> int:
    if not isinstance(obj, Mapping):
        problems.append(f"{where}: not a text object")
        return 0
    kind = obj.get("type")
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if kind not in allowed:
        problems.append(f"{where}.type: {kind!r} is not one of {allowed}")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        problems.append(f"{where}.text: empty")
        return 0
    if len(text) > limit:
        problems.append(f"{where}.text: {len(text)} characters > {limit}")
    return len(text)


def _plain(mrkdwn: str) -> str:
    def link(match: re.Match[str]) -> str:
        url, label, bare = match.group(1), match.group(2), match.group(3)
        return bare if bare else f"{label} ({url})"

    text = _LINK_RE.sub(link, mrkdwn)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def test_message(settings: Settings) -> dict[str, Any]:
    """What ``doctor --send-test`` posts: where the failures and summaries of which tables go."""
    text = (
        f"rds2bq doctor ({settings.env}): test message. Failures and daily summaries for "
        f"{len(settings.tables)} tables into {settings.gcp_project}.{settings.bq_dataset} "
        "arrive here."
    )
    payload = {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }
    problems = validate_payload(payload)
    if problems:  # pragma: no cover - a fixed, short payload
        raise ValueError("; ".join(problems))
    return payload

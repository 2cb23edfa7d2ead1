"""What the data-trust checks add to Slack messages (pure): the detail of a HELD or MISMATCHED
table, and the digest's parts of the run summary (rows, change, schema changes, size, cost), all
from ``core.digest``. ``slack`` composes them into its messages."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from orchestrator.core.digest import Digest
from orchestrator.core.model import TableRun
from orchestrator.present import slack_blocks as kit
from orchestrator.present.formatting import (
    cost_text,
    format_change,
    format_duration,
    format_rows,
    format_size,
    format_time,
)
from orchestrator.present.slack_context import SlackContext

LOADED_SHOWN = 10  # the largest loaded tables listed in a summary; the rest are in `status`
LOADED_BUDGET = 1_200
SCHEMA_SHOWN = 10
SCHEMA_BUDGET = 800
LINE_LIMIT = 200
_COMMAND_RE = re.compile(r"`([^`]+)`")
_FIX = ". Fix: "


# --------------------------------------------------------------------------- one table


def held_detail(ctx: SlackContext, run_id: str, table: TableRun) -> str:
    """A HELD table: the difference, the fix with its command to copy, and that the others go
    on. The preflight wrote ``reason`` ("schema change: a; b") and ``error_message`` (the reason,
    then ". Fix: " and ``core.schema.hold_fix``)."""
    message = table.error_message or table.reason
    reason, _, fix = message.partition(_FIX)
    changes = reason.removeprefix("schema change: ").split("; ")
    lines = [
        "*Held for a schema change.* The export's columns differ from the destination table's:"
    ]
    lines += [f"• {kit.code_inline(c, LINE_LIMIT)}" for c in changes if c.strip()]
    if fix:
        words = _COMMAND_RE.sub("the command below", fix, count=1)
        lines += ["", f"*Fix:* {kit.clip(kit.escape(words), 1_200)}"]
        lines.append(rerun_command(ctx, run_id, table.key))
    lines += ["", "_The run's other tables load as usual; only this one waits._"]
    return "\n".join(lines)


def mismatch_detail(ctx: SlackContext, run_id: str, table: TableRun) -> str:
    """A MISMATCHED table: both numbers, and what to do."""
    lines = [
        "*Row count mismatch.* DTS says the load succeeded, but the destination table holds "
        f"*{format_rows(table.loaded_rows)}* rows and the export wrote "
        f"*{format_rows(table.export_rows)}*."
    ]
    if table.error_message and None in (table.loaded_rows, table.export_rows):
        lines.append(kit.code_block(table.error_message, 500))
    lines += [
        "",
        "*What to do:* rerun the table from the same export (the command below). If it "
        "mismatches again, check the transfer config's `max_bad_records` (rows BigQuery skipped "
        "as bad) and the DTS run's log; a table written to during a live-cluster export can "
        "also differ.",
        rerun_command(ctx, run_id, table.key),
    ]
    return "\n".join(lines)


def rerun_command(ctx: SlackContext, run_id: str, table: str) -> str:
    return kit.code_block(ctx.rerun_command(run_id, table), 300)


# --------------------------------------------------------------------------- the run digest


def digest_fields(ctx: SlackContext, d: Digest) -> list[str]:
    """Rows, size and cost: the summary's fields after its counts."""
    rows = format_rows(d.rows_loaded)
    if d.rows_change is not None:
        rows += f" ({format_change(d.rows_change)} against the previous day)"
    if d.new_tables:
        rows += f", {kit.plural(d.new_tables, 'new table')}"
    basis = f" ({d.as_of_basis})" if d.as_of_basis else ""
    return [
        kit.field("Data as of", format_time(d.as_of, ctx.timezone) + basis),
        kit.field("Rows loaded", rows),
        kit.field("Exported", format_size(d.exported_bytes) if d.exported_bytes else "under 1 GB"),
        kit.field("Estimated cost", cost_text(d.cost)),
    ]


def loaded_sections(d: Digest, more_hint: str) -> list[dict[str, Any]]:
    """The largest loaded tables by rows, each with its change and duration."""
    if not d.loaded:
        return []
    shown = min(LOADED_SHOWN, len(d.loaded))
    title = (
        f"*Loaded ({len(d.loaded)})*"
        if shown == len(d.loaded)
        else f"*Loaded: the {shown} largest of {len(d.loaded)}*"
    )
    return kit.list_sections(
        title, [_loaded_line(t) for t in d.loaded], LOADED_SHOWN, LOADED_BUDGET, more_hint
    )


def schema_sections(d: Digest, more_hint: str) -> list[dict[str, Any]]:
    changed = d.schema_changed
    if not changed:
        return []
    lines = [
        f"• {kit.escape(t.key)}: {kit.code_inline('; '.join(t.schema_changes), LINE_LIMIT)}"
        for t in changed
    ]
    return kit.list_sections(
        f"*Schema changes applied ({len(changed)})*", lines, SCHEMA_SHOWN, SCHEMA_BUDGET, more_hint
    )


def cost_context(d: Digest) -> dict[str, Any]:
    """How the estimate was made, in one line under the summary."""
    return {"type": "context", "elements": [kit.mrkdwn(f"Cost estimate: {d.cost.basis}.")]}


def _loaded_line(t: TableRun) -> str:
    took = format_duration(
        None if t.duration_seconds is None else timedelta(seconds=t.duration_seconds)
    )
    return (
        f"• {kit.escape(t.key)}: {format_rows(t.loaded_rows)} rows "
        f"({format_change(t.change, t.is_new)}) · {took}"
    )

"""Slack messages about what has no run in the ledger: a DTS transfer run rds2bq did not start, a
daily slot whose run never started, and doctor's test message."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from orchestrator.core.notifications import TransferRunFinished
from orchestrator.present import slack_blocks as kit
from orchestrator.present.formatting import format_duration, format_time
from orchestrator.present.links import transfer_run_url
from orchestrator.present.slack_blocks import Payload
from orchestrator.present.slack_context import SlackContext

if TYPE_CHECKING:
    from orchestrator.config import Settings


def unknown_run(ctx: SlackContext, note: TransferRunFinished) -> Payload:
    """A DTS run-finished notification that matches no run or table in the ledger."""
    run_link = transfer_run_url(note.run_name, ctx.location)
    fields = [
        kit.field("Transfer config", kit.code_inline(note.config_id or note.config_name, 300)),
        kit.field("DTS run", kit.link(run_link, "open in console") if run_link else "—"),
        kit.field("State", kit.escape(str(note.state))),
        kit.field("Run time", format_time(note.run_time, ctx.timezone)),
        kit.field("Dataset", kit.escape(note.destination_dataset) or "—"),
        kit.field("Data path", kit.code_inline(note.data_path, 500) if note.data_path else "—"),
    ]
    blocks: list[dict[str, Any]] = [
        kit.header_block("❓ A transfer run finished that rds2bq did not start"),
        kit.fields_block(fields),
    ]
    if note.error_message:
        blocks.append(
            kit.section_block("*DTS says:*\n" + kit.code_block(note.error_message, 1_500))
        )
    blocks.append(
        kit.section_block(
            "rds2bq has no run waiting for this transfer run: it was started by hand (console, "
            "`bq`), by another tool, or its run was removed from the ledger. Nothing was recorded."
        )
    )
    blocks.append(
        {
            "type": "context",
            "elements": [kit.mrkdwn(ctx.env_label().removesuffix(" · "))],
        }
    )
    return kit.build_payload(
        f"{ctx.prefix()}a transfer run finished that rds2bq did not start: "
        f"{note.config_id} {note.state}",
        blocks,
    )


def slot_missed(ctx: SlackContext, slot: datetime, run_id: str, grace_minutes: int) -> Payload:
    """The daily slot passed its grace period and its run never started: the scheduler's call did
    not reach start_export (job paused or deleted, its account or the function broken)."""
    when = format_time(slot, ctx.timezone)
    fields = [
        kit.field("Slot", f"{when} ({slot:%Y-%m-%d %H:%M} UTC)"),
        kit.field("Run", kit.escape(run_id)),
        kit.field("Waited", format_duration(timedelta(minutes=grace_minutes))),
    ]
    blocks: list[dict[str, Any]] = [
        kit.header_block(f"⏰ No daily run for {when}"),
        kit.fields_block(fields),
        kit.section_block(
            "Cloud Scheduler's daily call never reached start_export: check the job "
            "(paused? its service account's `roles/run.invoker`?) and start_export's logs. "
            "To run the day now: "
            + kit.code_inline(f"python -m orchestrator start --slot {slot:%Y-%m-%dT%H:%M:%SZ}", 200)
        ),
        {"type": "context", "elements": [kit.mrkdwn(ctx.env_label().removesuffix(" · "))]},
    ]
    return kit.build_payload(
        f"{ctx.prefix()}no daily run for {when}: the scheduler's call never came", blocks
    )


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
    problems = kit.validate_payload(payload)
    if problems:  # pragma: no cover - a fixed, short payload
        raise ValueError("; ".join(problems))
    return payload

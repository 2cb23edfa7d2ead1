"""Text for people at a terminal: status tables, the export progress bar, rerun and doctor results.

Pure functions of the views the services return (``status.run_view`` and friends, RerunResult,
CheckResult). Times are shown in the configured time zone; the JSON forms stay UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from orchestrator.app.doctor import CheckResult, Outcome
from orchestrator.app.rerun_request import Mode, RerunResult
from orchestrator.present.formatting import (
    format_change,
    format_duration,
    format_rows,
    format_size,
    format_time,
    format_usd,
    short_time,
)

BAR_WIDTH = 30
_ERROR_WIDTH = 70


def duration(seconds: int | None) -> str:
    return format_duration(None if seconds is None else timedelta(seconds=seconds))


def progress_bar(percent: int, width: int = BAR_WIDTH) -> str:
    percent = max(0, min(100, percent))
    filled = round(width * percent / 100)
    return "[" + "#" * filled + "-" * (width - filled) + f"] {percent:3d}%"


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _counts_text(counts: Mapping[str, int]) -> str:
    parts = [f"{counts['loaded']} loaded"]
    for key in ("failed", "skipped", "running", "waiting"):
        if counts.get(key):
            parts.append(f"{counts[key]} {key}")
    return f"{counts['tables']} tables: " + ", ".join(parts)


def status_text(view: Mapping[str, Any], tz: ZoneInfo) -> str:
    """One run: header, export, tables (failures first), with errors and timings."""
    export = view["export"]
    kind = view["kind"] + (f" of {view['parent_run_id']}" if view["parent_run_id"] else "")
    lines = [
        f"Run {view['run_id']} ({kind})  {view['state']}",
        f"  run time  {format_time(view['run_time'], tz)}  ({view['run_time']:%Y-%m-%d %H:%M} UTC)",
    ]
    status = export["status"] or "not started"
    extracted = f"  {export['extracted_gb']:g} GB" if export["extracted_gb"] else ""
    late = "  LATE" if export["late"] else ""
    lines.append(
        f"  export    {export['task_id']}  {status}  {progress_bar(export['percent'])}"
        f"{extracted}  {duration(export['seconds'])}{late}"
    )
    digest = view["digest"]
    if export["source_arn"]:
        as_of = (
            f", data as of {format_time(digest['as_of'], tz)} ({digest['as_of_basis']})"
            if digest["as_of"]
            else ""
        )
        lines.append(f"  source    {export['source_arn']}{as_of}")
    if view["failure_cause"]:
        lines.append(f"  cause     {_cut(view['failure_cause'], 200)}")
    closed = f", closed {format_time(view['closed_at'], tz)}" if view["closed_at"] else ""
    lines.append(f"  tables    {_counts_text(view['counts'])}{closed}")
    tables = view["tables"]
    if tables:
        lines += _digest_lines(digest)
        width = max(5, *(len(t["table"]) for t in tables))
        lines += [
            "",
            f"  {'TABLE':<{width}}  {'STATE':<17} {'TRY':>3}  {'STARTED':<14}  {'TOOK':>8}  "
            f"{'ROWS':>13}  {'EXPORTED':>13}  {'CHANGE':>10}  ERROR / SCHEMA",
        ]
        for t in tables:
            new = t["loaded_rows"] is not None and t["previous_rows"] is None
            note = t["error"] or "; ".join(t["schema_changes"])
            lines.append(
                f"  {t['table']:<{width}}  {t['state']:<17} {t['attempts']:>3}  "
                f"{short_time(t['started_at'], tz):<14}  {duration(t['seconds']):>8}  "
                f"{format_rows(t['loaded_rows']):>13}  {format_rows(t['export_rows']):>13}  "
                f"{format_change(t['change'], new):>10}  {_cut(note, _ERROR_WIDTH)}".rstrip()
            )
    elif view["counts"]["tables"]:
        lines += ["", "  (no table records yet: they appear when the export completes)"]
    return "\n".join(lines)


def _digest_lines(digest: Mapping[str, Any]) -> list[str]:
    """The digest's totals (``status.digest_view``): rows, change, schema, size and cost."""
    rows = f"{format_rows(digest['rows_loaded'])} loaded"
    if digest["rows_change"] is not None:
        rows += f", {format_change(digest['rows_change'])} against the previous day"
    if digest["new_tables"]:
        rows += f", {digest['new_tables']} new table(s)"
    if digest["schema_changed_tables"]:
        rows += f", {digest['schema_changed_tables']} table(s) with schema changes"
    cost = digest["cost"]
    return [
        f"  rows      {rows}",
        f"  cost      ~{format_usd(cost['total'])} estimated: export {format_usd(cost['export'])}"
        f" + egress {format_usd(cost['egress'])} for {format_size(digest['exported_bytes'])}"
        f" exported ({cost['export_per_gb']:g} + {cost['egress_per_gb']:g} USD/GB; the export"
        " is billed on the whole snapshot or cluster, so this is a floor)",
    ]


def recent_text(view: Mapping[str, Any], tz: ZoneInfo) -> str:
    runs = view["runs"]
    if not runs:
        return "No runs in the ledger yet."
    lines = [f"{'RUN':<12}  {'KIND':<6}  {'STATE':<15}  {'RUN TIME':<20}  TABLES"]
    for r in runs:
        counts = r["counts"]
        progress = (
            f"export {r['percent']}%" if r["state"] in ("EXPORT_STARTING", "EXPORTING") else ""
        )
        lines.append(
            f"{r['run_id']:<12}  {r['kind']:<6}  {r['state']:<15}  "
            f"{format_time(r['run_time'], tz):<20}  " + (progress or _counts_text(counts))
        )
    lines.append("")
    lines.append("Details: python -m orchestrator status RUN_ID")
    return "\n".join(lines)


def watch_line(view: Mapping[str, Any]) -> str:
    """One line of ``status --watch``: the progress bar while exporting, then the tables."""
    export = view["export"]
    state = view["state"]
    if state in ("EXPORT_STARTING", "EXPORTING"):
        gb = f"  {export['extracted_gb']:g} GB" if export["extracted_gb"] else ""
        return (
            f"{view['run_id']}  {state:<15} {progress_bar(export['percent'])}{gb}  "
            f"{duration(export['seconds'])}"
        )
    counts = view["counts"]
    done = counts["loaded"] + counts["failed"] + counts["skipped"]
    return f"{view['run_id']}  {state:<15} {done}/{counts['tables']} tables done  " + (
        _counts_text(counts)
    )


def rerun_text(result: RerunResult, tz: ZoneInfo) -> str:
    head = "DRY RUN (nothing changed): " if result.dry_run else ""
    what = "re-transfer" if result.mode is Mode.TRANSFER else "re-export"
    lines = [f"{head}{what}: {result.message}"]
    if result.source_arn and result.mode is Mode.EXPORT:
        as_of = (
            f"data as of {format_time(result.snapshot_time, tz)}"
            if result.snapshot_time
            else "live cluster: data as of the export's start"
        )
        lines.append(f"  source {result.source_arn} ({as_of})")
    if result.tables:
        width = max(5, *(len(t.table) for t in result.tables))
        for t in result.tables:
            extra = t.dts_run or t.detail
            lines.append(f"  {t.table:<{width}}  {t.action:<14} {_cut(extra, 90)}".rstrip())
    lines += [f"  note: {n}" for n in result.notes]
    if not result.dry_run and result.run_id and (result.started or result.repeated):
        lines.append(f"Follow it: python -m orchestrator status {result.run_id} --watch")
    return "\n".join(lines)


_MARK = {Outcome.PASS: "PASS", Outcome.WARN: "WARN", Outcome.FAIL: "FAIL"}


def check_text(result: CheckResult, width: int = 18) -> str:
    lines = [f"  {_MARK[result.outcome]}  {result.name:<{width}} {result.detail}"]
    if result.fix and result.outcome is not Outcome.PASS:
        lines.append(f"        {'':<{width}} fix: {result.fix}")
    return "\n".join(lines)


def doctor_summary(results: Sequence[CheckResult]) -> str:
    fails = sum(1 for r in results if r.outcome is Outcome.FAIL)
    warns = sum(1 for r in results if r.outcome is Outcome.WARN)
    if fails:
        return f"{fails} check(s) failed, {warns} warning(s): fix the failures before deploying."
    if warns:
        return f"All checks passed, {warns} warning(s)."
    return f"All {len(results)} checks passed."


def poll_action_text(entry: Mapping[str, Any]) -> str:
    """What one poll did to one run, in words (the JSON keeps the action's name)."""
    action = str(entry.get("action", ""))
    percent = entry.get("percent", 0)
    error = _cut(str(entry.get("error", "")), 200)
    words = {
        "export-started": "export started",
        "export-starting": "RDS is starting the export",
        "export-in_progress": f"the export is in progress, {percent}% done",
        "export-complete": "the export is complete",
        "export-failed": "the export failed",
        "export-canceled": "the export was canceled",
        "export-canceling": "the export is being canceled",
        "export-missing": "RDS has no export task for this run",
        "handed-off": f"handed off: {entry.get('started', 0)} transfer run(s) started",
        "handoff-held-elsewhere": "another poll is handing this run off",
        "handoff-incomplete": "hand-off not finished: the next poll resumes it",
        "waiting": "nothing to do yet",
        "reconciled": (
            f"asked DTS about {entry.get('looked_up', 0)} silent transfer run(s), "
            f"{entry.get('settled', 0)} settled"
        ),
        "events-published": f"published {entry.get('events', 0)} pending event(s)",
        "retry-later": f"could not advance it, the next poll tries again: {error}",
        "failed": f"failed: {error}",
    }
    return words.get(action, action)


def poll_text(report: Mapping[str, Any]) -> str:
    runs = report["runs"]
    if not runs:
        return "No open run: nothing to do."
    return "\n".join(
        f"{entry['run_id']}  {entry['state']:<15} {poll_action_text(entry)}" for entry in runs
    )

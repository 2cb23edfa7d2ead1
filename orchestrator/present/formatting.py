"""Times, durations, sizes and error codes for people, one home (Slack and the terminal alike).

Stored times are aware UTC (``core.timestamps``); here they are shown in the configured zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from orchestrator.core.digest import Cost, exported_bytes
from orchestrator.core.model import Run, TableRun

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


def format_size(size_bytes: float) -> str:
    """``3.1 MB``, ``12 GB``: bytes in the largest unit that keeps a number of at least 1."""
    value = float(max(size_bytes, 0))
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" or value >= 100 else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB" if value < 100 else f"{value:.0f} TB"


def exported_size(run: Run, tables: Sequence[TableRun] = ()) -> str:
    """How much the export wrote (``core.digest.exported_bytes``)."""
    size = exported_bytes(run, tables)
    return format_size(size) if size else "under 1 GB"


def format_rows(rows: int | None) -> str:
    return "—" if rows is None else f"{rows:,}"


def format_change(change: int | None, new: bool = False) -> str:
    """``+1,204``, ``-3``, ``0``; ``new`` for a table with no previous count; ``—`` unknown."""
    if change is None:
        return "new" if new else "—"
    return f"{change:+,}" if change else "0"


def format_usd(amount: float) -> str:
    return f"{amount:,.2f} USD" if amount >= 0.01 or amount == 0 else f"{amount:.4f} USD"


def cost_text(cost: Cost) -> str:
    """``~1.20 USD (export 0.12 + egress 1.08)``: the estimate, its parts."""
    return (
        f"~{format_usd(cost.total_usd)} (export {format_usd(cost.export_usd)} + "
        f"egress {format_usd(cost.egress_usd)})"
    )


def error_code_name(code: int) -> str:
    """``INVALID_ARGUMENT (3)``: a DTS error code by its name, with the number to search for."""
    name = RPC_CODES.get(code)
    return f"{name} ({code})" if name else f"code {code}"


def short_time(dt: datetime | None, tz: ZoneInfo) -> str:
    return "—" if dt is None else f"{dt.astimezone(tz):%m-%d %H:%M:%S}"

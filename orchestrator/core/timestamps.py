"""Times, one home: aware UTC everywhere inside, RFC 3339 on every wire, the range we accept.

Everything stored and templated is UTC; only what people see is in the configured time zone.
Pure standard library.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

# The times an outside caller or message may name. Anything before is no run of ours; near
# datetime's own limits, showing a time in the configured zone (or converting an offset time to
# UTC) overflows. Checked where times enter: HTTP decoding and message parsing.
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9000, 1, 1, tzinfo=UTC)


def utc(dt: datetime) -> datetime:
    """Aware UTC datetime; naive input is refused rather than guessed."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime: a time zone is required")
    return dt.astimezone(UTC)


def floor_minute(dt: datetime) -> datetime:
    return utc(dt).replace(second=0, microsecond=0)


def now_utc() -> datetime:
    return datetime.now(UTC)


_TIMESTAMP_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def format_timestamp(dt: datetime) -> str:
    """RFC 3339 in UTC with a Z, microseconds when present."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime: a time zone is required")
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_timestamp(text: str) -> datetime:
    """RFC 3339 (as protobuf JSON writes it, up to nanoseconds) -> aware UTC. ValueError if not."""
    match = _TIMESTAMP_RE.fullmatch(text) if len(text) <= 40 else None
    if match is None:
        raise ValueError("not an RFC 3339 timestamp with a time zone")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))  # nanoseconds are truncated to micros
    if zone in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    value = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tzinfo=tz
    )
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00: past datetime's range in UTC
        raise ValueError("not a time datetime can hold in UTC") from None


def parse_wire_time(text: str) -> datetime:
    """``parse_timestamp`` of a time an outside message names, inside the range we accept
    (``EARLIEST_TIME`` to ``LATEST_TIME``). ValueError with a short reason if not."""
    try:
        moment = parse_timestamp(text)
    except (ValueError, OverflowError):
        raise ValueError("is not an RFC 3339 timestamp") from None
    if not EARLIEST_TIME <= moment < LATEST_TIME:
        raise ValueError(f"is out of range ({EARLIEST_TIME.year} to {LATEST_TIME.year - 1})")
    return moment

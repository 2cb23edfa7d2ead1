"""What a run announces: one frozen dataclass per ``EventKind``, and their JSON (one home).

The machine builds these, the outbox stores their JSON with the state change, the Pub/Sub adapter
publishes that JSON as the message data, notify parses it back and Slack renders the typed fields.
Times are aware datetimes here and RFC 3339 UTC text in JSON (``core.timestamps``).

An event's JSON is ``{"kind", "runId", "at", "data": {field: value}}``: the shape published on the
notification topic since the first version (``runId``, ``at``, ``data`` with the same snake_case
field names), plus ``kind`` so that the text alone says what it is (the outbox keeps no
attributes). Messages published before ``kind`` was added carry it only in their ``rds2bqEvent``
attribute: ``from_json`` takes it from the caller then.

``from_json`` refuses what it cannot trust with ``MalformedMessageError`` (a ``BadRequestError``:
logged and acknowledged, never retried). A field missing from ``data`` takes its default (an
older producer may not have written it); a field of the wrong type is refused; fields it does not
know are ignored (a newer producer may add some mid-deploy).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, get_type_hints

from orchestrator.core import jsontext
from orchestrator.core.errors import MalformedMessageError
from orchestrator.core.keys import run_time_of
from orchestrator.core.model import EventKind, RunState, TableState
from orchestrator.core.timestamps import format_timestamp, parse_wire_time

# An event's Pub/Sub message: its data is ``to_json``, its attributes these two (the Pub/Sub adapter
# writes them, ``core.notifications`` reads them; here so that a path that only publishes needs
# no parser).
EVENT_ATTRIBUTE = "rds2bqEvent"
RUN_ID_ATTRIBUTE = "runId"  # duplicated from the data so subscriptions and logs can filter on it
# The largest message data notify decodes (DTS messages are a few KB; anything this large is not
# one of ours): refused on arrival, before decoding, and by the publisher before sending.
MAX_DATA_BYTES = 1_000_000


@dataclass(frozen=True)
class _Event:
    """Fields every event has: the run it is about and when it happened (aware UTC)."""

    kind: ClassVar[EventKind]
    run_id: str
    at: datetime


@dataclass(frozen=True)
class ExportStarted(_Event):
    kind: ClassVar[EventKind] = EventKind.EXPORT_STARTED
    export_task_id: str = ""
    source_arn: str = ""
    snapshot_time: datetime | None = None  # None: a live cluster (as of the export's start)
    tables: int = 0


@dataclass(frozen=True)
class ExportFailed(_Event):
    """The export ended FAILED or CANCELED (AWS's FailureCause), or could not start
    (``status`` NOT_STARTED, our own cause)."""

    kind: ClassVar[EventKind] = EventKind.EXPORT_FAILED
    export_task_id: str = ""
    status: str = ""  # FAILED | CANCELED | NOT_STARTED
    failure_cause: str = ""
    percent: int = 0


@dataclass(frozen=True)
class ExportLate(_Event):
    kind: ClassVar[EventKind] = EventKind.EXPORT_LATE
    export_task_id: str = ""
    percent: int = 0
    running_minutes: int = 0
    deadline_minutes: int = 0


@dataclass(frozen=True)
class SkippedTable:
    """A table the export left out, with AWS's reason (or ours)."""

    table: str
    reason: str = ""


@dataclass(frozen=True)
class TablesSkipped(_Event):
    kind: ClassVar[EventKind] = EventKind.TABLES_SKIPPED
    tables: tuple[SkippedTable, ...] = ()
    warning: str = ""


@dataclass(frozen=True)
class HandoffDone(_Event):
    kind: ClassVar[EventKind] = EventKind.HANDOFF_DONE
    started: int = 0
    failed_to_start: int = 0
    skipped: int = 0
    held: int = 0  # held by the preflight for a schema change (each one also a TableFailed)


@dataclass(frozen=True)
class TableFailed(_Event):
    """A table's load ended FAILED, CANCELLED or EMPTY (DTS said SUCCEEDED, its logs that it
    loaded nothing), or DTS refused to start it."""

    kind: ClassVar[EventKind] = EventKind.TABLE_FAILED
    table: str
    state: TableState = TableState.FAILED
    error_code: int = 0
    error_message: str = ""
    dts_run: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class TablesFinished(_Event):
    """Every table of the run is final (notify counted none left): the run can be closed."""

    kind: ClassVar[EventKind] = EventKind.TABLES_FINISHED


@dataclass(frozen=True)
class RunClosed(_Event):
    """The run's final state and counts (its Slack summary reads the ledger for the rest)."""

    kind: ClassVar[EventKind] = EventKind.RUN_CLOSED
    state: RunState
    tables: int = 0
    loaded: int = 0
    failed: int = 0
    skipped: int = 0
    export_started_at: datetime | None = None
    last_load_at: datetime | None = None
    snapshot_time: datetime | None = None
    failure_cause: str = ""


Event = (
    ExportStarted
    | ExportFailed
    | ExportLate
    | TablesSkipped
    | HandoffDone
    | TableFailed
    | TablesFinished
    | RunClosed
)
EVENT_TYPES: dict[EventKind, type[Event]] = {
    cls.kind: cls
    for cls in (
        ExportStarted,
        ExportFailed,
        ExportLate,
        TablesSkipped,
        HandoffDone,
        TableFailed,
        TablesFinished,
        RunClosed,
    )
}


# --------------------------------------------------------------------------- encoding


def to_json(event: Event) -> str:
    """The event's JSON text (compact, UTF-8 as is). ``from_json`` turns it back into ``event``.

    Raises ValueError for what ``from_json`` would refuse: a malformed run id, a naive time.
    """
    run_time_of(event.run_id)  # ValueError naming the expected shape
    body = {
        "kind": event.kind.value,
        "runId": event.run_id,
        "at": format_timestamp(event.at),
        "data": payload(event),
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def payload(event: Event) -> dict[str, Any]:
    """The event's own fields as JSON values: its ``data`` object."""
    return {
        f.name: _encode(getattr(event, f.name))
        for f in dataclasses.fields(event)
        if f.name not in ("run_id", "at")
    }


def _encode(value: object) -> object:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, tuple):
        return [_encode(item) for item in value]
    if isinstance(value, SkippedTable):
        return {"table": value.table, "reason": value.reason}
    return value


# --------------------------------------------------------------------------- decoding


def from_json(text: str, kind: str | None = None) -> Event:
    """Parse an event's JSON. ``kind`` is the ``rds2bqEvent`` attribute of a message published
    before the JSON carried its kind; when both are present they must agree.

    Raises only ``MalformedMessageError`` (its reason never quotes the text)."""
    try:
        body = jsontext.loads(text)
    except jsontext.JsonSyntaxError:
        raise MalformedMessageError("data is not JSON") from None
    except jsontext.JsonTextError as exc:
        raise MalformedMessageError(f"data is not JSON we accept: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedMessageError("data is not a JSON object")
    cls = EVENT_TYPES[_kind(body.get("kind"), kind)]
    run_id = body.get("runId")
    if not isinstance(run_id, str) or not run_id:
        raise MalformedMessageError("missing 'runId'" if not run_id else "'runId' is not text")
    try:
        run_time_of(run_id)
    except ValueError:
        raise MalformedMessageError("'runId' is not YYYYMMDDHHMM[SS]") from None
    at = _time(body.get("at"), "at")
    if at is None:
        raise MalformedMessageError("missing 'at'")
    data = body.get("data", {})
    if not isinstance(data, dict):
        raise MalformedMessageError("'data' is not an object")
    values: dict[str, Any] = {}
    decoders, required = _fields_of(cls)
    for name, decode in decoders.items():
        if name in data:
            values[name] = decode(data[name], name)
        elif name in required:
            raise MalformedMessageError(f"{cls.kind.value} without '{name}'")
    return cls(run_id=run_id, at=at, **values)


def _kind(in_body: object, in_attribute: str | None) -> EventKind:
    if in_body is not None and not isinstance(in_body, str):
        raise MalformedMessageError("'kind' is not text")
    names = [k for k in (in_body, in_attribute) if k is not None]
    if not names:
        raise MalformedMessageError("no event kind (neither 'kind' nor the attribute)")
    if len(names) == 2 and names[0] != names[1]:
        raise MalformedMessageError(f"'kind' {_clip(names[0])} differs from the attribute")
    try:
        return EventKind(names[0])
    except ValueError:
        raise MalformedMessageError(f"unknown event kind {_clip(names[0])}") from None


Decoder = Any  # (value, field name) -> the field's value


_FIELDS: dict[EventKind, tuple[dict[str, Decoder], frozenset[str]]] = {}


def _fields_of(cls: type[Event]) -> tuple[dict[str, Decoder], frozenset[str]]:
    """Each field's decoder (by its annotation), and the fields without a default. Worked out on
    first use, not at import: only notify decodes events (cold start)."""
    if cls.kind not in _FIELDS:
        _FIELDS[cls.kind] = _work_out_fields(cls)
    return _FIELDS[cls.kind]


def _work_out_fields(cls: type[Event]) -> tuple[dict[str, Decoder], frozenset[str]]:
    hints = get_type_hints(cls)
    own = [f for f in dataclasses.fields(cls) if f.name not in ("run_id", "at")]
    decoders = {f.name: _decoder_for(hints[f.name]) for f in own}
    return decoders, frozenset(f.name for f in own if f.default is dataclasses.MISSING)


def _decoder_for(hint: object) -> Decoder:
    if hint is str:
        return _text
    if hint is int:
        return _int
    if hint == datetime | None:
        return _time
    if hint == tuple[SkippedTable, ...]:
        return _skipped
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return lambda value, name: _enum(hint, value, name)
    raise TypeError(f"no JSON decoder for {hint!r}")  # pragma: no cover - a new field's type


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise MalformedMessageError(f"'{name}' is not text")
    return value


def _int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedMessageError(f"'{name}' is not an integer")
    return value


def _time(value: object, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedMessageError(f"'{name}' is not a timestamp")
    try:
        return parse_wire_time(value)
    except ValueError as exc:
        raise MalformedMessageError(f"'{name}' {exc}") from None


def _enum(cls: type[StrEnum], value: object, name: str) -> StrEnum:
    try:
        return cls(_text(value, name))
    except ValueError:
        raise MalformedMessageError(f"'{name}' {_clip(value)} is not a {cls.__name__}") from None


def _skipped(value: object, name: str) -> tuple[SkippedTable, ...]:
    if not isinstance(value, list):
        raise MalformedMessageError(f"'{name}' is not a list")
    found = []
    for item in value:
        if not isinstance(item, dict):
            raise MalformedMessageError(f"'{name}' holds something other than objects")
        found.append(
            SkippedTable(_text(item.get("table"), "table"), _text(item.get("reason", ""), "reason"))
        )
    return tuple(found)


def _clip(value: object, limit: int = 64) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"

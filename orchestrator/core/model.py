"""Pure data: tables, states, runs, table runs, export observations, event kinds.

Everything stored or templated is UTC. A run is identified by its run time (UTC, second
resolution); its id and its export task id are derived from it (``core.keys``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Only for Transition's annotation: events.py builds on this module's states and kinds.
    from orchestrator.core.events import Event

_NAME_RE = re.compile(r"^[A-Za-z0-9$_]+$")


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True, order=True)
class TableRef:
    """A configured table: ``db.table`` (MySQL family) or ``db.schema.table`` (PostgreSQL)."""

    database: str
    schema: str | None
    name: str

    @property
    def engine(self) -> str:
        return "postgres" if self.schema is not None else "mysql"

    @property
    def key(self) -> str:
        """The table as written in the tables file and in ``ExportOnly``."""
        parts = [self.database] + ([self.schema] if self.schema else []) + [self.name]
        return ".".join(parts)

    @property
    def export_only(self) -> str:
        return self.key

    @property
    def export_dir(self) -> str:
        """The table's folder under an export: ``db/db.table`` or ``db/schema.table``."""
        return f"{self.database}/{self.schema or self.database}.{self.name}"

    @property
    def export_targets(self) -> frozenset[str]:
        """Names ``export_tables_info`` may use for it (``db.schema.table``; MySQL: schema=db)."""
        return frozenset({f"{self.database}.{self.schema or self.database}.{self.name}", self.key})

    @property
    def bq_table(self) -> str:
        """Destination table id in BigQuery: the key with dots as double underscores."""
        return self.key.replace(".", "__").replace("$", "_")


def parse_table_ref(text: str) -> TableRef:
    parts = text.strip().split(".")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"{text!r} is not db.table or db.schema.table")
    for part in parts:
        if not _NAME_RE.match(part):
            raise ValueError(
                f"{text!r}: {part!r} has characters outside A-Z 0-9 $ _, which RDS "
                "cannot export partially"
            )
    if len(parts) == 2:
        return TableRef(parts[0], None, parts[1])
    return TableRef(parts[0], parts[1], parts[2])


# --------------------------------------------------------------------------- states


class RunState(StrEnum):
    EXPORT_STARTING = "EXPORT_STARTING"
    EXPORTING = "EXPORTING"
    EXPORTED = "EXPORTED"
    TRANSFERRING = "TRANSFERRING"
    SUCCEEDED = "SUCCEEDED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def is_open(self) -> bool:
        return self not in TERMINAL_RUN_STATES


TERMINAL_RUN_STATES = frozenset(
    {RunState.SUCCEEDED, RunState.PARTIAL, RunState.FAILED, RunState.CANCELED}
)
OPEN_RUN_STATES = tuple(s for s in RunState if s not in TERMINAL_RUN_STATES)


class TableState(StrEnum):
    PENDING = "PENDING"
    SKIPPED_BY_EXPORT = "SKIPPED_BY_EXPORT"
    STARTING = "STARTING"  # claimed by a fan-out; the DTS call may or may not have gone through
    STARTED = "STARTED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"  # two Ls, as DTS spells it
    # DTS said SUCCEEDED, but its transfer logs say the run loaded nothing: no file matched the
    # data path, or the files held no row. Ours, not DTS's: an empty load is a failure to us.
    EMPTY = "EMPTY"
    # The export's columns differ from the destination table's in a way a load would not merely
    # widen (core.schema): not loaded, so that no column downstream is dropped or retyped.
    HELD = "HELD"
    # DTS said SUCCEEDED, but the destination table holds a different number of rows than the
    # export wrote (both are kept on the table: export_rows, loaded_rows).
    MISMATCHED = "MISMATCHED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_TABLE_STATES


FINAL_TABLE_STATES = frozenset(
    {
        TableState.SKIPPED_BY_EXPORT,
        TableState.SUCCEEDED,
        TableState.FAILED,
        TableState.CANCELLED,
        TableState.EMPTY,
        TableState.HELD,
        TableState.MISMATCHED,
    }
)
# The table's data is not (or not all) in BigQuery: posted at once, counted as failed, rerun by
# ``rerun --failed`` (a HELD table only when named: its rerun accepts the schema change).
NOT_LOADED_STATES = frozenset(
    {
        TableState.FAILED,
        TableState.CANCELLED,
        TableState.EMPTY,
        TableState.HELD,
        TableState.MISMATCHED,
    }
)

# The states that end a DTS run, as DTS spells them, and the table state each leaves: the one
# mapping from DTS's word to ours, for a run-finished notification and for the poll's look-up.
DTS_FINAL_STATES: Mapping[str, TableState] = MappingProxyType(
    {
        "SUCCEEDED": TableState.SUCCEEDED,
        "FAILED": TableState.FAILED,
        "CANCELLED": TableState.CANCELLED,
    }
)


def table_state_of_dts(dts_state: str) -> TableState | None:
    """The table's final state once its DTS run is in ``dts_state``; None while the run is still
    going (PENDING, RUNNING, or a state DTS may add)."""
    return DTS_FINAL_STATES.get(dts_state)


class ExportStatus(StrEnum):
    """``DescribeExportTasks`` statuses, as the response spells them (UPPERCASE, CANCELED)."""

    STARTING = "STARTING"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Source:
    """What an export reads: a live cluster, or a snapshot with its point in time."""

    arn: str
    kind: str  # cluster | cluster-snapshot | db-snapshot
    snapshot_time: datetime | None = None


@dataclass(frozen=True)
class ExportObservation:
    """One ``DescribeExportTasks`` entry, reduced to what we keep."""

    task_id: str
    status: ExportStatus
    percent: int = 0
    extracted_gb: float = 0.0
    failure_cause: str = ""
    warning: str = ""
    source_arn: str = ""
    snapshot_time: datetime | None = None
    task_start_time: datetime | None = None
    task_end_time: datetime | None = None


@dataclass(frozen=True)
class TableExportStatus:
    """One ``perTableStatus`` entry of ``export_tables_info_*.json``."""

    target: str
    status: str
    reason: str = ""
    size_bytes: int = 0


@dataclass(frozen=True)
class Run:
    run_id: str
    run_time: datetime
    kind: str  # daily | rerun
    export_task_id: str
    tables: tuple[str, ...]  # table keys this run covers
    state: RunState = RunState.EXPORT_STARTING
    source_arn: str = ""
    snapshot_time: datetime | None = None  # the data's as-of time (None: live cluster, see start)
    export_status: str = ""
    percent: int = 0
    extracted_gb: float = 0.0
    failure_cause: str = ""
    export_warning: str = ""
    export_started_at: datetime | None = None
    export_completed_at: datetime | None = None
    late_flagged_at: datetime | None = None
    handoff_owner: str = ""
    handoff_lease_until: datetime | None = None
    handed_off_at: datetime | None = None
    closed_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    parent_run_id: str = ""  # a re-transfer's or re-export's origin
    outbox: tuple[str, ...] = ()  # events stored with the state, not yet published (outbox.py)
    reconciled_at: datetime | None = None  # the poll last looked up silent DTS runs

    @property
    def needs_attention(self) -> bool:
        """Listed by the open-runs query: still open, or holding events to publish."""
        return self.is_open or bool(self.outbox)

    @property
    def is_open(self) -> bool:
        return self.state.is_open

    def with_(self, **changes: Any) -> Run:
        return replace(self, **changes)


@dataclass(frozen=True)
class TableRun:
    key: str
    state: TableState = TableState.PENDING
    reason: str = ""  # why skipped or failed
    dts_config: str = ""
    dts_run: str = ""
    error_code: int = 0
    error_message: str = ""
    size_bytes: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    # Data trust (issue 15): the rows the export wrote (its Parquet footers), the destination
    # table's rows before this load (the previous day's) and after it; the schema changes this
    # load brings (core.schema.SchemaPlan.changes). None: not known.
    export_rows: int | None = None
    previous_rows: int | None = None
    loaded_rows: int | None = None
    schema_changes: tuple[str, ...] = ()
    # The exported columns' core.schema.fingerprint ('': not read): the next run's preflight
    # trusts this run's load for a table whose columns did not change (app.preflight).
    export_schema: str = ""

    @property
    def change(self) -> int | None:
        """Rows loaded minus the previous day's; None when either is unknown."""
        if self.loaded_rows is None or self.previous_rows is None:
            return None
        return self.loaded_rows - self.previous_rows

    @property
    def is_new(self) -> bool:
        """Loaded, with no previous count: the destination table had no rows we knew of."""
        return self.loaded_rows is not None and self.previous_rows is None

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, (self.finished_at - self.started_at).total_seconds())

    def with_(self, **changes: Any) -> TableRun:
        return replace(self, **changes)


# --------------------------------------------------------------------------- events


class EventKind(StrEnum):
    """What the orchestrator tells the notification topic (attribute ``rds2bqEvent``); each kind's
    fields are its dataclass in ``core.events``."""

    EXPORT_STARTED = "EXPORT_STARTED"
    EXPORT_FAILED = "EXPORT_FAILED"  # FAILED or CANCELED, with AWS's FailureCause
    EXPORT_LATE = "EXPORT_LATE"
    TABLES_SKIPPED = "TABLES_SKIPPED"
    HANDOFF_DONE = "HANDOFF_DONE"
    TABLE_FAILED = "TABLE_FAILED"
    # Every table of a handed-off run is final: close it. notify's own note to itself, never
    # posted (app/notify.py says why the closing is a message of its own).
    TABLES_FINISHED = "TABLES_FINISHED"
    RUN_CLOSED = "RUN_CLOSED"


@dataclass(frozen=True)
class Transition:
    """The result of a pure state change: the new run (None: unchanged) and what to announce."""

    run: Run | None
    events: tuple[Event, ...] = ()

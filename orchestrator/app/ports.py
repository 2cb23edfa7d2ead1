"""The ports the service drives. Adapters implement them; tests use in-memory fakes of them.

No vendor SDK is imported here or by anything that imports only this module. Doctor's probes have
their own ports (``probe_ports``): no function path loads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.core.model import (
    ExportObservation,
    Run,
    Source,
    TableExportStatus,
    TableRun,
    TableState,
    Transition,
    table_state_of_dts,
)
from orchestrator.core.schema import DECIMAL_TARGET_TYPES, Column

if TYPE_CHECKING:
    # A type only: a path that publishes no event (status, an idle poll) need not import them.
    from orchestrator.core.events import Event


class Clock(Protocol):
    def now(self) -> datetime: ...


class Exporter(Protocol):
    """AWS: the export source, RDS export tasks and the export's metadata in S3."""

    def resolve_source(
        self, kind: str, source_id: str, as_of: date | None = None, tz: tzinfo = UTC
    ) -> Source:
        """The live cluster, or the latest *available* automated snapshot (taken on the day
        ``as_of`` in time zone ``tz``, when given: the configured zone, the day people mean).
        Raises SourceNotFoundError / NoSnapshotError."""
        ...

    def running_exports(self) -> int:
        """How many export tasks of the account are STARTING or IN_PROGRESS."""
        ...

    def start_export(self, task_id: str, source: Source, export_only: Sequence[str]) -> None:
        """Start the task; a task that already exists with this id is adopted, not an error."""
        ...

    def describe_export(self, task_id: str) -> ExportObservation | None: ...

    def read_tables_info(self, task_id: str) -> list[TableExportStatus]:
        """Every ``perTableStatus`` entry of the export's ``export_tables_info_*`` files."""
        ...

    def export_files_present(self, task_id: str, export_dir: str) -> bool:
        """Whether the export still holds data files for a table (re-transfers need them)."""
        ...

    def read_exported_tables(
        self, task_id: str, export_dirs: Sequence[str]
    ) -> dict[str, ExportedTable]:
        """Per table folder (``TableRef.export_dir``): the rows and columns its data files hold,
        read from their Parquet footers with ranged GETs (never the data). A folder without a
        data file is ``ExportedTable(rows=0)``. Raises TransientError / PermanentError."""
        ...


@dataclass(frozen=True)
class ExportedTable:
    """What an export wrote for one table: the rows and columns of its Parquet files."""

    rows: int
    columns: tuple[Column, ...] = ()
    files: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class TransferConfig:
    """A DTS transfer config as we manage it; secrets are never part of this record."""

    name: str  # projects/P/locations/L/transferConfigs/ID ('' before creation)
    display_name: str
    table_key: str
    destination_table: str
    data_path: str
    notification_topic: str
    file_format: str = "PARQUET"
    write_disposition: str = "WRITE_TRUNCATE"
    # The types a Parquet DECIMAL may load as, in BigQuery's order of preference (() : unset)
    decimal_target_types: tuple[str, ...] = DECIMAL_TARGET_TYPES
    auto_scheduling_disabled: bool = True
    # compared for rotation; kept out of repr so that no log line or plan printout carries it
    access_key_id: str = field(default="", repr=False)


def primary_config(configs: Iterable[TransferConfig]) -> TransferConfig:
    """Of several configs for one table, the one we use: the first by name, so that the fan-out
    and sync always agree (the others are duplicates, left over from an interrupted create)."""
    return min(configs, key=lambda c: c.name)


@dataclass(frozen=True)
class RunOutcome:
    """Where one DTS run stands, as GetTransferRun tells (``state`` as DTS spells it)."""

    state: str  # PENDING | RUNNING | SUCCEEDED | FAILED | CANCELLED
    error_code: int = 0
    error_message: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # A SUCCEEDED run's transfer log line saying it loaded nothing (``empty_load``); "" otherwise.
    loaded_nothing: str = ""
    # A SUCCEEDED run's destination table rows after the load, and why they do not match what
    # the export wrote ("" when they do, or either count is unknown).
    loaded_rows: int | None = None
    rows_mismatch: str = ""

    @property
    def table_state(self) -> TableState | None:
        """The table's final state, or None while the run is still going."""
        state = table_state_of_dts(self.state)
        if state is TableState.SUCCEEDED and self.loaded_nothing:
            return TableState.EMPTY
        if state is TableState.SUCCEEDED and self.rows_mismatch:
            return TableState.MISMATCHED
        return state

    @property
    def problem(self) -> str:
        """What went wrong, in one line: DTS's error, or what our checks found."""
        return self.error_message or self.loaded_nothing or self.rows_mismatch


class TransferRunner(Protocol):
    """BigQuery Data Transfer Service: our configs and their manual runs."""

    def configs_by_table(self) -> dict[str, TransferConfig]:
        """Our configs, keyed by table key (one List call, paginated)."""
        ...

    def start_run(self, config_name: str, run_time: datetime) -> str:
        """Start one manual run with ``requested_run_time`` = run_time; return its run name.
        Raises TransientError (retryable) or PermanentError."""
        ...

    def find_run(self, config_name: str, run_time: datetime) -> str | None:
        """The run of this config whose run time is ``run_time``, if one was started."""
        ...

    def run_outcome(self, run_name: str) -> RunOutcome:
        """Where the run stands now (the poll's safety net for a lost notification)."""
        ...

    def empty_load(self, run_name: str) -> str:
        """A finished run's transfer log line saying that it loaded nothing (no file matched its
        data path, or the files held no row), redacted; "" when the logs say no such thing.
        One ListTransferLogs (paginated). Raises TransientError or PermanentError."""
        ...


class Ledger(Protocol):
    """The run ledger: a document per run, one per table under it. Transitions are transactional:
    ``mutate`` is a pure function and may be called more than once."""

    def create_run(self, run: Run) -> tuple[Run, bool]:
        """Create the run if absent. Returns (the stored run, whether this call created it)."""
        ...

    def get_run(self, run_id: str) -> Run | None: ...

    def open_runs(self) -> list[Run]:
        """Every run not yet closed: one query."""
        ...

    def recent_runs(self, limit: int) -> list[Run]: ...

    def transition(self, run_id: str, mutate: Callable[[Run], Transition]) -> Transition:
        """Apply ``mutate`` to the stored run in a transaction and store its result."""
        ...

    def add_tables(self, run_id: str, tables: Iterable[TableRun]) -> None:
        """Create table documents that do not exist yet (existing ones are left untouched)."""
        ...

    def tables(self, run_id: str) -> list[TableRun]: ...

    def put_tables(self, run_id: str, tables: Iterable[TableRun]) -> None:
        """Overwrite table documents (used only by the holder of the hand-off lease)."""
        ...

    def update_table(
        self, run_id: str, key: str, mutate: Callable[[TableRun], TableRun | None]
    ) -> TableRun | None:
        """Transactional read-modify-write of one table; None from mutate means no change."""
        ...

    def count_unfinished(self, run_id: str) -> int:
        """How many of the run's tables are not final yet (PENDING, STARTING, STARTED)."""
        ...

    def get_table(self, run_id: str, key: str) -> TableRun | None:
        """The run's table ``key`` (one document read)."""
        ...

    def get_tables(self, run_id: str, keys: Sequence[str]) -> dict[str, TableRun]:
        """The run's tables of ``keys`` that exist, by key (one batched read)."""
        ...

    def find_table(self, run_id: str, dts_config: str) -> TableRun | None:
        """The run's table whose transfer config is ``dts_config``."""
        ...

    def claim_once(self, key: str, now: datetime) -> bool:
        """Claim ``key`` for handling; False if it is done, or claimed by a live handler. A claim
        not marked done within a lease (its handler died) can be claimed again."""
        ...

    def mark_done(self, key: str) -> None:
        """The handling of ``key`` finished: it is never handled again."""
        ...

    def forget(self, key: str) -> None:
        """Undo ``claim_once`` (the handling failed transiently and will be retried)."""
        ...

    def remember(self, key: str, value: str, now: datetime) -> tuple[str, bool]:
        """Store ``value`` under ``key`` unless a value is already there. Returns (the stored
        value, whether this call stored it): first writer wins (idempotency keys). ``forget``
        removes it."""
        ...


class EventBus(Protocol):
    def publish(self, events: Sequence[Event]) -> None: ...


class Messages(Protocol):
    """What is posted to Slack for each thing worth saying (the Slack presenter implements it)."""

    def for_event(
        self, event: Event, run: Run, tables: Sequence[TableRun]
    ) -> Mapping[str, Any]: ...

    def unknown_run(self, note: Any) -> Mapping[str, Any]:
        """A DTS run-finished notification for a run the ledger does not know."""
        ...

    def slot_missed(self, slot: datetime, run_id: str, grace_minutes: int) -> Mapping[str, Any]:
        """A daily slot past its grace period whose run never started."""
        ...


class Notifier(Protocol):
    """Posts a Slack payload (``{"text", "blocks"}``). Raises TransientError or PermanentError."""

    def post(self, payload: Mapping[str, Any]) -> None: ...


class Secrets(Protocol):
    def get(self, name: str) -> str: ...


# --------------------------------------------------------------------------- sync


@dataclass(frozen=True)
class AccessKeys:
    """The DTS reader's static AWS keys (DTS accepts no role or federation for S3)."""

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)


class ConfigStore(Protocol):
    """Transfer configs in one project and location (the DTS adapter implements it)."""

    def list_configs(self) -> list[TransferConfig]:
        """Every ``amazon_s3`` config; ``table_key`` is '' for configs that are not ours."""
        ...

    def create_config(self, config: TransferConfig, keys: AccessKeys) -> TransferConfig: ...

    def update_config(self, name: str, config: TransferConfig, keys: AccessKeys) -> TransferConfig:
        """Rewrite every field we manage on config ``name`` (the keys included)."""
        ...

    def delete_config(self, config: TransferConfig) -> None:
        """Delete one of our configs; refuses a config that is not ours."""
        ...


class DestinationTables(Protocol):
    """BigQuery destination tables (the BigQuery adapter implements it)."""

    def missing(self, table_ids: Sequence[str]) -> list[str]:
        """Which of these tables do not exist. Raises PermanentError if the dataset is absent."""
        ...

    def create(
        self, table_ids: Sequence[str], schemas: Mapping[str, Sequence[Column]] | None = None
    ) -> list[str]:
        """Create these tables (an existing one is not an error), each with its schema in
        ``schemas`` when there is one; return those created."""
        ...

    def describe(self, table_ids: Sequence[str]) -> dict[str, DestinationTable]:
        """The columns and row count of each of these tables that exists (absent: missing)."""
        ...

    def add_columns(self, table_id: str, columns: Sequence[Column]) -> None:
        """Add NULLABLE columns to a table's schema (the columns it has already are kept)."""
        ...

    def row_count(self, table_id: str) -> int | None:
        """The table's rows now (None: the table does not exist)."""
        ...


@dataclass(frozen=True)
class DestinationTable:
    """A BigQuery destination table as the preflight sees it."""

    columns: tuple[Column, ...] = ()  # empty: created without a schema, none loaded yet
    rows: int = 0

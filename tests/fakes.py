"""In-memory fakes of our own ports (not mocks): they keep state and honour the ports' contracts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from orchestrator.adapters.pubsub import encode_message
from orchestrator.app.notify import NotifyService, Outcome
from orchestrator.app.ports import (
    DestinationTable,
    ExportedTable,
    RunOutcome,
    TransferConfig,
)
from orchestrator.core.errors import (
    NoSnapshotError,
    NotFoundError,
    PermanentError,
    SourceNotFoundError,
    TransientError,
)
from orchestrator.core.events import Event
from orchestrator.core.model import (
    EventKind,
    ExportObservation,
    ExportStatus,
    Run,
    Source,
    TableExportStatus,
    TableRun,
    Transition,
)
from orchestrator.core.notifications import PubsubMessage
from orchestrator.core.schema import Column


@dataclass
class RecordingEventBus:
    """An EventBus that keeps what it was given."""

    events: list[Event] = field(default_factory=list)

    def publish(self, events: Sequence[Event]) -> None:
        self.events.extend(events)


@dataclass
class RecordingNotifier:
    """A Notifier that keeps the payloads it was given to post."""

    payloads: list[Mapping[str, Any]] = field(default_factory=list)

    def post(self, payload: Mapping[str, Any]) -> None:
        self.payloads.append(payload)


@dataclass
class FixedClock:
    current: datetime = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


_INT64 = 2**63


def _storable(table: TableRun) -> TableRun:
    """Firestore stores integers as int64: the SDK refuses a larger one (ValueError), and so does
    this fake, so that what the real ledger would refuse is refused here too."""
    for name in ("error_code", "size_bytes", "attempts"):
        if not -_INT64 <= getattr(table, name) < _INT64:
            raise ValueError(f"Value out of range: {name} does not fit in int64")
    return table


class InMemoryLedger:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.runs: dict[str, Run] = {}
        self.table_docs: dict[str, dict[str, TableRun]] = {}
        self.queries = 0
        self.claimed: set[str] = set()
        self.done: set[str] = set()
        self.remembered: dict[str, str] = {}

    def create_run(self, run: Run) -> tuple[Run, bool]:
        with self._lock:
            if run.run_id in self.runs:
                return self.runs[run.run_id], False
            self.runs[run.run_id] = run
            self.table_docs.setdefault(run.run_id, {})
            return run, True

    def get_run(self, run_id: str) -> Run | None:
        with self._lock:
            return self.runs.get(run_id)

    def open_runs(self) -> list[Run]:
        with self._lock:
            self.queries += 1
            return sorted(
                (r for r in self.runs.values() if r.needs_attention), key=lambda r: r.run_id
            )

    def recent_runs(self, limit: int) -> list[Run]:
        with self._lock:
            return sorted(self.runs.values(), key=lambda r: r.run_id, reverse=True)[:limit]

    def transition(self, run_id: str, mutate: Callable[[Run], Transition]) -> Transition:
        with self._lock:
            if run_id not in self.runs:
                raise NotFoundError(f"run {run_id} is not in the ledger")
            result = mutate(self.runs[run_id])
            if result.run is not None:
                self.runs[run_id] = result.run
            return result

    def add_tables(self, run_id: str, tables: Iterable[TableRun]) -> None:
        with self._lock:
            docs = self.table_docs.setdefault(run_id, {})
            for table in tables:
                docs.setdefault(table.key, table)

    def tables(self, run_id: str) -> list[TableRun]:
        with self._lock:
            return sorted(self.table_docs.get(run_id, {}).values(), key=lambda t: t.key)

    def put_tables(self, run_id: str, tables: Iterable[TableRun]) -> None:
        with self._lock:
            docs = self.table_docs.setdefault(run_id, {})
            for table in tables:
                docs[table.key] = _storable(table)

    def update_table(
        self, run_id: str, key: str, mutate: Callable[[TableRun], TableRun | None]
    ) -> TableRun | None:
        with self._lock:
            current = self.table_docs.get(run_id, {}).get(key)
            if current is None:
                return None
            changed = mutate(current)
            if changed is not None:
                self.table_docs[run_id][key] = _storable(changed)
            return changed

    def count_unfinished(self, run_id: str) -> int:
        with self._lock:
            return sum(1 for t in self.table_docs.get(run_id, {}).values() if not t.state.is_final)

    def get_table(self, run_id: str, key: str) -> TableRun | None:
        with self._lock:
            return self.table_docs.get(run_id, {}).get(key)

    def get_tables(self, run_id: str, keys: Sequence[str]) -> dict[str, TableRun]:
        with self._lock:
            docs = self.table_docs.get(run_id, {})
            return {k: docs[k] for k in keys if k in docs}

    def find_table(self, run_id: str, dts_config: str) -> TableRun | None:
        with self._lock:
            for table in self.table_docs.get(run_id, {}).values():
                if table.dts_config == dts_config:
                    return table
            return None

    def claim_once(self, key: str, now: datetime) -> bool:
        with self._lock:
            if key in self.claimed:
                return False
            self.claimed.add(key)
            return True

    def mark_done(self, key: str) -> None:
        with self._lock:
            self.claimed.add(key)
            self.done.add(key)

    @property
    def held(self) -> set[str]:
        """Claims taken and neither done nor forgotten: what a crashed handler leaves behind."""
        with self._lock:
            return self.claimed - self.done

    def forget(self, key: str) -> None:
        with self._lock:
            self.claimed.discard(key)
            self.done.discard(key)
            self.remembered.pop(key, None)

    def remember(self, key: str, value: str, now: datetime) -> tuple[str, bool]:
        with self._lock:
            if key in self.remembered:
                return self.remembered[key], False
            self.remembered[key] = value
            return value, True


@dataclass
class FakeExporter:
    """An RDS account with one source; exports progress when the test says so."""

    clusters: set[str] = field(default_factory=lambda: {"shop-aurora"})
    snapshots: list[tuple[str, datetime, str]] = field(default_factory=list)  # (arn, time, status)
    tasks: dict[str, ExportObservation] = field(default_factory=dict)
    export_only: dict[str, list[str]] = field(default_factory=dict)
    tables_info: dict[str, list[TableExportStatus]] = field(default_factory=dict)
    other_running: int = 0
    start_calls: int = 0
    calls: int = 0
    fail_start: Exception | None = None
    exported: dict[str, ExportedTable] = field(default_factory=dict)  # export_dir -> footers
    default_rows: int = 100
    footer_reads: int = 0
    fail_footers: Exception | None = None

    def resolve_source(
        self, kind: str, source_id: str, as_of: date | None = None, tz: tzinfo = UTC
    ) -> Source:
        self.calls += 1
        if source_id not in self.clusters:
            raise SourceNotFoundError(f"cluster {source_id} not found")
        if kind == "cluster":
            return Source(f"arn:aws:rds:ap-northeast-1:123456789012:cluster:{source_id}", kind)
        usable = [
            s
            for s in self.snapshots
            if s[2] == "available" and (as_of is None or s[1].astimezone(tz).date() == as_of)
        ]
        if not usable:
            raise NoSnapshotError(f"no available automated snapshot of {source_id}")
        arn, time, _ = max(usable, key=lambda s: s[1])
        return Source(arn, kind, time)

    def running_exports(self) -> int:
        self.calls += 1
        running = (ExportStatus.STARTING, ExportStatus.IN_PROGRESS)
        return self.other_running + sum(1 for t in self.tasks.values() if t.status in running)

    def start_export(self, task_id: str, source: Source, export_only: Sequence[str]) -> None:
        self.calls += 1
        self.start_calls += 1
        if self.fail_start is not None:
            raise self.fail_start
        if task_id in self.tasks:
            return
        self.tasks[task_id] = ExportObservation(
            task_id,
            ExportStatus.STARTING,
            source_arn=source.arn,
            snapshot_time=source.snapshot_time,
        )
        self.export_only[task_id] = list(export_only)

    def describe_export(self, task_id: str) -> ExportObservation | None:
        self.calls += 1
        return self.tasks.get(task_id)

    def read_tables_info(self, task_id: str) -> list[TableExportStatus]:
        self.calls += 1
        return list(self.tables_info.get(task_id, []))

    def export_files_present(self, task_id: str, export_dir: str) -> bool:
        return task_id in self.tasks

    def read_exported_tables(
        self, task_id: str, export_dirs: Sequence[str]
    ) -> dict[str, ExportedTable]:
        """What the test put in ``exported`` (per table folder); folders it did not name hold
        ``default_rows`` rows of no known columns."""
        self.calls += 1
        self.footer_reads += 1
        if self.fail_footers is not None:
            raise self.fail_footers
        return {
            d: self.exported.get(d, ExportedTable(rows=self.default_rows, files=1))
            for d in export_dirs
        }

    def set_status(self, task_id: str, status: ExportStatus, **fields: object) -> None:
        current = self.tasks[task_id]
        self.tasks[task_id] = ExportObservation(**{**current.__dict__, "status": status, **fields})


@dataclass
class FakeTransfers:
    """DTS with one config per table; counts starts per (config, run time)."""

    configs: dict[str, TransferConfig] = field(default_factory=dict)
    started: dict[tuple[str, datetime], list[str]] = field(default_factory=dict)
    transient_failures: int = 0  # the next N start calls fail transiently
    permanent_for: set[str] = field(default_factory=set)  # config names DTS refuses
    fail_after: int | None = None  # every start after this many successes fails transiently
    outcomes: dict[str, RunOutcome] = field(default_factory=dict)  # by run name; else RUNNING
    # Run name or config name -> the log line of a run that loaded nothing (else it loaded).
    empty: dict[str, str] = field(default_factory=dict)
    logs_read: list[str] = field(default_factory=list)  # run names, one per ListTransferLogs
    logs_faults: list[Exception] = field(default_factory=list)  # raised by the next log reads
    configs_fault: Exception | None = None  # raised by every configs_by_table while set
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_tables(cls, keys: Iterable[str]) -> FakeTransfers:
        configs = {
            k: TransferConfig(
                name=f"projects/p/locations/l/transferConfigs/{i}",
                display_name=f"rds2bq-prod:{k}",
                table_key=k,
                destination_table=k.replace(".", "__"),
                data_path="s3://x/*",
                notification_topic="projects/p/topics/t",
            )
            for i, k in enumerate(keys)
        }
        return cls(configs=configs)

    def configs_by_table(self) -> dict[str, TransferConfig]:
        if self.configs_fault is not None:
            raise self.configs_fault
        return dict(self.configs)

    def start_run(self, config_name: str, run_time: datetime) -> str:
        with self._lock:
            if self.transient_failures > 0:
                self.transient_failures -= 1
                raise TransientError("UNAVAILABLE")
            if config_name in self.permanent_for:
                raise PermanentError("INVALID_ARGUMENT: bad params")
            total = sum(len(v) for v in self.started.values())
            if self.fail_after is not None and total >= self.fail_after:
                raise TransientError("UNAVAILABLE (injected after N starts)")
            runs = self.started.setdefault((config_name, run_time), [])
            # numbered per config, as DTS names each run of a config apart, whatever its run time
            made = sum(len(v) for (c, _), v in self.started.items() if c == config_name)
            name = f"{config_name}/runs/r{made}"
            runs.append(name)
            return name

    def find_run(self, config_name: str, run_time: datetime) -> str | None:
        with self._lock:
            runs = self.started.get((config_name, run_time))
            return runs[-1] if runs else None

    def run_outcome(self, run_name: str) -> RunOutcome:
        return self.outcomes.get(run_name, RunOutcome("RUNNING"))

    def empty_load(self, run_name: str) -> str:
        with self._lock:
            self.logs_read.append(run_name)
            if self.logs_faults:
                raise self.logs_faults.pop(0)
        config = run_name.split("/runs/")[0]
        return self.empty.get(run_name) or self.empty.get(config, "")

    def starts_per_config(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for (config, _), runs in self.started.items():
            counts[config] = counts.get(config, 0) + len(runs)
        return counts


class InMemoryTables:
    """BigQuery destination tables: their columns and rows; a load sets both (``load``)."""

    def __init__(self, existing: Iterable[str] = ()) -> None:
        self.tables: dict[str, DestinationTable] = {t: DestinationTable() for t in existing}
        self.added: list[tuple[str, tuple[Column, ...]]] = []
        self.describe_calls = 0
        self.described: list[str] = []  # every table id a describe call asked for
        self.fail: Exception | None = None

    @property
    def existing(self) -> set[str]:
        return set(self.tables)

    def missing(self, table_ids: Sequence[str]) -> list[str]:
        return [t for t in table_ids if t not in self.tables]

    def create(
        self, table_ids: Sequence[str], schemas: Mapping[str, Sequence[Column]] | None = None
    ) -> list[str]:
        created = [t for t in table_ids if t not in self.tables]
        for t in created:
            self.tables[t] = DestinationTable(tuple((schemas or {}).get(t, ())))
        return created

    def describe(self, table_ids: Sequence[str]) -> dict[str, DestinationTable]:
        self.describe_calls += 1
        self.described += table_ids
        if self.fail is not None:
            raise self.fail
        return {t: self.tables[t] for t in table_ids if t in self.tables}

    def add_columns(self, table_id: str, columns: Sequence[Column]) -> None:
        table = self.tables[table_id]
        self.added.append((table_id, tuple(columns)))
        self.tables[table_id] = DestinationTable((*table.columns, *columns), table.rows)

    def row_count(self, table_id: str) -> int | None:
        if self.fail is not None:
            raise self.fail
        table = self.tables.get(table_id)
        return None if table is None else table.rows

    def load(self, table_id: str, rows: int, columns: Sequence[Column] = ()) -> None:
        """What a truncating load does: the files' rows and (when given) schema replace the
        table's."""
        table = self.tables.get(table_id, DestinationTable())
        self.tables[table_id] = DestinationTable(tuple(columns) or table.columns, rows)


class LoopedNotify(NotifyService):
    """notify as its subscription drives it: what handling a message announces about tables
    (TABLE_FAILED, TABLES_FINISHED, published on the topic notify itself reads) is delivered back
    to it at once, as Pub/Sub would. The other events stay in its bus as published. Its event bus
    must be a ``RecordingEventBus``."""

    LOOPED = (EventKind.TABLE_FAILED, EventKind.TABLES_FINISHED)
    delivered = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.undelivered: list[PubsubMessage] = []  # failed transiently: redelivered next time

    def handle(self, message: PubsubMessage) -> Outcome:
        bus = self.events
        assert isinstance(bus, RecordingEventBus)
        start = len(bus.events)
        try:
            return super().handle(message)
        finally:
            while looped := [e for e in bus.events[start:] if e.kind in self.LOOPED]:
                bus.events[start:] = [e for e in bus.events[start:] if e not in looped]
                for event in looped:
                    self.delivered += 1
                    self.undelivered.append(event_message(event, f"looped-{self.delivered}"))
            self._redeliver()

    def _redeliver(self) -> None:
        """Deliver what is waiting, in order; one failing transiently stays for the next call."""
        while self.undelivered:
            looped = self.undelivered[0]
            super().handle(looped)  # raises TransientError as the platform would see it
            self.undelivered.pop(0)


def event_message(event: Event, message_id: str = "e1") -> PubsubMessage:
    """One of our events as the notification topic delivers it."""
    data, attributes = encode_message(event)
    return PubsubMessage(data, attributes, message_id)

"""Keep one DTS transfer config per configured table, as the settings say it should be.

``desired_configs`` and ``plan`` are pure; ``apply`` executes a plan through the ``ConfigStore``
and ``DestinationTables`` protocols defined here (the DTS and BigQuery adapters implement them);
``sync`` is the one call the CLI makes. A second sync after an apply plans nothing.

Ownership: a config is ours only if its display name is ``rds2bq-{env}:{table_key}``. Anything
else in the project and location (another env, a hand-made transfer) is listed as unmanaged and
never touched. Nothing is deleted without ``prune``.

Secrets: the DTS reader's keys are read once, used only in the create/update calls, and never
printed. Plans and results name *which* fields drifted (``access key (rotated)``), never values.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from orchestrator import logs
from orchestrator.app.ports import (
    AccessKeys,
    ConfigStore,
    DestinationTables,
    Secrets,
    TransferConfig,
    primary_config,
)
from orchestrator.app.sync_schemas import FoundSchemas, SchemaSource, SourceSchema
from orchestrator.config import Settings
from orchestrator.core.errors import PermanentError, Rds2bqError
from orchestrator.core.keys import display_name_for, export_id_template, table_key_of
from orchestrator.core.model import TableRef
from orchestrator.core.schema import DECIMAL_TARGET_TYPES

log = logging.getLogger(__name__)


def data_path_for(settings: Settings, table: TableRef) -> str:
    """``s3://BUCKET/PREFIX/rds2bq-ENV-{run_time|"%Y%m%d%H%M%S"}/DB/SCHEMA.TABLE/*.parquet``.

    The run-time template resolves (in UTC) to the export id of exactly the run that started the
    transfer, so no config is rewritten per run. One ``*`` spans every batch folder and both file
    namings; the literal prefix ends with the table's folder and its ``/`` so that S3 lists
    neither ``db.orders_items`` nor another run's export.
    """
    export_id = export_id_template(settings.env)
    parts = [settings.s3_prefix, export_id, table.export_dir, "*.parquet"]
    return f"s3://{settings.s3_bucket}/" + "/".join(p for p in parts if p)


def desired_configs(settings: Settings) -> dict[str, TransferConfig]:
    """What every configured table's transfer config should be, keyed by table key."""
    return {
        t.key: TransferConfig(
            name="",
            display_name=display_name_for(settings.env, t.key),
            table_key=t.key,
            destination_table=t.bq_table,
            data_path=data_path_for(settings, t),
            notification_topic=settings.topic_path,
            file_format="PARQUET",
            write_disposition="WRITE_TRUNCATE",
            decimal_target_types=DECIMAL_TARGET_TYPES,
            auto_scheduling_disabled=True,
        )
        for t in settings.tables
    }


# --------------------------------------------------------------------------- keys


def parse_access_keys(text: str, secret_name: str) -> AccessKeys:
    """Parse the secret ``{"access_key_id", "secret_access_key"}``. Errors name the secret and the
    missing key, never the content (a JSON error would quote it, hence ``from None``)."""
    try:
        value = json.loads(text)
    except ValueError:
        raise PermanentError(
            f"secret {secret_name} is not JSON with access_key_id and secret_access_key"
        ) from None
    if not isinstance(value, dict):
        raise PermanentError(f"secret {secret_name} must be a JSON object")
    missing = [
        k
        for k in ("access_key_id", "secret_access_key")
        if not isinstance(value.get(k), str) or not value[k].strip()
    ]
    if missing:
        raise PermanentError(f"secret {secret_name} lacks " + " and ".join(missing))
    keys = AccessKeys(value["access_key_id"].strip(), value["secret_access_key"].strip())
    logs.register_secret(keys.secret_access_key)
    return keys


def load_access_keys(secrets: Secrets, secret_name: str) -> AccessKeys:
    return parse_access_keys(secrets.get(secret_name), secret_name)


# --------------------------------------------------------------------------- planning


class Drift(StrEnum):
    """A managed field whose actual value differs from the desired one."""

    DATA_PATH = "data_path"
    TOPIC = "notification topic"
    FILE_FORMAT = "file_format"
    WRITE_DISPOSITION = "write_disposition"
    DECIMAL_TARGET_TYPES = "decimal_target_types"
    AUTO_SCHEDULING = "auto-scheduling"
    DESTINATION_TABLE = "destination table"
    ACCESS_KEY = "access key (rotated)"


def drift_of(
    actual: TransferConfig, desired: TransferConfig, access_key_id: str
) -> tuple[Drift, ...]:
    checks = (
        (Drift.DATA_PATH, actual.data_path != desired.data_path),
        (Drift.TOPIC, actual.notification_topic != desired.notification_topic),
        (Drift.FILE_FORMAT, actual.file_format != desired.file_format),
        (Drift.WRITE_DISPOSITION, actual.write_disposition != desired.write_disposition),
        (
            Drift.DECIMAL_TARGET_TYPES,
            actual.decimal_target_types != desired.decimal_target_types,
        ),
        (
            Drift.AUTO_SCHEDULING,
            actual.auto_scheduling_disabled != desired.auto_scheduling_disabled,
        ),
        (Drift.DESTINATION_TABLE, actual.destination_table != desired.destination_table),
        (Drift.ACCESS_KEY, actual.access_key_id != access_key_id),
    )
    return tuple(d for d, differs in checks if differs)


@dataclass(frozen=True)
class ConfigUpdate:
    current: TransferConfig
    desired: TransferConfig
    drift: tuple[Drift, ...]

    def __repr__(self) -> str:
        return f"ConfigUpdate({self.desired.table_key!r}, drift={[str(d) for d in self.drift]})"


@dataclass(frozen=True)
class ConfigRemoval:
    """One of our configs with no place in the settings (deleted only with ``prune``)."""

    config: TransferConfig
    reason: str

    def __repr__(self) -> str:
        return f"ConfigRemoval({_label(self.config)!r}, {self.reason!r})"


@dataclass(frozen=True)
class SyncPlan:
    create: tuple[TransferConfig, ...] = ()
    update: tuple[ConfigUpdate, ...] = ()
    delete: tuple[ConfigRemoval, ...] = ()
    kept: tuple[ConfigRemoval, ...] = ()  # would be deleted with prune
    unchanged: tuple[TransferConfig, ...] = ()
    unmanaged: int = 0  # configs in the location that are not ours: never touched
    create_tables: tuple[str, ...] = ()  # destination tables that do not exist yet
    # the source's columns for those of them an export holds (the others get none: preflight)
    table_schemas: Mapping[str, SourceSchema] = field(default_factory=dict)
    schema_problem: str = ""  # why the exported columns could not be read ("" if they could)

    @property
    def is_noop(self) -> bool:
        return not (self.create or self.update or self.delete or self.create_tables)

    def __repr__(self) -> str:
        # TransferConfig's own repr shows access_key_id: a plan in a log line names keys only
        return (
            f"SyncPlan(create={[c.table_key for c in self.create]}, update={list(self.update)}, "
            f"delete={list(self.delete)}, kept={list(self.kept)}, "
            f"unchanged={[c.table_key for c in self.unchanged]}, unmanaged={self.unmanaged}, "
            f"create_tables={list(self.create_tables)}, "
            f"table_schemas={sorted(self.table_schemas)})"
        )


def plan(
    desired: Mapping[str, TransferConfig],
    actual: Iterable[TransferConfig],
    current_access_key_id: str,
    prune: bool,
    *,
    env: str,
    missing_tables: Sequence[str] = (),
    schemas: FoundSchemas | None = None,
) -> SyncPlan:
    """Compare what should exist with what does: pure, no I/O."""
    ours: dict[str, list[TransferConfig]] = {}
    unmanaged = 0
    for config in actual:
        key = table_key_of(config.display_name, env)
        if key is None:
            unmanaged += 1
            continue
        ours.setdefault(key, []).append(config)

    create: list[TransferConfig] = []
    update: list[ConfigUpdate] = []
    unchanged: list[TransferConfig] = []
    removals: list[ConfigRemoval] = []
    for key, want in sorted(desired.items()):
        found = ours.get(key)
        if not found:
            create.append(want)
            continue
        current = primary_config(found)
        removals.extend(
            ConfigRemoval(c, f"duplicate of {current.name}") for c in found if c is not current
        )
        drift = drift_of(current, want, current_access_key_id)
        if drift:
            update.append(ConfigUpdate(current, want, drift))
        else:
            unchanged.append(current)
    for key, found in sorted(ours.items()):
        if key not in desired:
            removals.extend(ConfigRemoval(c, "table not in the tables file") for c in found)

    return SyncPlan(
        create=tuple(create),
        update=tuple(update),
        delete=tuple(removals) if prune else (),
        kept=() if prune else tuple(removals),
        unchanged=tuple(unchanged),
        unmanaged=unmanaged,
        create_tables=tuple(sorted(set(missing_tables))),
        table_schemas={
            t: s for t, s in (schemas.schemas if schemas else {}).items() if t in missing_tables
        },
        schema_problem=schemas.problem if schemas else "",
    )


# --------------------------------------------------------------------------- applying


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)  # table keys
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # config names
    tables_created: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (what, why)

    @property
    def ok(self) -> bool:
        return not self.failures


def apply(
    plan: SyncPlan, store: ConfigStore, keys: AccessKeys, tables: DestinationTables | None = None
) -> SyncResult:
    """Carry out a plan. Each step stands alone: one failure is recorded and the rest still runs,
    so a re-run only has the failed steps left to do. Tables come first: DTS needs the
    destination table to exist before a config's first run."""
    result = SyncResult()
    if tables is not None and plan.create_tables:
        try:
            schemas = {t: s.columns for t, s in plan.table_schemas.items()}
            if schemas:
                result.tables_created = tables.create(plan.create_tables, schemas)
            else:  # none known: the first preflight gives them the export's columns
                result.tables_created = tables.create(plan.create_tables)
        except Rds2bqError as exc:
            result.failures.append(("destination tables", str(exc)))
    for config in plan.create:
        try:
            store.create_config(config, keys)
        except Rds2bqError as exc:
            result.failures.append((f"create {config.table_key}", str(exc)))
        else:
            result.created.append(config.table_key)
            log.info("sync: created the transfer config of %s", config.table_key)
    for change in plan.update:
        key = change.desired.table_key
        try:
            store.update_config(change.current.name, change.desired, keys)
        except Rds2bqError as exc:
            result.failures.append((f"update {key}", str(exc)))
        else:
            result.updated.append(key)
            log.info("sync: updated the transfer config of %s (%s)", key, ", ".join(change.drift))
    for removal in plan.delete:
        try:
            store.delete_config(removal.config)
        except Rds2bqError as exc:
            result.failures.append((f"delete {removal.config.name}", str(exc)))
        else:
            result.deleted.append(removal.config.name)
            log.info("sync: deleted %s (%s)", removal.config.name, removal.reason)
    return result


@dataclass(frozen=True)
class SyncOutcome:
    plan: SyncPlan
    result: SyncResult | None  # None for a dry run


def sync(
    settings: Settings,
    store: ConfigStore,
    tables: DestinationTables,
    secrets: Secrets,
    *,
    prune: bool = False,
    dry_run: bool = False,
    schemas: SchemaSource | None = None,
) -> SyncOutcome:
    """Read the keys, list configs and tables, find the columns of the tables to create (when
    ``schemas`` is given: the latest export's), plan, and (unless ``dry_run``) apply."""
    keys = load_access_keys(secrets, settings.dts_keys_secret)
    desired = desired_configs(settings)
    missing = tables.missing([c.destination_table for c in desired.values()])
    found = None
    if missing and schemas is not None:
        found = schemas.find([t for t in settings.tables if t.bq_table in missing])
    the_plan = plan(
        desired,
        store.list_configs(),
        keys.access_key_id,
        prune,
        env=settings.env,
        missing_tables=missing,
        schemas=found,
    )
    if dry_run or the_plan.is_noop:
        return SyncOutcome(the_plan, None if dry_run else SyncResult())
    return SyncOutcome(the_plan, apply(the_plan, store, keys, tables))


# --------------------------------------------------------------------------- rendering


def render_plan(plan: SyncPlan) -> str:
    """The plan for people (``sync --dry-run``): what changes and which fields, never a value of
    a key."""
    lines: list[str] = []
    lines += [f"  + table   {t}  ({_schema_note(plan, t)})" for t in plan.create_tables]
    if plan.create_tables and plan.schema_problem:
        lines.append(f"  ! columns not read from the export: {plan.schema_problem}")
    lines += [
        f"  + create  {c.table_key} -> {c.destination_table}  {c.data_path}" for c in plan.create
    ]
    lines += [f"  ~ update  {u.desired.table_key}: {', '.join(u.drift)}" for u in plan.update]
    lines += [f"  - delete  {_label(r.config)} ({r.reason})" for r in plan.delete]
    lines += [f"  ! kept    {_label(r.config)} ({r.reason}; --prune deletes it)" for r in plan.kept]
    summary = (
        f"{len(plan.create)} to create, {len(plan.update)} to update, "
        f"{len(plan.delete)} to delete, {len(plan.unchanged)} unchanged, "
        f"{len(plan.create_tables)} tables to create, {plan.unmanaged} unmanaged "
        "configs left alone"
    )
    if plan.is_noop:
        summary = "Nothing to do: " + summary
    return "\n".join(["DTS transfer configs:", *lines, summary])


def render_result(result: SyncResult) -> str:
    lines = [
        f"created {len(result.created)}, updated {len(result.updated)}, deleted "
        f"{len(result.deleted)} configs; created {len(result.tables_created)} tables"
    ]
    lines += [f"  FAILED {what}: {why}" for what, why in result.failures]
    return "\n".join(lines)


def _schema_note(plan: SyncPlan, table_id: str) -> str:
    schema = plan.table_schemas.get(table_id)
    if schema is not None:
        return f"{len(schema.columns)} columns, as export {schema.export_task_id} wrote them"
    return "no schema yet: the first preflight gives it the export's columns before the first load"


def _label(config: TransferConfig) -> str:
    return f"{config.table_key or config.display_name} [{config.name}]"

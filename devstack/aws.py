"""moto's server on a free port, in this process, so tests and the demo can drive export tasks.

moto completes every export at once, refuses live-cluster sources, keeps lowercase statuses and
checks neither the KMS key nor the export role. Real RDS exports take hours, report UPPERCASE
statuses and refuse an unusable key or role. ``install_export_patch`` makes moto's exports behave
like the real ones on the wire, and ``ExportControl`` lets the harness drive them through their
states and write the export's files to S3 laid out as RDS does (docs/platform.md): real Parquet
files of the columns and rows a test chooses (``devstack.parquet.TableData``), with the type
mappings ``export_tables_info`` lists for them.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from devstack.parquet import TableData, data_files, type_mappings

ACCOUNT_ID = "123456789012"
REGION = "ap-northeast-1"


@dataclass
class MotoServer:
    server: ThreadedMotoServer
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop()


def start_moto(port: int = 0) -> MotoServer:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    install_export_patch()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    # Port 0 lets the server bind a free port itself, atomically. A port picked beforehand can be
    # taken by another process before moto binds it; moto's thread then dies and start() waits
    # forever (seen as a 300 s fixture timeout in the e2e suite).
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return MotoServer(server, server.get_host_and_port()[1])


# --------------------------------------------------------------------------- moto export patch

_PATCHED = False


def install_export_patch() -> None:
    """Make moto's StartExportTask behave like RDS's (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    from moto.rds import exceptions, models

    original = models.RDSBackend.start_export_task

    class _Fault(exceptions.RDSClientError):
        def __init__(self, code: str, message: str) -> None:
            super().__init__(code, message)

    def start_export_task(self: Any, kwargs: dict[str, Any]) -> Any:
        task_id = kwargs["export_task_identifier"]
        source_arn = kwargs["source_arn"]
        if task_id in self.export_tasks:
            raise exceptions.ExportTaskAlreadyExistsError(task_id)
        _check_kms(self.account_id, self.region_name, kwargs.get("kms_key_id", ""))
        _check_role(self.account_id, kwargs.get("iam_role_arn", ""))
        kind, ident = source_arn.split(":")[5], source_arn.split(":")[-1]
        now = datetime.now(UTC)
        if kind == "cluster":
            cluster = self.clusters.get(ident)
            if cluster is None:
                raise exceptions.DBClusterNotFoundError(ident)
            # RDS clones the live cluster and exports the clone: the data is current.
            clone = models.DBClusterSnapshot(self, cluster, f"export-clone-{task_id}")
            task = models.ExportTask(self, clone, kwargs)
            task.snapshot_time = now
            self.export_tasks[task_id] = task
        else:
            task = original(self, kwargs)
            task.snapshot_time = task.snapshot.created
        task.status = "STARTING"
        task.percent_progress = 0
        task.total_extracted_data_in_gb = 0
        task.task_start_time = now
        task.s3_bucket = kwargs.get("s3_bucket_name")
        return task

    def _check_kms(account: str, region: str, key_id: str) -> None:
        from moto.kms.models import kms_backends

        backend = kms_backends[account][region]
        key = None
        for candidate in backend.keys.values():
            if key_id in (candidate.id, candidate.arn):
                key = candidate
        if key is None or not key.enabled:
            raise _Fault(
                "KMSKeyNotAccessibleFault",
                f"The specified KMS key [{key_id}] does not exist, is not enabled or "
                "you do not have permissions to access it.",
            )

    def _check_role(account: str, role_arn: str) -> None:
        from moto.iam.models import iam_backends

        names = {r.arn for r in iam_backends[account]["global"].roles.values()}
        if role_arn not in names:
            raise _Fault("IamRoleNotFound", f"IAM role {role_arn} not found.")

    models.RDSBackend.start_export_task = start_export_task
    _PATCHED = True


def _backend(region: str = REGION) -> Any:
    from moto.rds.models import rds_backends

    return rds_backends[ACCOUNT_ID][region]


# --------------------------------------------------------------------------- the account


@dataclass
class Account:
    """What ``seed_account`` created: everything a Settings object needs on the AWS side."""

    endpoint: str
    region: str
    cluster_id: str
    instance_id: str
    bucket: str
    prefix: str
    kms_key_arn: str
    export_role_arn: str
    orchestrator_role_arn: str
    snapshots: list[str] = field(default_factory=list)

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def settings_env(self) -> dict[str, str]:
        return {
            "RDS2BQ_AWS_REGION": self.region,
            "RDS2BQ_SOURCE_ID": self.cluster_id,
            "RDS2BQ_S3_BUCKET": self.bucket,
            "RDS2BQ_S3_PREFIX": self.prefix,
            "RDS2BQ_KMS_KEY_ID": self.kms_key_arn,
            "RDS2BQ_EXPORT_ROLE_ARN": self.export_role_arn,
            "RDS2BQ_AWS_ROLE_ARN": self.orchestrator_role_arn,
            "RDS2BQ_AWS_ENDPOINT_URL": self.endpoint,
        }


def seed_account(
    endpoint: str,
    *,
    region: str = REGION,
    cluster_id: str = "shop-aurora",
    bucket: str | None = None,
    prefix: str = "rds2bq",
    snapshot_days: Iterable[int] = (3, 2, 1),
    creating_snapshot: bool = True,
    now: datetime | None = None,
) -> Account:
    """An Aurora MySQL cluster with automated snapshots in mixed states, a DB instance with its
    own, the bucket, the KMS key, the export role and the orchestrator role."""
    now = now or datetime.now(UTC)
    bucket = bucket or f"rds2bq-exports-{uuid.uuid4().hex[:8]}"
    account = Account(
        endpoint, region, cluster_id, f"{cluster_id}-instance-1", bucket, prefix, "", "", ""
    )
    kms, iam, s3, rds = (account.client(s) for s in ("kms", "iam", "s3", "rds"))
    account.kms_key_arn = kms.create_key(Description="rds2bq exports")["KeyMetadata"]["Arn"]
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {"Service": "export.rds.amazonaws.com"},
            }
        ],
    }
    account.export_role_arn = iam.create_role(
        RoleName=f"rds2bq-export-{bucket[-8:]}", AssumeRolePolicyDocument=json.dumps(trust)
    )["Role"]["Arn"]
    web = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Principal": {"Federated": "accounts.google.com"},
            }
        ],
    }
    account.orchestrator_role_arn = iam.create_role(
        RoleName=f"rds2bq-orchestrator-{bucket[-8:]}", AssumeRolePolicyDocument=json.dumps(web)
    )["Role"]["Arn"]
    if cluster_id not in _backend(region).clusters:
        rds.create_db_cluster(
            DBClusterIdentifier=cluster_id,
            Engine="aurora-mysql",
            MasterUsername="admin",
            MasterUserPassword="not-a-real-pw-1",
        )
        rds.create_db_instance(
            DBInstanceIdentifier=account.instance_id,
            DBClusterIdentifier=cluster_id,
            Engine="aurora-mysql",
            DBInstanceClass="db.r6g.large",
        )
    backend = _backend(region)
    # moto takes an automated snapshot at creation, stamped "now": drop it so that the seeded
    # history (and nothing else) decides which snapshot is the latest available one.
    for name in [
        n for n, s in backend.cluster_snapshots.items() if s.db_cluster_identifier == cluster_id
    ]:
        del backend.cluster_snapshots[name]
    for name in [
        n
        for n, s in backend.database_snapshots.items()
        if s.database.db_instance_identifier == account.instance_id
    ]:
        del backend.database_snapshots[name]
    for days in snapshot_days:
        taken = (now - timedelta(days=days)).replace(hour=18, minute=5, second=0, microsecond=0)
        account.snapshots.append(add_cluster_snapshot(cluster_id, taken, "available", region))
    if creating_snapshot:  # today's, still being created: must never be picked
        add_cluster_snapshot(cluster_id, now - timedelta(minutes=10), "creating", region)
    backend.clusters[cluster_id].status = "available"
    return account


def add_cluster_snapshot(
    cluster_id: str, taken: datetime, status: str, region: str = REGION
) -> str:
    backend = _backend(region)
    snap_id = f"rds:{cluster_id}-{taken:%Y-%m-%d-%H-%M}"
    snap = backend.create_auto_cluster_snapshot(cluster_id, snap_id)
    snap.created = taken
    snap.status = status
    return str(snap.arn)


def add_db_snapshot(instance_id: str, taken: datetime, status: str, region: str = REGION) -> str:
    backend = _backend(region)
    snap = backend.create_auto_snapshot(instance_id, f"rds:{instance_id}-{taken:%Y-%m-%d-%H-%M}")
    snap.created = taken
    snap.original_snapshot_create_time = taken
    snap.status = status
    return str(snap.arn)


# --------------------------------------------------------------------------- driving exports


def table_files(
    table_dir: str, batches: Iterable[int] = (1,), parts: int = 2, old_naming: bool = False
) -> list[str]:
    """Object keys (relative to the export root) of one table, named as RDS names them."""
    if old_naming:
        return [f"{table_dir}/part-{i:05d}-{uuid.uuid4()}.parquet" for i in range(parts)]
    keys = []
    for batch in batches:
        keys += [
            f"{table_dir}/{batch}/part-{i:05d}-{uuid.uuid4()}-c000.gz.parquet" for i in range(parts)
        ]
        keys.append(f"{table_dir}/{batch}/_SUCCESS")
    return keys


class ExportControl:
    """Drives moto's export tasks like RDS would, and writes the export's files to S3."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self._s3 = account.client("s3")

    def task(self, task_id: str) -> Any:
        return _backend(self.account.region).export_tasks[task_id]

    def tasks(self) -> dict[str, Any]:
        return dict(_backend(self.account.region).export_tasks)

    def progress(self, task_id: str, percent: int, gb: float = 0.0) -> None:
        task = self.task(task_id)
        task.status = "IN_PROGRESS"
        task.percent_progress = percent
        task.total_extracted_data_in_gb = gb

    def fail(self, task_id: str, cause: str, status: str = "FAILED") -> None:
        task = self.task(task_id)
        task.status = status
        task.failure_cause = cause
        task.task_end_time = datetime.now(UTC)

    def complete(
        self,
        task_id: str,
        tables: Mapping[str, list[str]],
        skipped: Mapping[str, str] | None = None,
        warning: str = "",
        end_time: datetime | None = None,
        data: Mapping[str, TableData] | None = None,
    ) -> None:
        """Write the files (``tables``: target ``db.schema.table`` -> keys relative to the export
        root) and the metadata, then mark the task COMPLETE. Each ``.parquet`` key is a real
        Parquet file: the target's rows (``data``, ``TableData()`` for a target it leaves out)
        split over its files in key order; ``_SUCCESS`` markers are empty. ``skipped`` lists
        tables AWS skipped with its reason: they appear in ``perTableStatus`` with a
        non-COMPLETE status."""
        task = self.task(task_id)
        root = "/".join(p for p in (task.s3_prefix, task_id) if p)
        data = data or {}
        for target, keys in tables.items():
            parquet = [k for k in keys if k.endswith(".parquet")]
            files = data_files(data.get(target, TableData()), len(parquet))
            bodies = dict(zip(parquet, files, strict=True))
            for key in keys:
                body = bodies.get(key, b"")
                self._s3.put_object(Bucket=task.s3_bucket, Key=f"{root}/{key}", Body=body)
        statuses = [
            {
                "target": target,
                "status": "COMPLETE",
                "sizeGB": 0.001 * len(keys),
                "schemaMetadata": {
                    "originalTypeMappings": type_mappings(data.get(target, TableData()))
                },
            }
            for target, keys in tables.items()
        ]
        statuses += [
            {"target": target, "status": "SKIPPED", "warningMessage": reason, "sizeGB": 0}
            for target, reason in (skipped or {}).items()
        ]
        half = max(1, len(statuses) // 2)
        chunks = [statuses[:half], statuses[half:]] if len(statuses) > 1 else [statuses]
        first = 1
        for chunk in chunks:
            last = first + len(chunk) - 1
            self._s3.put_object(
                Bucket=task.s3_bucket,
                Key=f"{root}/export_tables_info_{task_id}_from_{first}_to_{last}.json",
                Body=json.dumps({"perTableStatus": chunk}).encode(),
            )
            first = last + 1
        self._s3.put_object(
            Bucket=task.s3_bucket,
            Key=f"{root}/export_info_{task_id}.json",
            Body=json.dumps({"exportTaskIdentifier": task_id, "status": "COMPLETE"}).encode(),
        )
        task.status = "COMPLETE"
        task.percent_progress = 100
        task.total_extracted_data_in_gb = round(sum(len(k) for k in tables.values()) * 0.001, 3)
        task.warning_message = warning
        task.task_end_time = end_time or datetime.now(UTC)


def realistic_layout(
    export_only: Iterable[str],
    skipped: Mapping[str, str] | None = None,
    empty: Iterable[str] = (),
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Files for each exported table as RDS lays them out: most in one batch folder, some in
    several with gaps (``1/ 2/ 4/``: partitioned or unsplittable tables), one with the older
    naming and no batch folder; an ``empty`` table is COMPLETE with no data file (its batch
    folder holds only ``_SUCCESS``), so its DTS run matches nothing. Returns (tables, skipped)
    keyed by ``db.schema.table``."""
    skipped = dict(skipped or {})
    empty = frozenset(empty)
    tables: dict[str, list[str]] = {}
    reasons: dict[str, str] = {}
    for i, key in enumerate(export_only):
        parts = key.split(".")
        db, schema, name = (parts[0], parts[0], parts[1]) if len(parts) == 2 else parts
        target = f"{db}.{schema}.{name}"
        if key in skipped:
            reasons[target] = skipped[key]
            continue
        folder = f"{db}/{schema}.{name}"
        if key in empty:
            tables[target] = [f"{folder}/1/_SUCCESS"]
        elif i % 5 == 1:
            tables[target] = table_files(folder, (1, 2, 4), parts=3)
        elif i % 7 == 3:
            tables[target] = table_files(folder, old_naming=True)
        else:
            tables[target] = table_files(folder, (1,), parts=2)
    return tables, reasons


class ExportAutopilot:
    """Moves every export along as RDS would, for ``make stack``: STARTING, then IN_PROGRESS,
    then COMPLETE with a realistic layout after ``seconds``."""

    def __init__(
        self,
        control: ExportControl,
        seconds: float = 20.0,
        skipped: Mapping[str, str] | None = None,
        gb: float = 0.0,
        empty: Iterable[str] = (),
        data: Callable[[Iterable[str]], Mapping[str, TableData]] | None = None,
    ) -> None:
        """``skipped``: tables AWS leaves out, with its reason; ``gb``: what RDS reports as
        extracted when the export completes (whole GB, as RDS does); ``empty``: tables exported
        with no data file (``realistic_layout``); ``data``: each exported table's columns and
        rows, from the export's ``ExportOnly`` (default: ``TableData()``)."""
        import threading

        self.control = control
        self.seconds = seconds
        self.skipped = dict(skipped or {})
        self.gb = gb
        self.empty = frozenset(empty)
        self.data = data
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="export-autopilot", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            now = datetime.now(UTC)
            for task_id, task in self.control.tasks().items():
                if task.status not in ("STARTING", "IN_PROGRESS"):
                    continue
                elapsed = (now - task.task_start_time).total_seconds()
                if elapsed >= self.seconds:
                    wanted = {k: v for k, v in self.skipped.items() if k in task.export_only}
                    tables, skipped = realistic_layout(task.export_only, wanted, self.empty)
                    data = self.data(task.export_only) if self.data else None
                    self.control.complete(task_id, tables, skipped, data=data)
                    if self.gb:
                        task.total_extracted_data_in_gb = self.gb
                else:
                    fraction = elapsed / self.seconds
                    self.control.progress(task_id, int(100 * fraction), gb=int(self.gb * fraction))

    def stop(self) -> None:
        self._stop.set()

"""AWS: the export source (RDS), export tasks (RDS) and the export's metadata (S3).

Speaks the domain (``describe_export`` -> ExportObservation) and translates botocore errors into
ours at this boundary, naming the missing permission or the unusable resource.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from orchestrator.app.ports import ExportedTable
from orchestrator.core.errors import (
    AccessDeniedError,
    ExportQuotaError,
    KmsKeyError,
    NoSnapshotError,
    PermanentError,
    SourceNotFoundError,
    TransientError,
)
from orchestrator.core.model import ExportObservation, ExportStatus, Source, TableExportStatus
from orchestrator.core.redaction import redact

if TYPE_CHECKING:
    from orchestrator.config import Settings

log = logging.getLogger(__name__)

_THROTTLING = {
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "RequestThrottled",
    "SlowDown",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalError",
    "RequestTimeout",
}
_NOT_FOUND = {
    "DBClusterNotFoundFault",
    "DBClusterSnapshotNotFoundFault",
    "DBSnapshotNotFound",
    "DBSnapshotNotFoundFault",
    "DBInstanceNotFound",
    "DBInstanceNotFoundFault",
}
_ACTION_RE = re.compile(r"not authorized to perform:? ([\w-]+:\w+)")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: ClientError) -> str:
    # AWS's text is redacted where it enters: it may name an access key id ("The security token
    # included in the request is invalid: AKIA...") or echo a signature.
    return redact(str(exc.response.get("Error", {}).get("Message", "")) or str(exc))


def translate(exc: Exception, action: str) -> Exception:
    """Map one botocore error to our error family, with a message an operator can act on."""
    if isinstance(exc, BotoCoreError):  # connection, timeout, credential refresh
        return TransientError(redact(f"{action}: {exc}"))
    if not isinstance(exc, ClientError):
        return exc
    code, message = _code(exc), _message(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _THROTTLING or status >= 500:
        return TransientError(f"{action}: {code or status}: {message}")
    if code in _NOT_FOUND:
        return SourceNotFoundError(f"{action}: {message}")
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
        match = _ACTION_RE.search(message)
        missing = match.group(1) if match else action
        return AccessDeniedError(f"the orchestrator role lacks {missing}: {message}")
    if code in (
        "IamRoleNotFoundFault",
        "IamRoleMissingPermissionsFault",
        "IamRoleNotFound",
        "IamRoleMissingPermissions",
    ):
        return AccessDeniedError(
            f"the export role cannot be used ({code}): {message}. It must trust "
            "export.rds.amazonaws.com and allow s3:PutObject*, s3:GetObject*, s3:ListBucket, "
            "s3:DeleteObject*, s3:GetBucketLocation on the bucket; the orchestrator needs "
            "iam:PassRole on it"
        )
    if code in (
        "KMSKeyNotAccessibleFault",
        "KMSKeyNotAccessible",
        "NotFoundException",
        "DisabledException",
        "KMSInvalidStateException",
    ):
        return KmsKeyError(
            f"the KMS key cannot be used for the export ({code}): {message}. Its key policy must "
            "allow the orchestrator role kms:CreateGrant and kms:DescribeKey"
        )
    if "quota" in message.lower() or "limit" in code.lower() or "limit" in message.lower():
        return ExportQuotaError(f"{action}: {message}")
    return PermanentError(f"{action}: {code}: {message}")


@contextmanager
def _aws(action: str) -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, action) from exc


def _zone_name(tz: tzinfo) -> str:
    return str(getattr(tz, "key", None) or tz.tzname(None) or tz)


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class AwsExporter:
    """Implements ``ports.Exporter`` with injected botocore ``rds`` and ``s3`` clients."""

    def __init__(
        self, rds: Any, s3: Any, bucket: str, prefix: str, kms_key_id: str, export_role_arn: str
    ) -> None:
        self._rds = rds
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._kms_key_id = kms_key_id
        self._export_role_arn = export_role_arn
        # The last export listed whole, by table folder: a COMPLETE export's files do not change,
        # so the preflight's chunks share one listing (``_data_files_by_folder``).
        self._listed: tuple[str, dict[str, list[tuple[str, int]]]] | None = None
        self._listing = threading.Lock()

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self._prefix, *parts) if p)

    # -------------------------------------------------------------- source

    def resolve_source(
        self, kind: str, source_id: str, as_of: date | None = None, tz: tzinfo = UTC
    ) -> Source:
        if kind in ("cluster", "cluster-snapshot"):
            with _aws("rds:DescribeDBClusters"):
                clusters = self._rds.describe_db_clusters(DBClusterIdentifier=source_id)
            cluster = clusters["DBClusters"][0]
            if kind == "cluster" and as_of is None:
                return Source(cluster["DBClusterArn"], "cluster")
            with _aws("rds:DescribeDBClusterSnapshots"):
                pages = self._rds.get_paginator("describe_db_cluster_snapshots").paginate(
                    DBClusterIdentifier=source_id, SnapshotType="automated"
                )
                snaps = [
                    (s["DBClusterSnapshotArn"], s) for p in pages for s in p["DBClusterSnapshots"]
                ]
            return self._latest(snaps, source_id, as_of, tz, "cluster-snapshot")
        with _aws("rds:DescribeDBInstances"):
            self._rds.describe_db_instances(DBInstanceIdentifier=source_id)
        with _aws("rds:DescribeDBSnapshots"):
            pages = self._rds.get_paginator("describe_db_snapshots").paginate(
                DBInstanceIdentifier=source_id, SnapshotType="automated"
            )
            snaps = [(s["DBSnapshotArn"], s) for p in pages for s in p["DBSnapshots"]]
        return self._latest(snaps, source_id, as_of, tz, "db-snapshot")

    @staticmethod
    def _latest(
        snaps: list[tuple[str, dict[str, Any]]],
        source_id: str,
        as_of: date | None,
        tz: tzinfo,
        kind: str,
    ) -> Source:
        """The newest *available* automated snapshot (taken on the day ``as_of`` in ``tz`` when
        given): one still being created is never picked."""
        usable = []
        for arn, snap in snaps:
            created = _aware(snap.get("SnapshotCreateTime"))
            if snap.get("Status") != "available" or created is None:
                continue
            if as_of is not None and created.astimezone(tz).date() != as_of:
                continue
            usable.append((created, arn))
        if not usable:
            day = f" taken on {as_of.isoformat()} ({_zone_name(tz)})" if as_of else ""
            raise NoSnapshotError(
                f"no available automated snapshot of {source_id}{day}; "
                f"{len(snaps)} automated snapshot(s) exist"
            )
        created, arn = max(usable)
        return Source(arn, kind, created)

    # -------------------------------------------------------------- export tasks

    def running_exports(self) -> int:
        running = 0
        with _aws("rds:DescribeExportTasks"):
            pages = self._rds.get_paginator("describe_export_tasks").paginate(
                Filters=[{"Name": "status", "Values": ["starting", "in_progress"]}]
            )
            for page in pages:
                running += sum(
                    1
                    for t in page.get("ExportTasks", [])
                    if str(t.get("Status", "")).upper() in ("STARTING", "IN_PROGRESS")
                )
        return running

    def start_export(self, task_id: str, source: Source, export_only: Sequence[str]) -> None:
        try:
            self._rds.start_export_task(**self.start_request(task_id, source, export_only))
        except ClientError as exc:
            if _code(exc) in ("ExportTaskAlreadyExists", "ExportTaskAlreadyExistsFault"):
                log.info("export task %s already exists: adopted", task_id)
                return
            raise translate(exc, "rds:StartExportTask") from exc
        except BotoCoreError as exc:
            raise translate(exc, "rds:StartExportTask") from exc
        log.info(
            "export task %s started from %s (%d tables)", task_id, source.arn, len(export_only)
        )

    def start_request(
        self, task_id: str, source: Source, export_only: Sequence[str]
    ) -> dict[str, Any]:
        """StartExportTask's parameters. An empty prefix is left out, not sent as '': the export
        then goes to the bucket's root, as ``_key`` reads it."""
        request: dict[str, Any] = {
            "ExportTaskIdentifier": task_id,
            "SourceArn": source.arn,
            "S3BucketName": self._bucket,
            "IamRoleArn": self._export_role_arn,
            "KmsKeyId": self._kms_key_id,
            "ExportOnly": list(export_only),
        }
        if self._prefix:
            request["S3Prefix"] = self._prefix
        return request

    def describe_export(self, task_id: str) -> ExportObservation | None:
        try:
            tasks = self._rds.describe_export_tasks(ExportTaskIdentifier=task_id)["ExportTasks"]
        except ClientError as exc:
            if _code(exc) in ("ExportTaskNotFound", "ExportTaskNotFoundFault"):
                return None
            raise translate(exc, "rds:DescribeExportTasks") from exc
        except BotoCoreError as exc:
            raise translate(exc, "rds:DescribeExportTasks") from exc
        if not tasks:
            return None
        t = tasks[0]
        return ExportObservation(
            task_id=task_id,
            status=ExportStatus(str(t.get("Status", "STARTING")).upper()),
            percent=int(t.get("PercentProgress") or 0),
            extracted_gb=float(t.get("TotalExtractedDataInGB") or 0),
            failure_cause=redact(str(t.get("FailureCause") or "")),
            warning=redact(str(t.get("WarningMessage") or "")),
            source_arn=str(t.get("SourceArn") or ""),
            snapshot_time=_aware(t.get("SnapshotTime")),
            task_start_time=_aware(t.get("TaskStartTime")),
            task_end_time=_aware(t.get("TaskEndTime")),
        )

    # -------------------------------------------------------------- S3 metadata

    def read_tables_info(self, task_id: str) -> list[TableExportStatus]:
        prefix = self._key(task_id, f"export_tables_info_{task_id}")
        entries: list[TableExportStatus] = []
        with _aws("s3:ListBucket"):
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=prefix
            )
            keys = [
                o["Key"] for p in pages for o in p.get("Contents", []) if o["Key"].endswith(".json")
            ]
        for key in sorted(keys):
            with _aws("s3:GetObject"):
                body = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
            try:
                doc = json.loads(body)
            except ValueError as exc:
                raise PermanentError(f"export metadata {key} is not JSON: {exc}") from exc
            for item in doc.get("perTableStatus", []):
                entries.append(
                    TableExportStatus(
                        target=str(item.get("target", "")),
                        status=str(item.get("status", "")),
                        reason=redact(
                            str(
                                item.get("warningMessage")
                                or item.get("failureCause")
                                or item.get("reason")
                                or ""
                            )
                        ),
                        size_bytes=int(float(item.get("sizeGB") or 0) * 1024**3),
                    )
                )
        if not keys:
            raise TransientError(
                f"no export_tables_info file under s3://{self._bucket}/{prefix}* yet"
            )
        return entries

    def export_files_present(self, task_id: str, export_dir: str) -> bool:
        return next(self._data_files(task_id, export_dir), None) is not None

    def _data_files(self, task_id: str, export_dir: str) -> Iterator[tuple[str, int]]:
        """(key, size) of each data file of a table folder: every batch folder, both namings,
        never the ``_SUCCESS`` markers (docs/platform.md, "Layout")."""
        with _aws("s3:ListBucket"):
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=self._key(task_id, export_dir) + "/"
            )
            for page in pages:
                for o in page.get("Contents", []):
                    if o["Key"].endswith(".parquet"):
                        yield o["Key"], int(o["Size"])

    def _data_files_by_folder(
        self, task_id: str, export_dirs: Sequence[str]
    ) -> dict[str, list[tuple[str, int]]]:
        """``_data_files`` of many folders from one listing of the whole export (1,000 keys a
        page) instead of one listing per folder: a table's folder is the two path segments
        under the export's root (``db/schema.table``)."""
        with self._listing:
            if self._listed is None or self._listed[0] != task_id:
                self._listed = (task_id, self._list_export(task_id))
            listed = self._listed[1]
        return {d: list(listed.get(d, ())) for d in export_dirs}

    def _list_export(self, task_id: str) -> dict[str, list[tuple[str, int]]]:
        root = self._key(task_id) + "/"
        files: dict[str, list[tuple[str, int]]] = {}
        with _aws("s3:ListBucket"):
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=root
            )
            for page in pages:
                for o in page.get("Contents", []):
                    key = str(o["Key"])
                    if key.endswith(".parquet"):
                        folder = "/".join(key[len(root) :].split("/")[:2])
                        files.setdefault(folder, []).append((key, int(o["Size"])))
        return files

    def read_exported_tables(
        self, task_id: str, export_dirs: Sequence[str]
    ) -> dict[str, ExportedTable]:
        """Lists each folder, then reads every file's footer with one or two ranged GETs
        (``parquet_footers``), as many at once as the S3 client has connections."""
        from concurrent.futures import ThreadPoolExecutor

        from orchestrator.adapters.parquet_footers import combined

        if not export_dirs:
            return {}
        workers = int(self._s3.meta.config.max_pool_connections or 10)
        with ThreadPoolExecutor(workers, thread_name_prefix="footers") as pool:
            try:
                if len(export_dirs) > _LIST_EACH_UP_TO:
                    files = self._data_files_by_folder(task_id, export_dirs)
                else:
                    listed = pool.map(lambda d: list(self._data_files(task_id, d)), export_dirs)
                    files = dict(zip(export_dirs, listed, strict=True))
                footers = {
                    key: pool.submit(self._footer, key, size)
                    for keys in files.values()
                    for key, size in keys
                }
                return {
                    d: combined([footers[key].result() for key, _ in sorted(keys)])
                    for d, keys in files.items()
                }
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # a fault: read no further
                raise

    def _footer(self, key: str, size: int) -> ExportedTable:
        from orchestrator.adapters.parquet_footers import read_footer

        def fetch(first: int, last: int) -> bytes:
            with _aws("s3:GetObject"):
                answer = self._s3.get_object(
                    Bucket=self._bucket, Key=key, Range=f"bytes={first}-{last}"
                )
                return bytes(answer["Body"].read())

        return read_footer(fetch, size, f"s3://{self._bucket}/{key}")


# Up to this many folders (the preflight's first chunk) are listed one by one, at once; more: the
# whole export, once (later chunks share it).
_LIST_EACH_UP_TO = 16


def build_exporter(settings: Settings, session: Any) -> AwsExporter:
    """The exporter of ``settings``, its clients made from ``session`` (``aws_session``)."""
    from orchestrator.adapters.aws_session import client

    return AwsExporter(
        client(session, "rds", settings.aws_endpoint_url),
        client(session, "s3", settings.aws_endpoint_url),
        settings.s3_bucket,
        settings.s3_prefix,
        settings.kms_key_id,
        settings.export_role_arn,
    )

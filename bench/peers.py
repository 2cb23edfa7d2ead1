"""The wire peers the benchmarks run against, all local: moto's server (RDS, S3, STS, KMS, IAM),
the DTS REST stand-in, the Firestore and Pub/Sub emulators, the Slack stand-in.

They live in the harness process (the emulators in their own); what is measured runs in fresh
child processes, so a child's memory and imports are its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import DATASET, PROJECT

REALISTIC_COLUMNS = 20  # per table in export_tables_info (RDS lists every column's type mapping)
TABLES_INFO_CHUNK = 500  # table entries per export_tables_info_*_from_X_to_Y.json file


@dataclass
class Peers:
    work_dir: Path
    moto: Any = None
    account: Any = None
    control: Any = None
    _emulators: Future[tuple[Any, Any]] | None = None
    _started: list[Any] = field(default_factory=list)  # objects with .stop()
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(2))

    # ------------------------------------------------------------------ AWS (moto)

    def start_aws(self) -> None:
        from devstack.aws import ExportControl, seed_account, start_moto

        self.moto = start_moto()
        self._started.append(self.moto)
        self.account = seed_account(self.moto.endpoint)
        self.control = ExportControl(self.account)

    def aws_env(self) -> dict[str, str]:
        return {
            **self.account.settings_env(),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.account.region,
        }

    # ------------------------------------------------------------------ emulators

    def start_emulators_in_background(self) -> None:
        from devstack import processes

        def start() -> tuple[Any, Any]:
            with ThreadPoolExecutor(2) as pool:
                fs = pool.submit(processes.start_firestore_emulator)
                ps = pool.submit(processes.start_pubsub_emulator, PROJECT)
                return fs.result(), ps.result()

        self._emulators = self._pool.submit(start)

    def emulators(self) -> tuple[Any, Any]:
        """(firestore, pubsub) services, waiting for them if they are still starting."""
        assert self._emulators is not None, "start_emulators_in_background() first"
        firestore, pubsub = self._emulators.result(timeout=120)
        if firestore not in self._started:
            self._started += [firestore, pubsub]
            os.environ["FIRESTORE_EMULATOR_HOST"] = firestore.host
            os.environ["PUBSUB_EMULATOR_HOST"] = pubsub.host
            os.environ.setdefault("GOOGLE_CLOUD_PROJECT", PROJECT)
        return firestore, pubsub

    def emulator_env(self) -> dict[str, str]:
        firestore, pubsub = self.emulators()
        return {
            "FIRESTORE_EMULATOR_HOST": firestore.host,
            "PUBSUB_EMULATOR_HOST": pubsub.host,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
        }

    def create_topic(self, topic_path: str) -> None:
        from google.api_core import exceptions as gexc
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]

        self.emulators()
        publisher = pubsub_v1.PublisherClient()
        try:
            publisher.create_topic(request={"name": topic_path}, timeout=30)
        except gexc.AlreadyExists:
            pass
        finally:
            publisher.stop()

    # ------------------------------------------------------------------ DTS and Slack

    def start_dts(self, *, s3: bool = False, max_workers: int = 128, bigquery: Any = None) -> Any:
        """A DTS stand-in whose runs stay PENDING until ``finish_pending()`` (``s3``: they then
        list the export in moto, as the real service lists S3; ``bigquery``: a BigQuery stand-in
        its succeeded runs load into, as DTS loads the destination table)."""
        from devstack.dts import DtsStandin

        standin = DtsStandin(
            s3_endpoint=self.moto.endpoint if s3 else None,
            s3_region=self.account.region if s3 else "us-east-1",
            finish_delay=None,
            max_workers=max_workers,
            bigquery=bigquery,
        ).serve(0)
        self._started.append(standin)
        return standin

    def start_secret_manager(self, secrets: Mapping[str, str]) -> Any:
        """Secret Manager's REST ``versions.access`` (``devstack.google_standins``) holding
        ``secrets``; point ``RDS2BQ_SECRETS_ENDPOINT`` at ``http://{standin.host}``."""
        from devstack.google_standins import SecretManagerStandIn

        standin = SecretManagerStandIn(dict(secrets))
        self._started.append(standin)
        return standin

    def start_bigquery(self) -> Any:
        """The BigQuery stand-in with the bench's dataset; point ``RDS2BQ_BQ_ENDPOINT`` at its
        ``endpoint``. Tables are made by ``create_destinations``."""
        from devstack.bigquery_standin import start_bigquery

        standin = start_bigquery()
        standin.add_dataset(PROJECT, DATASET, "asia-northeast1")
        self._started.append(standin)
        return standin

    def start_slack(self) -> Any:
        from devstack import slack_standin

        standin = slack_standin.start()
        self._started.append(standin)
        return standin

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        if self._emulators is not None:
            # a start still under way is awaited, so that it can be stopped; a failed one left
            # nothing to stop
            with contextlib.suppress(Exception):
                self.emulators()
        for thing in reversed(self._started):
            try:
                thing.stop()
            except Exception as exc:  # stop what can be stopped
                print(f"warning: stopping {thing!r} failed: {exc}")
        self._started.clear()
        self._pool.shutdown(wait=False)


def start_peers() -> Peers:
    peers = Peers(Path(tempfile.mkdtemp(prefix="rds2bq-bench-")))
    try:
        peers.start_emulators_in_background()
        peers.start_aws()
    except BaseException:
        peers.stop()
        raise
    return peers


# --------------------------------------------------------------------------- DTS configs


def create_configs(settings: Any, target: str, threads: int = 8) -> int:
    """Create every configured table's transfer config in the stand-in at ``target``, through the
    production adapter (as ``sync`` would, without the BigQuery half) on the official client
    (REST transport, anonymous credentials). Returns how many."""
    from devstack.dts import client_for
    from orchestrator.adapters.dts import build_transfer_runner
    from orchestrator.app.ports import AccessKeys
    from orchestrator.app.sync import desired_configs

    transfers = build_transfer_runner(settings, client=client_for(target))
    keys = AccessKeys("AKIABENCHREADER00001", "bench-reader-secret-key-000000000000")
    wanted = list(desired_configs(settings).values())
    with ThreadPoolExecutor(threads) as pool:
        created = list(pool.map(lambda c: transfers.create_config(c, keys), wanted))
    return len(created)


# --------------------------------------------------------------------------- exports


def bench_table(n: int = REALISTIC_COLUMNS) -> Any:
    """The columns of every bench table (``devstack.parquet.TableData``): its files' schema and
    the type mappings ``export_tables_info`` lists."""
    from devstack.parquet import TableData

    kinds = ("bigint", "varchar(255)", "datetime", "decimal(12,2)")
    return TableData(tuple((f"column_{i:02d}", kinds[i % 4]) for i in range(n)))


def bench_columns() -> list[Any]:
    """The BigQuery columns a load of a bench table gives (``core.schema.Column``), read off its
    file's footer as the preflight reads it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from devstack.parquet import data_files
    from orchestrator.core.schema import Column, bigquery_type

    schema = pq.read_schema(pa.BufferReader(data_files(bench_table(), 1)[0]))
    return [Column(f.name, bigquery_type(str(f.type)), str(f.type)) for f in schema]


def create_destinations(settings: Any, endpoint: str) -> int:
    """Every table of ``settings`` in the BigQuery stand-in, as yesterday's load left it: the
    bench columns (so the preflight finds nothing to change). Through the production adapter."""
    from orchestrator.adapters.bigquery import build_destination_tables

    tables = build_destination_tables(settings, endpoint)
    columns = bench_columns()
    ids = [t.bq_table for t in settings.tables]
    return len(tables.create(ids, {i: columns for i in ids}))


@dataclass(frozen=True)
class BenchFooter:
    """What the preflight reads from each bench table's one data file."""

    rows: int
    export_schema: str  # core.schema.fingerprint of its columns


def bench_footer() -> BenchFooter:
    """The footer of the data file ``complete_export`` writes for every table, read as the
    preflight reads it (``parquet_footers``)."""
    from devstack.parquet import data_files
    from orchestrator.adapters.parquet_footers import read_footer
    from orchestrator.core.schema import fingerprint

    body = data_files(bench_table(), 1)[0]
    read = read_footer(lambda first, last: body[first : last + 1], len(body), "bench")
    return BenchFooter(read.rows, fingerprint(read.columns))


def complete_export(
    control: Any,
    task_id: str,
    table_refs: Sequence[Any],
    skipped: Mapping[str, str] | None = None,
) -> int:
    """Mark a moto export task COMPLETE and write its ``export_tables_info_*`` files as RDS does:
    one ``perTableStatus`` entry per table with its column type mappings, split over several
    files, and one data file per exported table (a load that matched nothing would be EMPTY).
    Returns the bytes of metadata."""
    from devstack.parquet import data_files, type_mappings

    task = control.task(task_id)
    root = "/".join(p for p in (task.s3_prefix, task_id) if p)
    now = datetime.now(UTC)
    table = bench_table()
    columns = type_mappings(table)
    body = data_files(table, 1)[0]  # one real Parquet file, the same for every table
    skipped = dict(skipped or {})
    entries: list[dict[str, Any]] = []
    s3_data: list[str] = []
    for ref in table_refs:
        target = sorted(ref.export_targets, key=len, reverse=True)[0]  # db.schema.table
        if ref.key in skipped:
            entries.append(
                {"target": target, "status": "SKIPPED", "warningMessage": skipped[ref.key]}
            )
            continue
        s3_data.append(f"{root}/{ref.export_dir}/1/part-00000.gz.parquet")
        entries.append(
            {
                "tableStatistics": {
                    "extractionStartTime": now.isoformat(),
                    "extractionEndTime": now.isoformat(),
                    "partitioningInfo": {"numberOfPartitions": 1, "numberOfCompletedPartitions": 1},
                },
                "schemaMetadata": {"originalTypeMappings": columns},
                "status": "COMPLETE",
                "sizeGB": 0.0123,
                "target": target,
            }
        )
    s3 = control.account.client("s3")
    for key in s3_data:
        s3.put_object(Bucket=task.s3_bucket, Key=key, Body=body)
    written = 0
    for start in range(0, len(entries), TABLES_INFO_CHUNK):
        chunk = entries[start : start + TABLES_INFO_CHUNK]
        body = json.dumps({"perTableStatus": chunk}).encode()
        written += len(body)
        last = start + len(chunk)
        s3.put_object(
            Bucket=task.s3_bucket,
            Key=f"{root}/export_tables_info_{task_id}_from_{start + 1}_to_{last}.json",
            Body=body,
        )
    s3.put_object(
        Bucket=task.s3_bucket,
        Key=f"{root}/export_info_{task_id}.json",
        Body=json.dumps({"exportTaskIdentifier": task_id, "status": "COMPLETE"}).encode(),
    )
    task.status = "COMPLETE"
    task.percent_progress = 100
    task.total_extracted_data_in_gb = round(0.0123 * len(entries), 3)
    task.task_end_time = now
    return written

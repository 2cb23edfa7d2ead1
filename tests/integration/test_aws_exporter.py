"""The AWS adapter against moto's server over real HTTP."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from devstack.aws import (
    ExportControl,
    add_db_snapshot,
    seed_account,
    table_files,
)
from devstack.parquet import TableData
from orchestrator.adapters.aws import AwsExporter, translate
from orchestrator.adapters.aws_session import build_session, client
from orchestrator.core.errors import (
    AccessDeniedError,
    ExportQuotaError,
    KmsKeyError,
    NoSnapshotError,
    PermanentError,
    SourceNotFoundError,
    TransientError,
)
from orchestrator.core.model import ExportStatus, Source
from orchestrator.core.schema import Column

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def account(moto_server: Any) -> Any:
    return seed_account(moto_server.endpoint, cluster_id="shop-aurora", now=NOW)


def exporter_for(account: Any, **overrides: str) -> AwsExporter:
    session = build_session("default", account.region)
    return AwsExporter(
        client(session, "rds", account.endpoint),
        client(session, "s3", account.endpoint),
        overrides.get("bucket", account.bucket),
        account.prefix,
        overrides.get("kms", account.kms_key_arn),
        overrides.get("role", account.export_role_arn),
    )


def test_live_cluster_source(account: Any) -> None:
    source = exporter_for(account).resolve_source("cluster", "shop-aurora")
    assert source.arn.endswith(":cluster:shop-aurora") and source.snapshot_time is None


def test_latest_available_cluster_snapshot_never_one_being_created(account: Any) -> None:
    source = exporter_for(account).resolve_source("cluster-snapshot", "shop-aurora")
    assert source.arn == account.snapshots[-1]  # 1 day old; today's is still "creating"
    assert source.snapshot_time is not None and NOW - source.snapshot_time > timedelta(hours=2)


def test_snapshot_as_of_a_date_picks_that_days_snapshot(account: Any) -> None:
    day = (NOW - timedelta(days=2)).date()
    source = exporter_for(account).resolve_source("cluster", "shop-aurora", as_of=day)
    assert source.arn == account.snapshots[1] and source.kind == "cluster-snapshot"
    with pytest.raises(NoSnapshotError, match="taken on"):
        exporter_for(account).resolve_source("cluster", "shop-aurora", as_of=NOW.date())


def test_db_instance_snapshots(account: Any) -> None:
    old = add_db_snapshot(account.instance_id, NOW - timedelta(days=1), "available")
    add_db_snapshot(account.instance_id, NOW - timedelta(minutes=5), "creating")
    source = exporter_for(account).resolve_source("db-snapshot", account.instance_id)
    assert source.arn == old


def test_unknown_source_is_named(account: Any) -> None:
    with pytest.raises(SourceNotFoundError, match="no-such-cluster"):
        exporter_for(account).resolve_source("cluster", "no-such-cluster")
    with pytest.raises(SourceNotFoundError):
        exporter_for(account).resolve_source("db-snapshot", "no-such-instance")


def test_start_adopts_an_existing_task_and_describes_it(account: Any) -> None:
    exporter = exporter_for(account)
    source = exporter.resolve_source("cluster", "shop-aurora")
    exporter.start_export("rds2bq-test-202611270000", source, ["shop.orders"])
    exporter.start_export("rds2bq-test-202611270000", source, ["shop.orders"])  # adopted
    obs = exporter.describe_export("rds2bq-test-202611270000")
    assert obs is not None and obs.status is ExportStatus.STARTING
    assert obs.source_arn == source.arn
    assert exporter.describe_export("rds2bq-test-000000000000") is None


def test_unusable_kms_key_and_missing_export_role_are_explained(account: Any) -> None:
    source = Source(account.snapshots[0], "cluster-snapshot")
    bad_key = account.kms_key_arn.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
    with pytest.raises(KmsKeyError, match="kms:CreateGrant"):
        exporter_for(account, kms=bad_key).start_export("rds2bq-test-kms", source, ["shop.a"])
    with pytest.raises(AccessDeniedError, match=r"export\.rds\.amazonaws\.com"):
        exporter_for(account, role="arn:aws:iam::123456789012:role/nope").start_export(
            "rds2bq-test-role", source, ["shop.a"]
        )


def test_running_exports_are_counted(account: Any) -> None:
    exporter = exporter_for(account)
    control = ExportControl(account)
    before = exporter.running_exports()
    source = exporter.resolve_source("cluster", "shop-aurora")
    exporter.start_export("rds2bq-test-count", source, ["shop.orders"])
    assert exporter.running_exports() == before + 1
    control.complete("rds2bq-test-count", {})
    assert exporter.running_exports() == before


def test_tables_info_is_read_from_every_file(account: Any) -> None:
    exporter = exporter_for(account)
    source = exporter.resolve_source("cluster", "shop-aurora")
    exporter.start_export("rds2bq-test-info", source, ["shop.orders", "shop.items", "shop.x"])
    ExportControl(account).complete(
        "rds2bq-test-info",
        {
            "shop.shop.orders": table_files("shop/shop.orders", (1, 2)),
            "shop.shop.items": table_files("shop/shop.items", old_naming=True),
        },
        skipped={"shop.shop.x": "column name contains ';'"},
    )
    entries = {e.target: e for e in exporter.read_tables_info("rds2bq-test-info")}
    assert set(entries) == {"shop.shop.orders", "shop.shop.items", "shop.shop.x"}
    assert entries["shop.shop.x"].status == "SKIPPED"
    assert entries["shop.shop.x"].reason == "column name contains ';'"
    assert exporter.export_files_present("rds2bq-test-info", "shop/shop.orders")
    assert not exporter.export_files_present("rds2bq-test-info", "shop/shop.x")


def test_exported_tables_are_read_from_their_footers(account: Any) -> None:
    exporter = exporter_for(account)
    source = exporter.resolve_source("cluster", "shop-aurora")
    task = "rds2bq-test-footers"
    exporter.start_export(task, source, ["shop.orders", "shop.items", "shop.empty"])
    items = TableData((("sku", "varchar(32)"), ("price", "decimal(40,10)")), rows=5)
    ExportControl(account).complete(
        task,
        {
            "shop.shop.orders": table_files("shop/shop.orders", (1, 2, 4), parts=3),
            "shop.shop.items": table_files("shop/shop.items", old_naming=True),
            "shop.shop.empty": ["shop/shop.empty/1/_SUCCESS"],
        },
        data={"shop.shop.items": items},
    )
    dirs = ["shop/shop.orders", "shop/shop.items", "shop/shop.empty", "shop/shop.gone"]
    tables = exporter.read_exported_tables(task, dirs)
    assert set(tables) == set(dirs)
    orders = tables["shop/shop.orders"]
    assert (orders.rows, orders.files) == (12, 9) and orders.bytes > 9 * 500
    assert orders.columns == (
        Column("id", "INT64", "int64"),
        Column("name", "STRING", "string"),
        Column("amount", "NUMERIC", "decimal128(12, 2)"),
        Column("updated_at", "TIMESTAMP", "timestamp[us, tz=UTC]"),
    )
    assert tables["shop/shop.items"].rows == 5 and tables["shop/shop.items"].files == 2
    assert [c.type for c in tables["shop/shop.items"].columns] == ["STRING", "STRING"]
    for name in ("shop/shop.empty", "shop/shop.gone"):
        assert tables[name].rows == 0 and tables[name].files == 0 and tables[name].columns == ()
    assert exporter.read_exported_tables(task, []) == {}
    # the metadata's type mappings follow the columns
    info = account.client("s3").get_object(
        Bucket=account.bucket,
        Key=f"{account.prefix}/{task}/export_tables_info_{task}_from_1_to_1.json",
    )
    mappings = json.loads(info["Body"].read())["perTableStatus"][0]["schemaMetadata"]
    assert [m["columnName"] for m in mappings["originalTypeMappings"]] == [
        c.name for c in orders.columns
    ]


def test_many_folders_come_from_one_listing_of_the_export_with_the_same_answer(
    account: Any,
) -> None:
    # GIVEN an export of 20 tables (more than are listed one by one), one of them a prefix of
    # another's name (shop.t1 and shop.t10 must not share files)
    exporter = exporter_for(account)
    task = "rds2bq-test-many-folders"
    names = [f"t{i}" for i in range(20)]
    exporter.start_export(
        task, exporter.resolve_source("cluster", "shop-aurora"), [f"shop.{n}" for n in names]
    )
    ExportControl(account).complete(
        task,
        {
            f"shop.shop.{n}": table_files(f"shop/shop.{n}", (1, 2), parts=i % 3 + 1)
            for i, n in enumerate(names)
        },
    )
    dirs = [f"shop/shop.{n}" for n in names] + ["shop/shop.gone"]
    calls: list[str] = []
    s3 = exporter._s3
    s3.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    # WHEN they are read together
    together = exporter.read_exported_tables(task, dirs)
    # THEN one listing served them all, and each folder holds what a listing of its own finds
    assert calls.count("ListObjectsV2") == 1
    for d in dirs:
        assert together[d] == exporter.read_exported_tables(task, [d])[d], d
    assert together["shop/shop.t1"].files == 4 and together["shop/shop.t10"].files == 4
    assert together["shop/shop.gone"].rows == 0


def test_a_data_file_that_is_not_parquet_is_permanent_and_named(account: Any) -> None:
    key = f"{account.prefix}/rds2bq-test-junk/shop/shop.orders/1/part-00000-x-c000.gz.parquet"
    account.client("s3").put_object(Bucket=account.bucket, Key=key, Body=b"PAR1 but not really")
    with pytest.raises(PermanentError, match=f"s3://{account.bucket}/{key} is not a Parquet"):
        exporter_for(account).read_exported_tables("rds2bq-test-junk", ["shop/shop.orders"])


def test_footers_are_read_with_ranged_gets_never_the_whole_file(account: Any) -> None:
    out = io.BytesIO()
    blobs = pa.table({"blob": [bytes([i]) * 1024**2 for i in range(5)]})  # 5 MiB, stored as is
    pq.write_table(blobs, out, compression="none")
    size = len(out.getvalue())
    s3 = account.client("s3")
    folder = f"{account.prefix}/rds2bq-test-ranged/shop/shop.blobs"
    for key in (f"{folder}/1/part-00000-a-c000.gz.parquet", f"{folder}/part-00001-b.parquet"):
        s3.put_object(Bucket=account.bucket, Key=key, Body=out.getvalue())
    exporter = exporter_for(account)
    ranges: list[str] = []
    fetched: list[int] = []
    events = exporter._s3.meta.events
    events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: ranges.append(params["Range"])
    )
    events.register(
        "after-call.s3.GetObject", lambda parsed, **_: fetched.append(parsed["ContentLength"])
    )
    blobs_table = exporter.read_exported_tables("rds2bq-test-ranged", ["shop/shop.blobs"])
    assert blobs_table["shop/shop.blobs"].rows == 10
    assert blobs_table["shop/shop.blobs"].bytes == 2 * size > 10 * 1024**2
    # one GET per file, of its last 64 KiB (pyarrow's footer read)
    assert ranges == [f"bytes={size - 65536}-{size - 1}"] * 2
    assert fetched == [65536, 65536]
    assert exporter._s3.meta.config.max_pool_connections == 32  # footers read 32 at once


def test_missing_tables_info_is_transient(account: Any) -> None:
    with pytest.raises(TransientError, match="export_tables_info"):
        exporter_for(account).read_tables_info("rds2bq-test-nothing")


def error(code: str, message: str = "m", status: int = 400) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "StartExportTask",
    )


@pytest.mark.parametrize(
    ("exc", "expected", "text"),
    [
        (error("ThrottlingException", status=400), TransientError, "ThrottlingException"),
        (error("InternalFailure", status=500), TransientError, "InternalFailure"),
        (
            error(
                "AccessDenied",
                "User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: "
                "rds:StartExportTask on resource: arn",
            ),
            AccessDeniedError,
            "lacks rds:StartExportTask",
        ),
        (error("DBClusterNotFoundFault"), SourceNotFoundError, "m"),
        (error("KMSKeyNotAccessibleFault"), KmsKeyError, "kms:DescribeKey"),
        (error("IamRoleMissingPermissions"), AccessDeniedError, "iam:PassRole"),
        (
            error("InvalidParameterCombination", "Export task quota exceeded"),
            ExportQuotaError,
            "quota",
        ),
        (error("InvalidExportOnly", "bad name"), PermanentError, "InvalidExportOnly"),
    ],
)
def test_error_translation(exc: ClientError, expected: type, text: str) -> None:
    translated = translate(exc, "rds:StartExportTask")
    assert type(translated) is expected and text in str(translated)

"""The DTS stand-in loading a SUCCEEDED run's Parquet files into the BigQuery stand-in, as a
WRITE_TRUNCATE load job leaves the table: the footers' rows and schema, and the job's log line the
DTS adapter reads; the BigQuery adapter then sees the rows and columns the export wrote."""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.cloud.bigquery_datatransfer_v1 import types

from devstack.bigquery_standin import BigQueryStandin
from devstack.dts import DtsStandin, client_for, start
from orchestrator.adapters.bigquery import build_destination_tables
from orchestrator.adapters.dts import build_transfer_runner
from orchestrator.core.schema import Column
from tests.conftest import GCP_PROJECT
from tests.integration.conftest import S3_REGION, Bucket, make_settings
from tests.integration.test_dts_standin import create, export_root, s3_config, slot, start_run

pytestmark = pytest.mark.integration

DATASET = "rds_shop"


@pytest.fixture
def loading(moto_server: Any, bigquery_standin: BigQueryStandin) -> Iterator[DtsStandin]:
    """A DTS stand-in whose runs load into the BigQuery stand-in (finished on demand)."""
    bigquery_standin.add_dataset(GCP_PROJECT, DATASET, "asia-northeast1")
    standin = start(
        0,
        moto_server.endpoint,
        None,
        finish_delay=None,
        s3_region=S3_REGION,
        bigquery=bigquery_standin,
    )
    yield standin
    standin.stop()


def parquet(rows: int, with_note: bool = False) -> bytes:
    columns: dict[str, Any] = {
        "id": pa.array(range(rows), pa.int64()),
        "total": pa.array([Decimal("1.50")] * rows, pa.decimal128(12, 2)),
        "placed_at": pa.array([0] * rows, pa.timestamp("us", tz="UTC")),
    }
    if with_note:
        columns["note"] = pa.array(["x"] * rows, pa.string())
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


def put(bucket: Bucket, key: str, body: bytes) -> None:
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=body)


def run(standin: DtsStandin, run_time: Any, bucket: Bucket) -> Any:
    client = client_for(standin.target)
    name = start_run(client, create(client, s3_config(bucket.name)).name, run_time)
    standin.finish_pending()
    return standin.run(name)


def test_a_succeeded_run_loads_its_files_rows_and_schema(
    loading: DtsStandin, bigquery_standin: BigQueryStandin, bucket: Bucket
) -> None:
    # GIVEN the destination table, created without a schema, and an export of shop.orders in
    # two files, the alphabetically last with a new column
    tables = build_destination_tables(make_settings(), endpoint=bigquery_standin.endpoint)
    tables.create(["shop__orders"])
    run_time = slot(1, 0)
    folder = f"{export_root(run_time)}/shop/shop.orders/1"
    put(bucket, f"{folder}/part-00000-a-c000.gz.parquet", parquet(3))
    put(bucket, f"{folder}/part-00001-b-c000.gz.parquet", parquet(4, with_note=True))
    # WHEN its run finishes
    record = run(loading, run_time, bucket)
    # THEN it SUCCEEDED and the table holds the files' rows, with the last file's schema
    assert record.state == types.TransferState.SUCCEEDED
    assert tables.row_count("shop__orders") == 7
    assert tables.describe(["shop__orders"])["shop__orders"].columns == (
        Column("id", "INT64"),
        Column("total", "NUMERIC"),
        Column("placed_at", "TIMESTAMP"),
        Column("note", "STRING"),
    )
    # AND its transfer logs say so as DTS does: the DTS adapter sees a load of rows, not EMPTY
    texts = [text for _, text in record.messages]
    assert texts[-1].endswith(
        "(table shop__orders) completed successfully. Number of records: 7, with errors: 0."
    )
    runner = build_transfer_runner(make_settings(), client=client_for(loading.target))
    assert runner.empty_load(record.name) == ""


def test_a_run_into_a_missing_table_fails_as_dts_does(loading: DtsStandin, bucket: Bucket) -> None:
    run_time = slot(1, 0)
    key = f"{export_root(run_time)}/shop/shop.orders/1/part-00000-a-c000.gz.parquet"
    put(bucket, key, parquet(2))
    record = run(loading, run_time, bucket)
    assert record.state == types.TransferState.FAILED
    assert (
        record.run.error_status.message == f"Not found: Table {GCP_PROJECT}:{DATASET}.shop__orders"
    )


def test_a_file_that_is_no_parquet_fails_the_run(
    loading: DtsStandin, bigquery_standin: BigQueryStandin, bucket: Bucket
) -> None:
    build_destination_tables(make_settings(), endpoint=bigquery_standin.endpoint).create(
        ["shop__orders"]
    )
    run_time = slot(1, 0)
    bucket.put(f"{export_root(run_time)}/shop/shop.orders/1/part-00000-a-c000.gz.parquet")
    record = run(loading, run_time, bucket)
    assert record.state == types.TransferState.FAILED
    assert "Error while reading data" in record.run.error_status.message


def test_a_run_without_files_loads_nothing(
    loading: DtsStandin, bigquery_standin: BigQueryStandin, bucket: Bucket
) -> None:
    tables = build_destination_tables(make_settings(), endpoint=bigquery_standin.endpoint)
    tables.create(["shop__orders"])
    bigquery_standin.load_table(GCP_PROJECT, DATASET, "shop__orders", 5, [])  # yesterday's rows
    record = run(loading, slot(1, 0), bucket)
    assert record.state == types.TransferState.SUCCEEDED
    assert [text for _, text in record.messages] == [
        f"No new files found matching {record.data_path}"
    ]
    assert tables.row_count("shop__orders") == 5


def test_files_without_rows_load_zero_records_which_the_adapter_reads_as_empty(
    loading: DtsStandin, bigquery_standin: BigQueryStandin, bucket: Bucket
) -> None:
    build_destination_tables(make_settings(), endpoint=bigquery_standin.endpoint).create(
        ["shop__orders"]
    )
    run_time = slot(1, 0)
    put(bucket, f"{export_root(run_time)}/shop/shop.orders/1/part-00000-a.gz.parquet", parquet(0))
    record = run(loading, run_time, bucket)
    assert record.state == types.TransferState.SUCCEEDED
    runner = build_transfer_runner(make_settings(), client=client_for(loading.target))
    assert "Number of records: 0, with errors: 0." in runner.empty_load(record.name)

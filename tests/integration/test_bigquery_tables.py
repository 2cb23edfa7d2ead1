"""The BigQuery adapter's schemas and row counts (``describe``, ``add_columns``, ``row_count``,
``create`` with a schema) through the official client, on the BigQuery stand-in, and the stand-in
refusing the schema changes BigQuery refuses."""

from __future__ import annotations

import time
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import bigquery

from devstack.bigquery_standin import BigQueryStandin
from orchestrator.adapters.bigquery import BigQueryTables, build_destination_tables
from orchestrator.adapters.google_errors import local_client_options
from orchestrator.app.ports import DestinationTable
from orchestrator.core.errors import TransientError
from orchestrator.core.schema import Column
from tests.conftest import GCP_PROJECT
from tests.integration.conftest import make_settings

pytestmark = pytest.mark.integration

DATASET = "rds_shop"
ORDERS = (Column("id", "INT64"), Column("total", "NUMERIC"), Column("placed_at", "TIMESTAMP"))


@pytest.fixture
def tables(bigquery_standin: BigQueryStandin) -> BigQueryTables:
    bigquery_standin.add_dataset(GCP_PROJECT, DATASET, "asia-northeast1")
    return build_destination_tables(make_settings(), endpoint=bigquery_standin.endpoint)


def sdk_client(standin: BigQueryStandin) -> bigquery.Client:
    return bigquery.Client(project=GCP_PROJECT, **local_client_options(standin.endpoint))


def fields_of(standin: BigQueryStandin, table: str) -> list[tuple[str, str, str]]:
    resource = standin.table(GCP_PROJECT, DATASET, table) or {}
    return [(f["name"], f["type"], f["mode"]) for f in resource.get("schema", {}).get("fields", [])]


def test_create_with_the_sources_schema_and_describe_it(
    tables: BigQueryTables, bigquery_standin: BigQueryStandin
) -> None:
    # WHEN one table is created with the export's columns and one without
    created = tables.create(["shop__orders", "shop__items"], {"shop__orders": ORDERS})
    # THEN the first has them as NULLABLE fields (BigQuery answers with the legacy type names)
    assert created == ["shop__orders", "shop__items"]
    assert fields_of(bigquery_standin, "shop__orders") == [
        ("id", "INTEGER", "NULLABLE"),
        ("total", "NUMERIC", "NULLABLE"),
        ("placed_at", "TIMESTAMP", "NULLABLE"),
    ]
    assert fields_of(bigquery_standin, "shop__items") == []
    # AND describe reads them back in standard SQL names, with no rows yet; an absent table is
    # left out
    assert tables.describe(["shop__orders", "shop__items", "shop__gone"]) == {
        "shop__orders": DestinationTable(columns=ORDERS, rows=0),
        "shop__items": DestinationTable(columns=(), rows=0),
    }


def test_row_count_follows_a_load_and_is_none_for_an_absent_table(
    tables: BigQueryTables, bigquery_standin: BigQueryStandin
) -> None:
    tables.create(["shop__orders"])
    assert tables.row_count("shop__orders") == 0
    bigquery_standin.load_table(
        GCP_PROJECT, DATASET, "shop__orders", 1234, [{"name": "id", "type": "INT64"}]
    )
    assert tables.row_count("shop__orders") == 1234
    assert tables.describe(["shop__orders"])["shop__orders"] == DestinationTable(
        columns=(Column("id", "INT64"),), rows=1234
    )
    assert tables.row_count("shop__gone") is None


def test_add_columns_appends_the_new_ones_only(
    tables: BigQueryTables, bigquery_standin: BigQueryStandin
) -> None:
    tables.create(["shop__orders"], {"shop__orders": ORDERS[:2]})
    # WHEN columns are added, one of them already there under another case
    tables.add_columns("shop__orders", [Column("TOTAL", "NUMERIC"), Column("note", "STRING")])
    # THEN only the new one is appended, NULLABLE, after the others
    assert fields_of(bigquery_standin, "shop__orders") == [
        ("id", "INTEGER", "NULLABLE"),
        ("total", "NUMERIC", "NULLABLE"),
        ("note", "STRING", "NULLABLE"),
    ]
    # AND adding nothing new sends no patch
    before = len(bigquery_standin.state.requests)
    tables.add_columns("shop__orders", [Column("note", "STRING")])
    assert [m for m, _ in bigquery_standin.state.requests[before:]] == ["GET"]


class LoadAfterFirstGet(bigquery.Client):
    """A client during whose first tables.get a load changes the table (its etag goes stale)."""

    standin: BigQueryStandin
    gets = 0

    def get_table(self, *args: Any, **kwargs: Any) -> bigquery.Table:
        table = super().get_table(*args, **kwargs)
        self.gets += 1
        if self.gets == 1:
            fields = [{"name": "id", "type": "INTEGER"}, {"name": "total", "type": "NUMERIC"}]
            self.standin.load_table(GCP_PROJECT, DATASET, table.table_id, 7, fields)
        return table


def test_add_columns_reads_again_once_when_the_table_changed_meanwhile(
    tables: BigQueryTables, bigquery_standin: BigQueryStandin
) -> None:
    tables.create(["shop__orders"], {"shop__orders": ORDERS[:1]})
    client = LoadAfterFirstGet(
        project=GCP_PROJECT, **local_client_options(bigquery_standin.endpoint)
    )
    client.standin = bigquery_standin
    racing = BigQueryTables(
        client, project=GCP_PROJECT, dataset=DATASET, location="asia-northeast1"
    )
    # WHEN a load replaces the schema between the adapter's read and its patch (412 on If-Match)
    racing.add_columns("shop__orders", [Column("note", "STRING")])
    # THEN the patch is made on the table as the load left it
    assert client.gets == 2
    assert [f[0] for f in fields_of(bigquery_standin, "shop__orders")] == ["id", "total", "note"]
    assert ("PATCH", "/bigquery/v2/projects/rds2bq-test/datasets/rds_shop/tables/shop__orders") in (
        bigquery_standin.state.requests
    )


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda fs: [bigquery.SchemaField("id", "STRING"), *fs[1:]], "id has changed type"),
        (lambda fs: fs[1:], "id is missing in new schema"),
    ],
)
def test_the_standin_refuses_a_schema_change_bigquery_refuses(
    tables: BigQueryTables, bigquery_standin: BigQueryStandin, change: Any, words: str
) -> None:
    tables.create(["shop__orders"], {"shop__orders": ORDERS})
    client = sdk_client(bigquery_standin)
    table = client.get_table(f"{GCP_PROJECT}.{DATASET}.shop__orders")
    table.schema = change(list(table.schema))
    with pytest.raises(gexc.BadRequest, match="Provided Schema does not match Table") as caught:
        client.update_table(table, ["schema"], retry=None)
    assert words in str(caught.value)
    assert len(fields_of(bigquery_standin, "shop__orders")) == 3  # unchanged


def test_the_standin_refuses_a_stale_etag(
    tables: BigQueryTables, bigquery_standin: BigQueryStandin
) -> None:
    tables.create(["shop__orders"], {"shop__orders": ORDERS})
    client = sdk_client(bigquery_standin)
    table = client.get_table(f"{GCP_PROJECT}.{DATASET}.shop__orders")
    bigquery_standin.load_table(GCP_PROJECT, DATASET, "shop__orders", 3, [])
    table.schema = [*table.schema, bigquery.SchemaField("note", "STRING")]
    with pytest.raises(gexc.PreconditionFailed):
        client.update_table(table, ["schema"], retry=None)


def test_describe_translates_a_transient_fault(
    tables: BigQueryTables, bigquery_standin: BigQueryStandin
) -> None:
    tables.create(["shop__orders"])
    bigquery_standin.fail_next(1, 503)
    with pytest.raises(TransientError, match="BigQuery get table"):
        tables.describe(["shop__orders"])


def test_describe_of_many_tables_is_concurrent(
    tables: BigQueryTables, bigquery_standin: BigQueryStandin
) -> None:
    ids = [f"shop__t{i:04d}" for i in range(2000)]
    fields = [{"name": "id", "type": "INTEGER"}, {"name": "v", "type": "STRING"}]
    with bigquery_standin.state.lock:
        for table_id in ids[:1990]:  # ten are absent
            bigquery_standin.state.tables[(GCP_PROJECT, DATASET, table_id)] = {
                "kind": "bigquery#table",
                "tableReference": {
                    "projectId": GCP_PROJECT,
                    "datasetId": DATASET,
                    "tableId": table_id,
                },
                "schema": {"fields": fields},
                "numRows": "5",
                "etag": "e",
            }
    started = time.monotonic()
    found = tables.describe(ids)
    elapsed = time.monotonic() - started
    assert len(found) == 1990 and found[ids[0]].rows == 5
    # one tables.get per table, concurrently: ~2.5-3.5 s here, where one at a time took ~18 s (in
    # one process, client and stand-in threads wait on each other for the GIL at every call)
    assert elapsed < 9.0, f"describe of 2,000 tables took {elapsed:.1f}s"

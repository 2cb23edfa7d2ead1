"""BigQuery destination tables: DTS needs each one to exist before a config's first run.

Implements ``sync.DestinationTables`` with ``google.cloud.bigquery.Client`` (injected).

Tables are created WITHOUT a schema, on purpose:

- Parquet is self-describing. DTS's own docs ask for a schema up front only for CSV and JSON
  ("For CSV and JSON files, you must also define the table schema", Cloud Storage / S3 transfer
  prerequisites); for Avro, Parquet and ORC the load takes the schema from the files.
- Our loads are WRITE_TRUNCATE: each run replaces the table's data, and the load job sets the
  schema from the files it reads, which are the source's DDL as RDS exported it.
- A schema written here would be a second copy of the source's DDL, and it would drift: a column
  added in Aurora would then fail (or be dropped from) the load instead of just appearing.

If a source change ever makes a load refuse the existing table's schema, dropping the table and
running ``sync`` again recreates it empty, and the next run loads it afresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import bigquery

from orchestrator.adapters.google_errors import local_client_options, translated
from orchestrator.config import Settings
from orchestrator.core.errors import PermanentError

TIMEOUT = 30.0
# retries are the caller's; None turns the client's off (its annotations say Retry only)
_NO_RETRY: Any = None


def _translated(what: str) -> AbstractContextManager[None]:
    return translated("BigQuery", what)


class BigQueryTables:
    """Destination tables in one dataset, which must exist in the configs' location."""

    def __init__(
        self,
        client: bigquery.Client,
        *,
        project: str,
        dataset: str,
        location: str,
        timeout: float = TIMEOUT,
    ) -> None:
        self._client = client
        self.project = project
        self.dataset = dataset
        self.location = location
        self.timeout = timeout

    def _table_ref(self, table_id: str) -> str:
        return f"{self.project}.{self.dataset}.{table_id}"

    def check_dataset(self) -> None:
        """The dataset exists, in the configs' location (DTS refuses a mismatch at run time)."""
        ref = f"{self.project}.{self.dataset}"
        with _translated(f"get dataset {ref}"):
            try:
                dataset = self._client.get_dataset(ref, retry=_NO_RETRY, timeout=self.timeout)
            except gexc.NotFound as exc:
                raise PermanentError(
                    f"dataset {ref} does not exist: create it in {self.location} (see infra/)"
                ) from exc
        if (dataset.location or "").lower() != self.location.lower():
            raise PermanentError(
                f"dataset {ref} is in {dataset.location}, but the transfer "
                f"configs are in {self.location} (RDS2BQ_BQ_LOCATION): they "
                "must match"
            )

    def missing(self, table_ids: Sequence[str]) -> list[str]:
        self.check_dataset()
        absent: list[str] = []
        for table_id in table_ids:
            with _translated(f"get table {self._table_ref(table_id)}"):
                try:
                    self._client.get_table(
                        self._table_ref(table_id), retry=_NO_RETRY, timeout=self.timeout
                    )
                except gexc.NotFound:
                    absent.append(table_id)
        return absent

    def create(self, table_ids: Sequence[str]) -> list[str]:
        created: list[str] = []
        for table_id in table_ids:
            table = bigquery.Table(self._table_ref(table_id))  # no schema: see the module doc
            table.description = "Loaded by rds2bq from an RDS export (BigQuery DTS, amazon_s3)."
            with _translated(f"create table {self._table_ref(table_id)}"):
                try:
                    self._client.create_table(
                        table, exists_ok=False, retry=_NO_RETRY, timeout=self.timeout
                    )
                except gexc.Conflict:
                    continue  # created meanwhile by someone else: what we wanted
            created.append(table_id)
        return created


def build_destination_tables(settings: Settings, endpoint: str | None = None) -> BigQueryTables:
    """The adapter for these settings; ``endpoint`` (local stack only) points the client at the
    BigQuery stand-in, with anonymous credentials; it defaults to ``RDS2BQ_BQ_ENDPOINT``."""
    endpoint = settings.bq_endpoint if endpoint is None else endpoint
    client = bigquery.Client(
        project=settings.gcp_project,
        location=settings.bq_location,
        **local_client_options(endpoint),
    )
    return BigQueryTables(
        client,
        project=settings.gcp_project,
        dataset=settings.bq_dataset,
        location=settings.bq_location,
    )

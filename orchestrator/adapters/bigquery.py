"""BigQuery destination tables: DTS needs each one to exist before a config's first run, and the
preflight and the load checks read (and extend) their schemas and row counts.

Implements ``DestinationTables`` with ``google.cloud.bigquery.Client`` (injected).

Schemas. Our loads are WRITE_TRUNCATE, and a truncating Parquet load replaces a table's schema
with the files' (``core.schema`` says why, and what the preflight holds instead of loading):

- a table is created with the source's schema when the export's footers are known (``create``
  with ``schemas``: NULLABLE columns of the types the load would give them), else without one,
  and the first load sets it (Parquet is self-describing: DTS asks for a schema up front only
  for CSV and JSON);
- before a load, the preflight adds the columns the export has and the table lacks
  (``add_columns``: NULLABLE, appended), so that the schema a query sees follows the source;
- it reads every destination's columns and rows at once (``describe``): one tables.get per
  table, ``WORKERS`` at a time on one client (thread-safe), its HTTP pool as wide.

Nested columns (RECORD / REPEATED) are out of scope: RDS exports none, and none is created here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

import requests
from google.api_core import exceptions as gexc
from google.cloud import bigquery

from orchestrator.adapters.google_errors import local_client_options, translated
from orchestrator.app.ports import DestinationTable
from orchestrator.config import Settings
from orchestrator.core.errors import PermanentError
from orchestrator.core.schema import Column, standard_type

TIMEOUT = 30.0
# tables.get calls in flight at once (``describe``); the client's HTTP pool is made as wide, or
# requests' default of 10 pooled connections would open and drop one per call beyond it
WORKERS = 32
# retries are the caller's; None turns the client's off (its annotations say Retry only)
_NO_RETRY: Any = None
_NESTED = frozenset({"STRUCT", "RECORD", "ARRAY"})


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
        _widen_pool(client, WORKERS)
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
        return [table_id for table_id in table_ids if self._get(table_id) is None]

    def create(
        self, table_ids: Sequence[str], schemas: Mapping[str, Sequence[Column]] | None = None
    ) -> list[str]:
        created: list[str] = []
        for table_id in table_ids:
            table = bigquery.Table(self._table_ref(table_id))
            columns = (schemas or {}).get(table_id, ())
            if columns:  # else none: the first load sets it (see the module doc)
                table.schema = _fields(columns)
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

    def describe(self, table_ids: Sequence[str]) -> dict[str, DestinationTable]:
        ids = list(dict.fromkeys(table_ids))
        if not ids:
            return {}
        with ThreadPoolExecutor(min(WORKERS, len(ids)), thread_name_prefix="bq-describe") as pool:
            tables = list(pool.map(self._get, ids))
        return {
            table_id: DestinationTable(
                columns=tuple(
                    Column(f.name, standard_type(f.field_type or "")) for f in table.schema
                ),
                rows=int(table.num_rows or 0),
            )
            for table_id, table in zip(ids, tables, strict=True)
            if table is not None
        }

    def add_columns(self, table_id: str, columns: Sequence[Column]) -> None:
        ref = self._table_ref(table_id)
        # update_table sends the etag it read as If-Match: a table changed since (a load, another
        # patch) answers 412, and it is read again once.
        for attempt in (1, 2):
            table = self._get(table_id)
            if table is None:
                raise PermanentError(f"BigQuery add columns to {ref}: the table does not exist")
            have = {f.name.lower() for f in table.schema}
            wanted = {c.name.lower(): c for c in columns}  # one of each name
            added = _fields([c for name, c in wanted.items() if name not in have])
            if not added:
                return
            table.schema = [*table.schema, *added]
            with _translated(f"add columns to {ref}"):
                try:
                    self._client.update_table(
                        table, ["schema"], retry=_NO_RETRY, timeout=self.timeout
                    )
                    return
                except gexc.PreconditionFailed:
                    if attempt == 2:
                        raise

    def row_count(self, table_id: str) -> int | None:
        table = self._get(table_id)
        return None if table is None else int(table.num_rows or 0)

    def _get(self, table_id: str) -> bigquery.Table | None:
        """The table (one tables.get), None if it does not exist."""
        ref = self._table_ref(table_id)
        with _translated(f"get table {ref}"):
            try:
                return self._client.get_table(ref, retry=_NO_RETRY, timeout=self.timeout)
            except gexc.NotFound:
                return None


def _fields(columns: Sequence[Column]) -> list[bigquery.SchemaField]:
    """NULLABLE fields for these columns (a nested type is left out: see the module doc)."""
    return [
        bigquery.SchemaField(c.name, standard_type(c.type), mode="NULLABLE")
        for c in columns
        if standard_type(c.type) not in _NESTED
    ]


def _widen_pool(client: bigquery.Client, size: int) -> None:
    """Give the client's session (a requests.Session, built on first use) ``size`` pooled
    connections per host, for calls made from ``size`` threads at once. The client offers no
    public setting; this is its maintainers' answer (docs/platform.md, "BigQuery's connection
    pool")."""
    session = getattr(client, "_http", None)
    if isinstance(session, requests.Session):
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=size)
        session.mount("https://", adapter)
        session.mount("http://", adapter)


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

"""BigQuery destination tables: DTS needs each one to exist before a config's first run.

Implements ``sync.DestinationTables`` over BigQuery's REST API v2 (``datasets.get``,
``tables.get``, ``tables.insert``) with the same small client as every other Google adapter
(``google_http``); the client is injected.

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

from orchestrator.adapters.google_http import ApiError, GoogleHttp, google_api, translated
from orchestrator.config import Settings
from orchestrator.errors import PermanentError

TIMEOUT = 30.0
ENDPOINT = "https://bigquery.googleapis.com/bigquery/v2/"
DESCRIPTION = "Loaded by rds2bq from an RDS export (BigQuery DTS, amazon_s3)."


def _translated(what: str) -> AbstractContextManager[None]:
    return translated("BigQuery", what)


def _http_code(exc: PermanentError) -> int:
    cause = exc.__cause__
    return cause.code if isinstance(cause, ApiError) else 0


class BigQueryTables:
    """Destination tables in one dataset, which must exist in the configs' location."""

    def __init__(
        self,
        http: GoogleHttp,
        *,
        project: str,
        dataset: str,
        location: str,
        timeout: float = TIMEOUT,
    ) -> None:
        self._http = http
        self.project = project
        self.dataset = dataset
        self.location = location
        self.timeout = timeout

    @property
    def _dataset_path(self) -> str:
        return f"projects/{self.project}/datasets/{self.dataset}"

    def _table_ref(self, table_id: str) -> str:
        return f"{self.project}.{self.dataset}.{table_id}"

    def check_dataset(self) -> None:
        """The dataset exists, in the configs' location (DTS refuses a mismatch at run time)."""
        ref = f"{self.project}.{self.dataset}"
        try:
            with _translated(f"get dataset {ref}"):
                dataset = self._http.call("GET", self._dataset_path, timeout=self.timeout)
        except PermanentError as exc:
            if _http_code(exc) == 404:
                raise PermanentError(
                    f"dataset {ref} does not exist: create it in {self.location} (see infra/)"
                ) from exc
            raise
        location = str(dataset.get("location") or "")
        if location.lower() != self.location.lower():
            raise PermanentError(
                f"dataset {ref} is in {location}, but the transfer "
                f"configs are in {self.location} (RDS2BQ_BQ_LOCATION): they "
                "must match"
            )

    def missing(self, table_ids: Sequence[str]) -> list[str]:
        self.check_dataset()
        absent: list[str] = []
        for table_id in table_ids:
            try:
                with _translated(f"get table {self._table_ref(table_id)}"):
                    self._http.call(
                        "GET", f"{self._dataset_path}/tables/{table_id}", timeout=self.timeout
                    )
            except PermanentError as exc:
                if _http_code(exc) != 404:
                    raise
                absent.append(table_id)
        return absent

    def create(self, table_ids: Sequence[str]) -> list[str]:
        created: list[str] = []
        for table_id in table_ids:
            table = {  # no schema: see the module doc
                "tableReference": {
                    "projectId": self.project,
                    "datasetId": self.dataset,
                    "tableId": table_id,
                },
                "description": DESCRIPTION,
            }
            try:
                with _translated(f"create table {self._table_ref(table_id)}"):
                    self._http.call(
                        "POST", f"{self._dataset_path}/tables", table, timeout=self.timeout
                    )
            except PermanentError as exc:
                if _http_code(exc) != 409:
                    raise
                continue  # created meanwhile by someone else: what we wanted
            created.append(table_id)
        return created


def build_destination_tables(settings: Settings, endpoint: str | None = None) -> BigQueryTables:
    """The adapter for these settings; ``endpoint`` (local stack only) points it at the BigQuery
    stand-in, without credentials; it defaults to ``RDS2BQ_BQ_ENDPOINT``."""
    endpoint = settings.bq_endpoint if endpoint is None else endpoint
    return BigQueryTables(
        google_api(ENDPOINT, endpoint, "bigquery/v2/"),
        project=settings.gcp_project,
        dataset=settings.bq_dataset,
        location=settings.bq_location,
    )

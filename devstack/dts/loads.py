"""Loading a run's matched files into the BigQuery stand-in, as a DTS load job leaves the table.

When the stand-in is given a BigQuery stand-in (``DtsStandin(bigquery=...)``), a run that
SUCCEEDS with matched files loads them: the files' Parquet footers are read from S3, their rows
summed, and the destination table gets those rows and the files' schema (the configs' loads are
WRITE_TRUNCATE, which replaces a non-partitioned table's schema). The schema is the
alphabetically last file's, as BigQuery takes a Parquet load's schema from it; each column's type
is ``core.schema.bigquery_type`` of its Arrow type. The run then logs what DTS logs for a finished
load job, with the "Number of records" the adapter's ``empty_load`` reads. A destination table
that does not exist, or a file that is no Parquet, fails the run, as the load job would.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from typing import Any

from orchestrator.core.schema import bigquery_type


@dataclass(frozen=True)
class Loaded:
    rows: int
    fields: list[dict[str, str]]  # the table's schema after the load, as the API writes it


class LoadFailed(Exception):
    """The load job failed; the message is BigQuery's words for why."""


def read_files(s3: Any, bucket: str, keys: list[str]) -> Loaded:
    """The rows of these Parquet files and the schema a load of them gives."""
    import pyarrow.parquet as pq

    rows = 0
    fields: list[dict[str, str]] = []
    for key in sorted(keys):
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:  # S3 refused the read: the job fails, as a real one would
            raise LoadFailed(f"Failed to read s3://{bucket}/{key}: {exc}") from exc
        try:
            parquet = pq.ParquetFile(io.BytesIO(body))
        except Exception as exc:  # pyarrow says ArrowInvalid, or OSError for a short file
            raise LoadFailed(
                f"Error while reading data, error message: Failed to read Parquet file "
                f"s3://{bucket}/{key}: {exc}"
            ) from exc
        rows += parquet.metadata.num_rows
        fields = [
            {
                "name": f.name,
                "type": bigquery_type(str(f.type)),
                "mode": "NULLABLE" if f.nullable else "REQUIRED",
            }
            for f in parquet.schema_arrow
        ]
    return Loaded(rows, fields)


def load(bigquery: Any, project: str, dataset: str, table: str, loaded: Loaded) -> str:
    """Load into the BigQuery stand-in; the transfer log line DTS writes for the finished job."""
    try:
        bigquery.load_table(project, dataset, table, loaded.rows, loaded.fields)
    except LookupError as exc:
        raise LoadFailed(str(exc.args[0]) if exc.args else str(exc)) from exc
    job = f"bqts_{uuid.uuid4()}"
    return (
        f"Job {project}:{job} (table {table}) completed successfully. "
        f"Number of records: {loaded.rows}, with errors: 0."
    )

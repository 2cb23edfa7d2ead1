"""The local day's data: what yesterday left in BigQuery and what today's export writes, so that
the demo, ``make stack`` and the e2e day meet each data-trust check once (issue 15):

- ``NEW_COLUMN_TABLE`` gains a column at the source: the preflight adds it to the destination
  before the load, and the load fills it;
- ``HELD_TABLE``'s ``rating`` changed type at the source (an integer became text): a truncating
  load would retype a column that queries rely on, so the preflight holds the table, and Slack
  shows the difference and the rerun that accepts it;
- every other table loads the default columns (``devstack.parquet``), with more rows than
  yesterday, so the digest shows the change per table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from devstack.parquet import DEFAULT_COLUMNS, TableData

NEW_COLUMN_TABLE = "shop.customers"
NEW_COLUMN = ("loyalty_tier", "varchar(16)")
HELD_TABLE = "shop.reviews"
HELD_COLUMN = "rating"
YESTERDAY_ROWS = 10
TODAY_ROWS = 12

# Yesterday's destination schema, as the API writes it (what the previous day's load left).
_DEFAULT_FIELDS = [
    {"name": "id", "type": "INTEGER", "mode": "NULLABLE"},
    {"name": "name", "type": "STRING", "mode": "NULLABLE"},
    {"name": "amount", "type": "NUMERIC", "mode": "NULLABLE"},
    {"name": "updated_at", "type": "TIMESTAMP", "mode": "NULLABLE"},
]


def target(key: str) -> str:
    """``db.table`` as ``export_tables_info`` names it (MySQL: ``db.db.table``)."""
    db, name = key.split(".")
    return f"{db}.{db}.{name}"


def today(keys: Iterable[str]) -> dict[str, TableData]:
    """Today's export, per ``db.schema.table``: the two changed tables, the rest as yesterday."""
    keys = list(keys)
    data = {target(k): TableData(rows=TODAY_ROWS) for k in keys}
    if NEW_COLUMN_TABLE in keys:
        data[target(NEW_COLUMN_TABLE)] = TableData((*DEFAULT_COLUMNS, NEW_COLUMN), TODAY_ROWS)
    if HELD_TABLE in keys:
        data[target(HELD_TABLE)] = TableData(
            (*DEFAULT_COLUMNS, (HELD_COLUMN, "varchar(8)")), TODAY_ROWS
        )
    return data


def seed_yesterday(bigquery: Any, project: str, dataset: str, keys: Iterable[str]) -> None:
    """Give each (existing) destination table yesterday's schema and rows; ``HELD_TABLE`` had
    ``rating`` as an integer."""
    for key in keys:
        fields = list(_DEFAULT_FIELDS)
        if key == HELD_TABLE:
            fields.append({"name": HELD_COLUMN, "type": "INTEGER", "mode": "NULLABLE"})
        table_id = key.replace(".", "__")
        if bigquery.table(project, dataset, table_id) is not None:
            bigquery.load_table(project, dataset, table_id, YESTERDAY_ROWS, fields)

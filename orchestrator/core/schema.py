"""A destination schema that follows the source: what BigQuery makes of an export's columns, and
what changes between the export and the destination table a load can take (pure).

RDS writes Parquet; a DTS Parquet load gives each column the BigQuery type of its Parquet type
(``bigquery_type``). In the hand-off, the preflight (``app.preflight``) compares each exported
table's columns with its destination table's (``plan``):

- a column the destination lacks is **added** to it before the load;
- a type BigQuery widens in place (INT64 to NUMERIC, BIGNUMERIC or FLOAT64; NUMERIC to BIGNUMERIC
  or FLOAT64) is **widened** by the load itself: the configs load with WRITE_TRUNCATE, which
  replaces a table's schema with the files';
- anything else (a column gone from the export, a narrowed or otherwise changed type) **holds** the
  table: it is not loaded, because a truncating load would silently drop or retype a column that
  queries and views downstream rely on. The others go on.

Column names compare case-insensitively, as BigQuery's do. The facts and their sources:
docs/platform.md, "Schemas and DECIMAL columns".
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

# The DTS ``decimal_target_types`` the configs set (sync): BigQuery picks the first type that
# holds a DECIMAL's precision and scale. Without it, a Parquet DECIMAL loads only as NUMERIC, and
# a load with one wider column fails.
DECIMAL_TARGET_TYPES = ("NUMERIC", "BIGNUMERIC", "STRING")

# BigQuery's legacy type names, as its API may return them, to the standard SQL names used here.
_STANDARD_NAMES = {
    "INTEGER": "INT64",
    "FLOAT": "FLOAT64",
    "BOOLEAN": "BOOL",
    "BIGDECIMAL": "BIGNUMERIC",
    "RECORD": "STRUCT",
}

# Changes BigQuery can make to a column's type in place (ALTER COLUMN SET DATA TYPE's coercions).
_WIDENINGS = frozenset(
    {
        ("INT64", "NUMERIC"),
        ("INT64", "BIGNUMERIC"),
        ("INT64", "FLOAT64"),
        ("NUMERIC", "BIGNUMERIC"),
        ("NUMERIC", "FLOAT64"),
    }
)


def standard_type(name: str) -> str:
    """A BigQuery type name in its standard SQL spelling (``INTEGER`` -> ``INT64``)."""
    upper = name.strip().upper()
    return _STANDARD_NAMES.get(upper, upper)


@dataclass(frozen=True)
class Column:
    """One column: its name, its BigQuery type, and (for an exported one) its Parquet type."""

    name: str
    type: str
    source_type: str = ""  # as the export wrote it, e.g. ``decimal128(40, 10)``: for messages

    def __str__(self) -> str:
        return f"{self.name} {self.type}"


def decimal_type(precision: int, scale: int) -> str:
    """What a Parquet DECIMAL(precision, scale) loads as under ``DECIMAL_TARGET_TYPES``."""
    integer_digits = precision - scale
    if 0 <= scale <= 9 and integer_digits <= 29:
        return "NUMERIC"
    if 0 <= scale <= 38 and integer_digits <= 38:
        return "BIGNUMERIC"
    return "STRING"


def bigquery_type(arrow_type: str) -> str:
    """The BigQuery type a Parquet column loads as, from its type as pyarrow names it
    (``int64``, ``string``, ``decimal128(20, 0)``, ``timestamp[us, tz=UTC]``, ...). Unknown
    types load as STRING, the type BigQuery falls back to; nested ones are left to BigQuery
    (STRUCT / ARRAY: RDS exports none)."""
    t = arrow_type.strip().lower()
    if t in ("bool", "boolean"):
        return "BOOL"
    if t.startswith(("int", "uint")):
        return "INT64"
    if t in ("float", "double", "halffloat", "float16", "float32", "float64"):
        return "FLOAT64"
    if t.startswith("decimal"):
        inside = t[t.index("(") + 1 : t.rindex(")")] if "(" in t else ""
        try:
            precision, scale = (int(p) for p in inside.split(","))
        except ValueError:
            return "STRING"
        return decimal_type(precision, scale)
    if t.startswith("date"):
        return "DATE"
    if t.startswith("timestamp"):
        # Parquet TIMESTAMP adjusted to UTC loads as TIMESTAMP; a local ("naive") one as DATETIME.
        return "TIMESTAMP" if "tz=" in t else "DATETIME"
    if t.startswith("time"):
        return "TIME"
    if t in ("binary", "large_binary") or t.startswith("fixed_size_binary"):
        return "BYTES"
    if t.startswith(("list", "large_list", "struct", "map")):
        return "STRUCT" if t.startswith("struct") else "ARRAY"
    return "STRING"


@dataclass(frozen=True)
class SchemaPlan:
    """What the preflight does with one table before its load."""

    added: tuple[Column, ...] = ()  # added to the destination table before the load
    widened: tuple[tuple[Column, Column], ...] = ()  # (destination, export): the load widens it
    conflicts: tuple[str, ...] = ()  # why the table is held ('' when it is not)

    @property
    def holds(self) -> bool:
        return bool(self.conflicts)

    @property
    def changes(self) -> tuple[str, ...]:
        """What changes at this load, in words (for the ledger, Slack and status)."""
        added = [f"added column {c}" for c in self.added]
        widened = [f"widened {old.name} {old.type} -> {new.type}" for old, new in self.widened]
        return (*added, *widened)


def plan(exported: Sequence[Column], destination: Sequence[Column]) -> SchemaPlan:
    """Compare an export's columns with its destination table's (empty: a table without a schema
    yet, which takes every exported column)."""
    have = {c.name.lower(): c for c in destination}
    added: list[Column] = []
    widened: list[tuple[Column, Column]] = []
    conflicts: list[str] = []
    for column in exported:
        old = have.pop(column.name.lower(), None)
        if old is None:
            added.append(column)
            continue
        before, after = standard_type(old.type), standard_type(column.type)
        if before == after:
            continue
        if (before, after) in _WIDENINGS:
            widened.append((old, column))
        else:
            source = f" (exported as {column.source_type})" if column.source_type else ""
            conflicts.append(f"column {old.name} changed type: {before} -> {after}{source}")
    # Left over: columns the export no longer has (none when the table has no schema yet).
    conflicts += [f"column {old.name} {old.type} is no longer exported" for old in have.values()]
    return SchemaPlan(tuple(added), tuple(widened), tuple(conflicts))


def fingerprint(columns: Sequence[Column]) -> str:
    """A short digest of an export's columns, their names and types (order aside, as ``plan``
    takes them): two exports with the same fingerprint plan the same against one destination
    ('': no columns). The preflight keeps it on the table's ledger document, so that the next
    day's export can tell whether its columns changed (``app.preflight``)."""
    if not columns:
        return ""
    text = "\n".join(sorted(f"{c.name}\t{c.type}\t{c.source_type}" for c in columns))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hold_fix(table: str, run_id: str) -> str:
    """How an operator lets a held table load: accept the change, or undo it."""
    return (
        f"if the change is intended, `python -m orchestrator rerun {run_id} --table {table}` "
        "loads it, and the load replaces the table's schema with the export's (queries and views "
        "on the old columns then need changing); otherwise revert the change in the source"
    )

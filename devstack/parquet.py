"""The Parquet files of the local stack's exports: real files (pyarrow), small, with the columns
a MySQL table of the caller's choosing would export, and ``perTableStatus``'s type mappings to
match (docs/platform.md, "Layout" and "Metadata").

A column is given as MySQL's DDL names its type (``bigint``, ``varchar(64)``, ``decimal(12,2)``,
``datetime(6)``, ...) and written as the RDS export writes it (AWS: "Data conversion when
exporting to an Amazon S3 bucket"): a DECIMAL as Parquet DECIMAL (as text beyond 38 digits), an
unsigned BIGINT as DECIMAL(20,0), a string as UTF-8 text. Every distinct file is built once:
the bench writes thousands of tables of the same shape.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

# The default table: a key, a name, an amount, a change time.
DEFAULT_COLUMNS = (
    ("id", "bigint"),
    ("name", "varchar(64)"),
    ("amount", "decimal(12,2)"),
    ("updated_at", "timestamp(6)"),
)


@dataclass(frozen=True)
class TableData:
    """What an export holds of one table: its columns (name, MySQL type) and its rows, split
    over the table's data files (the first files take one more when they do not divide)."""

    columns: tuple[tuple[str, str], ...] = DEFAULT_COLUMNS
    rows: int = 12


_TYPE = re.compile(r"^\s*([a-z]+)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*(unsigned)?\s*$")
_INTEGER_DIGITS = {"tinyint": 3, "smallint": 5, "mediumint": 7, "int": 10, "bigint": 19}
_TEXT_LENGTHS = {"tinytext": 255, "text": 65535, "mediumtext": 16777215, "longtext": 4294967295}


@dataclass(frozen=True)
class _Exported:
    arrow: pa.DataType
    mapping: dict[str, Any]  # the perTableStatus type mapping, without the column's name


def _exported(mysql_type: str) -> _Exported:
    match = _TYPE.match(mysql_type.lower())
    if match is None:
        raise ValueError(f"not a MySQL column type we write: {mysql_type!r}")
    base, first, second, unsigned = match.groups()
    length = precision = datetime_precision = 0
    if base in _INTEGER_DIGITS:
        precision = _INTEGER_DIGITS[base]
        if base == "bigint" and unsigned:
            arrow, exported = pa.decimal128(20, 0), "decimal(20,0)"
        elif base == "bigint" or (unsigned and base in ("int", "mediumint")):
            arrow, exported = pa.int64(), "int64"
        else:
            arrow, exported = pa.int32(), "int32"
    elif base in ("decimal", "numeric"):
        precision, scale = int(first or 10), int(second or 0)
        if precision > 38:
            arrow, exported = pa.string(), "string"
        else:
            arrow, exported = pa.decimal128(precision, scale), f"decimal({precision},{scale})"
    elif base in ("double", "float"):
        precision, arrow, exported = (22 if base == "double" else 12), pa.float64(), "double"
    elif base in ("varchar", "char") or base in _TEXT_LENGTHS:
        length = int(first) if first else _TEXT_LENGTHS.get(base, 1 if base == "char" else 0)
        arrow, exported = pa.string(), "string"
    elif base == "date":
        arrow, exported = pa.date32(), "date"
    elif base in ("datetime", "timestamp"):
        datetime_precision = int(first or 0)
        arrow, exported = pa.timestamp("us", tz="UTC"), "timestamp"
    else:
        raise ValueError(f"not a MySQL column type we write: {mysql_type!r}")
    return _Exported(
        arrow,
        {
            "originalType": base,
            "expectedExportedType": exported,
            "originalCharMaxLength": length,
            "originalNumPrecision": precision,
            "originalDateTimePrecision": datetime_precision,
        },
    )


def type_mappings(data: TableData) -> list[dict[str, Any]]:
    """``schemaMetadata.originalTypeMappings`` of the table, as ``perTableStatus`` holds it."""
    return [{"columnName": name, **_exported(kind).mapping} for name, kind in data.columns]


def arrow_schema(data: TableData) -> pa.Schema:
    """The schema of the table's files."""
    return pa.schema([(name, _exported(kind).arrow) for name, kind in data.columns])


def _value(arrow: pa.DataType, row: int) -> Any:
    """Row ``row``'s value of a column of type ``arrow`` (stable: the same file every time)."""
    if pa.types.is_integer(arrow):
        return row + 1
    if pa.types.is_decimal(arrow):
        return Decimal(row % 9 + 1)  # fits any DECIMAL with an integer digit
    if pa.types.is_floating(arrow):
        return (row + 1) * 1.5
    if pa.types.is_date(arrow):
        return date(2026, 1, 1) + timedelta(days=row)
    if pa.types.is_timestamp(arrow):
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=row)
    return f"row {row + 1}"


@cache
def _file(columns: tuple[tuple[str, str], ...], first: int, count: int) -> bytes:
    schema = arrow_schema(TableData(columns))
    table = pa.table(
        [
            pa.array([_value(f.type, r) for r in range(first, first + count)], f.type)
            for f in schema
        ],
        schema=schema,
    )
    out = io.BytesIO()
    pq.write_table(table, out, compression="gzip")  # RDS's files are .gz.parquet
    return out.getvalue()


def data_files(data: TableData, files: int) -> list[bytes]:
    """The bodies of the table's ``files`` data files: its rows split over them."""
    share, extra = divmod(data.rows, files) if files else (0, 0)
    bodies, first = [], 0
    for i in range(files):
        count = share + (1 if i < extra else 0)
        bodies.append(_file(data.columns, first, count))
        first += count
    return bodies

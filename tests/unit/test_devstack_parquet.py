"""The local stack's export files are real Parquet, of the columns and rows a test asks for, and
the metadata's type mappings describe the same columns."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest

from devstack.parquet import TableData, data_files, type_mappings


def read(body: bytes) -> pq.FileMetaData:
    return pq.read_metadata(io.BytesIO(body))


def test_rows_split_over_the_files_the_first_taking_the_remainder() -> None:
    bodies = data_files(TableData(rows=11), 3)
    assert [read(b).num_rows for b in bodies] == [4, 4, 3]
    ids = [pq.read_table(io.BytesIO(b)).column("id").to_pylist() for b in bodies]
    assert ids == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11]]
    assert data_files(TableData(), 0) == []
    assert data_files(TableData(), 2)[0] is data_files(TableData(), 2)[0]  # built once


def test_mysql_types_as_the_export_writes_them_and_their_mappings() -> None:
    data = TableData(
        (
            ("id", "bigint unsigned"),
            ("qty", "int"),
            ("price", "decimal(12,2)"),
            ("huge", "decimal(50,4)"),
            ("sku", "varchar(32)"),
            ("note", "text"),
            ("day", "date"),
            ("at", "datetime(6)"),
        ),
        rows=2,
    )
    schema = read(data_files(data, 1)[0]).schema.to_arrow_schema()
    assert [str(f.type) for f in schema] == [
        "decimal128(20, 0)",
        "int32",
        "decimal128(12, 2)",
        "string",
        "string",
        "string",
        "date32[day]",
        "timestamp[us, tz=UTC]",
    ]
    mappings = {m["columnName"]: m for m in type_mappings(data)}
    assert list(mappings) == [name for name, _ in data.columns]
    assert mappings["price"] == {
        "columnName": "price",
        "originalType": "decimal",
        "expectedExportedType": "decimal(12,2)",
        "originalCharMaxLength": 0,
        "originalNumPrecision": 12,
        "originalDateTimePrecision": 0,
    }
    assert mappings["sku"]["originalCharMaxLength"] == 32
    assert mappings["at"]["originalDateTimePrecision"] == 6
    with pytest.raises(ValueError, match="geometry"):
        type_mappings(TableData((("shape", "geometry"),)))

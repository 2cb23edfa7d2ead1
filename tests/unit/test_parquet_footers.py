"""Parquet footers read through ranged reads: the rows and columns, from the file's tail only."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.adapters.parquet_footers import RangedFile, combined, read_footer
from orchestrator.app.ports import ExportedTable
from orchestrator.core.errors import PermanentError
from orchestrator.core.schema import Column


def parquet(table: pa.Table, compression: str = "gzip") -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, compression=compression)
    return out.getvalue()


class Reads:
    """A file's bytes behind ``fetch``, keeping every range asked for."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.ranges: list[tuple[int, int]] = []

    def fetch(self, first: int, last: int) -> bytes:
        self.ranges.append((first, last))
        return self.data[first : last + 1]

    @property
    def fetched(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges)


ORDERS = pa.table(
    {
        "id": pa.array([1, 2, 3], pa.int64()),
        "name": pa.array(["a", "b", None], pa.string()),
        "amount": pa.array([Decimal("1.50"), Decimal("2.00"), None], pa.decimal128(12, 2)),
        "updated_at": pa.array([datetime(2026, 11, 27, tzinfo=UTC)] * 3, pa.timestamp("us", "UTC")),
        "big": pa.array([Decimal(1)] * 3, pa.decimal128(38, 10)),
    }
)


def test_rows_and_columns_with_their_bigquery_types() -> None:
    data = parquet(ORDERS)
    table = read_footer(Reads(data).fetch, len(data), "s3://b/orders.parquet")
    assert table.rows == 3 and table.files == 1 and table.bytes == len(data)
    assert table.columns == (
        Column("id", "INT64", "int64"),
        Column("name", "STRING", "string"),
        Column("amount", "NUMERIC", "decimal128(12, 2)"),
        Column("updated_at", "TIMESTAMP", "timestamp[us, tz=UTC]"),
        Column("big", "BIGNUMERIC", "decimal128(38, 10)"),
    )


def test_a_large_file_is_read_at_its_tail_only_in_one_read() -> None:
    data = parquet(pa.table({"blob": [b"x" * 2_000_000]}), compression="none")
    assert len(data) > 2_000_000
    reads = Reads(data)
    assert read_footer(reads.fetch, len(data), "big.parquet").rows == 1
    assert len(reads.ranges) == 1 and reads.ranges[0][1] == len(data) - 1
    assert reads.fetched == 64 * 1024


def test_a_footer_longer_than_the_first_read_takes_a_second() -> None:
    wide = pa.table({f"column_with_a_long_name_{i:04d}": [i] for i in range(1500)})
    data = parquet(wide)
    reads = Reads(data)
    table = read_footer(reads.fetch, len(data), "wide.parquet")
    assert len(table.columns) == 1500 and table.rows == 1
    assert len(reads.ranges) == 2 and reads.fetched < len(data)


@pytest.mark.parametrize("data", [b"", b"PAR1", b"not parquet at all, " * 10])
def test_a_file_that_is_not_parquet_is_permanent_and_named(data: bytes) -> None:
    with pytest.raises(PermanentError, match=r"s3://b/t/1/part-0\.parquet is not a Parquet"):
        read_footer(Reads(data).fetch, len(data), "s3://b/t/1/part-0.parquet")


def test_a_fetch_fault_passes_through_unchanged() -> None:
    class Gone(Exception):
        pass

    def fetch(first: int, last: int) -> bytes:
        raise Gone("503")

    with pytest.raises(Gone):
        read_footer(fetch, 1000, "x.parquet")


def test_ranged_file_reads_what_it_is_asked_and_no_more() -> None:
    reads = Reads(b"0123456789")
    f = RangedFile(reads.fetch, 10)
    assert f.seek(-3, io.SEEK_END) == 7 and f.read(10) == b"789" and f.read(1) == b""
    f.seek(2)
    buffer = bytearray(3)
    assert f.readinto(memoryview(buffer)) == 3 and bytes(buffer) == b"234" and f.tell() == 5
    assert reads.ranges == [(7, 9), (2, 4)]


def test_combined_sums_the_files_and_keeps_the_first_files_columns_first() -> None:
    a = ExportedTable(2, (Column("id", "INT64"), Column("name", "STRING")), files=1, bytes=10)
    b = ExportedTable(3, (Column("ID", "INT64"), Column("note", "STRING")), files=1, bytes=20)
    assert combined([a, b]) == ExportedTable(
        5,
        (Column("id", "INT64"), Column("name", "STRING"), Column("note", "STRING")),
        files=2,
        bytes=30,
    )
    assert combined([]) == ExportedTable(0)

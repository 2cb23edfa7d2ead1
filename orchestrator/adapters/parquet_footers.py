"""What a Parquet file holds, from its footer alone: its rows and its columns, read through ranged
reads (pyarrow, the maintained Parquet library), never its data.

pyarrow reads a footer with one read of the file's last 64 KiB (the whole file when it is
smaller), and a second one only when the footer is longer than that: parquet-cpp's
``footer_read_size``, which pyarrow does not let Python change. Over S3 that is one or two ranged
GETs per file (``AwsExporter.read_exported_tables``; docs/platform.md, "Row counts and
columns").
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

from orchestrator.app.ports import ExportedTable
from orchestrator.core.errors import PermanentError
from orchestrator.core.schema import Column, bigquery_type

# fetch(first, last): the bytes first..last of the file, both included (an HTTP Range's bounds)
Fetch = Callable[[int, int], bytes]


class RangedFile(io.RawIOBase):
    """A read-only, seekable file of ``size`` bytes whose reads are ``fetch`` calls, one per
    read: nothing is read ahead or kept."""

    def __init__(self, fetch: Fetch, size: int) -> None:
        super().__init__()
        self._fetch = fetch
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._size, self._position + size)
        if end <= self._position:
            return b""
        data = self._fetch(self._position, end - 1)
        self._position += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def read_footer(fetch: Fetch, size: int, name: str) -> ExportedTable:
    """The rows and columns of one Parquet file of ``size`` bytes (``name``, for messages). A
    file that is not Parquet raises PermanentError; ``fetch``'s own errors pass through."""
    import pyarrow
    import pyarrow.parquet

    try:
        metadata = pyarrow.parquet.read_metadata(RangedFile(fetch, size))
        schema = metadata.schema.to_arrow_schema()
    except pyarrow.ArrowException as exc:
        raise PermanentError(f"{name} is not a Parquet file we can read: {exc}") from exc
    columns = tuple(Column(f.name, bigquery_type(str(f.type)), str(f.type)) for f in schema)
    return ExportedTable(rows=metadata.num_rows, columns=columns, files=1, bytes=size)


def combined(files: Sequence[ExportedTable]) -> ExportedTable:
    """One table from its files' footers: their rows, files and bytes summed; its columns those
    of the first file, then any a later file adds (the files of one export share a schema)."""
    columns: dict[str, Column] = {}
    for file in files:
        for column in file.columns:
            columns.setdefault(column.name.lower(), column)
    return ExportedTable(
        rows=sum(f.rows for f in files),
        columns=tuple(columns.values()),
        files=sum(f.files for f in files),
        bytes=sum(f.bytes for f in files),
    )

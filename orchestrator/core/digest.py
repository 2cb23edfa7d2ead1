"""The run digest: what a closed run did, in numbers, computed once from the ledger's run and
tables (pure). Slack's run summary, ``status`` and ``status --json`` all show this one digest.

- **Problems first**: the tables whose data is not (or not all) in BigQuery, in the order an
  operator acts on them (EMPTY, MISMATCHED, HELD, FAILED, CANCELLED), then those the export
  skipped.
- **Per table**: rows loaded, the change against the previous day's rows (None: the table had no
  previous count, it is new to us), the load's duration and the schema changes it applied.
- **The data's as-of time**: the snapshot's, or for a live cluster when the export started (it
  clones the cluster then).
- **Bytes exported and the day's estimated cost**: the export per GB and S3-to-Google egress per
  GB, at the configured prices. AWS bills a snapshot export by the snapshot's full size and a
  live-cluster export by the whole cluster's, while we know only what was exported: the export
  part is a floor, not the bill. Egress is what DTS reads from S3 over the internet. Prices and
  their sources: docs/platform.md, "What a day costs".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from orchestrator.core.model import Run, TableRun, TableState
from orchestrator.core.prices import Prices

# The order problems are listed in: the data-trust findings first (the load "worked" but the data
# is wrong or absent), then DTS's own failures, then what the export left out.
PROBLEM_ORDER = (
    TableState.EMPTY,
    TableState.MISMATCHED,
    TableState.HELD,
    TableState.FAILED,
    TableState.CANCELLED,
    TableState.SKIPPED_BY_EXPORT,
)
_RANK = {state: rank for rank, state in enumerate(PROBLEM_ORDER)}
GB = 1e9  # RDS reports ExtractedGB in decimal GB, and AWS prices per GB


@dataclass(frozen=True)
class Cost:
    """The day's estimated cost in USD, and what it is based on."""

    exported_gb: float
    export_usd: float
    egress_usd: float
    basis: str

    @property
    def total_usd(self) -> float:
        return self.export_usd + self.egress_usd


@dataclass(frozen=True)
class Digest:
    problems: tuple[TableRun, ...]  # not loaded or skipped, in PROBLEM_ORDER then by name
    loaded: tuple[TableRun, ...]  # SUCCEEDED, most rows first
    unfinished: tuple[TableRun, ...]  # not final when the digest was made, by name
    as_of: datetime | None
    as_of_basis: str  # what as_of is (``as_of_basis``): a snapshot's, a live cluster's, or ""
    exported_bytes: int
    cost: Cost

    @property
    def rows_loaded(self) -> int | None:
        """The loaded tables' rows (None: no load was counted, e.g. a run before issue 15)."""
        counted = [t.loaded_rows for t in self.loaded if t.loaded_rows is not None]
        return sum(counted) if counted else None

    @property
    def rows_change(self) -> int | None:
        """The change of the loaded tables that have a previous count (new ones are left out)."""
        known = [t.change for t in self.loaded if t.change is not None]
        return sum(known) if known else None

    @property
    def new_tables(self) -> int:
        return sum(1 for t in self.loaded if t.is_new)

    @property
    def schema_changed(self) -> tuple[TableRun, ...]:
        """Loaded tables whose load applied a schema change (added or widened columns)."""
        return tuple(t for t in self.loaded if t.schema_changes)

    @property
    def biggest_changes(self) -> tuple[TableRun, ...]:
        """Loaded tables with a known change, the largest (either way) first."""
        known = [t for t in self.loaded if t.change]
        return tuple(sorted(known, key=lambda t: (-abs(t.change or 0), t.key)))


def as_of(run: Run) -> datetime | None:
    """The data's point in time: the snapshot's, or (live cluster) when the export cloned it."""
    return run.snapshot_time or run.export_started_at


def _live_cluster(run: Run) -> bool:
    """An export of a live Aurora cluster (AWS exports a clone of it) rather than a snapshot."""
    return ":cluster:" in run.source_arn


def as_of_basis(run: Run) -> str:
    if _live_cluster(run):
        if run.snapshot_time is not None:
            return "live cluster, as cloned by the export"
        return "live cluster, export start" if run.export_started_at is not None else ""
    if run.snapshot_time is not None:
        return "snapshot"
    return "export start" if run.export_started_at is not None else ""


def exported_bytes(run: Run, tables: Sequence[TableRun] = ()) -> int:
    """How much the export wrote. RDS reports whole GB (0 for a small export); the tables' own
    sizes (export_tables_info) are finer, so they are used when RDS says less than 1 GB."""
    table_bytes = sum(t.size_bytes for t in tables)
    if run.extracted_gb >= 1 or not table_bytes:
        return int(run.extracted_gb * GB)
    return table_bytes


def cost(run: Run, size_bytes: int, prices: Prices) -> Cost:
    gb = size_bytes / GB
    billed = (
        "the whole cluster's size (a live-cluster export)"
        if _live_cluster(run) or run.snapshot_time is None
        else "the snapshot's full size"
    )
    basis = (
        f"{gb:.2f} GB exported x {prices.export_per_gb:g} USD/GB export + "
        f"{prices.egress_per_gb:g} USD/GB egress; AWS bills the export by {billed}, "
        "so that part is a floor"
    )
    return Cost(
        exported_gb=gb,
        export_usd=gb * prices.export_per_gb,
        egress_usd=gb * prices.egress_per_gb,
        basis=basis,
    )


def digest(run: Run, tables: Sequence[TableRun], prices: Prices | None = None) -> Digest:
    problems = sorted(
        (t for t in tables if t.state in _RANK), key=lambda t: (_RANK[t.state], t.key)
    )
    loaded = sorted(
        (t for t in tables if t.state is TableState.SUCCEEDED),
        key=lambda t: (-(t.loaded_rows or 0), t.key),
    )
    unfinished = sorted((t for t in tables if not t.state.is_final), key=lambda t: t.key)
    size = exported_bytes(run, tables)
    return Digest(
        problems=tuple(problems),
        loaded=tuple(loaded),
        unfinished=tuple(unfinished),
        as_of=as_of(run),
        as_of_basis=as_of_basis(run),
        exported_bytes=size,
        cost=cost(run, size, prices or Prices()),
    )

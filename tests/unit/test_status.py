"""Status views over the in-memory ledger: one run in full, recent runs, and bad queries."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.app.status import StatusReader, seconds_between
from orchestrator.core.errors import BadRequestError, NotFoundError
from orchestrator.core.model import ExportStatus
from tests.unit.test_rerun import KEYS, RUN_ID, Ops
from tests.unit.test_service import TASK


def reader(ops: Ops) -> StatusReader:
    return StatusReader(ops.w.ledger, ops.w.clock)


def test_a_closed_run_with_failures_first_errors_and_timings() -> None:
    ops = Ops().closed_partial()
    view = reader(ops).run(RUN_ID)
    assert (view["run_id"], view["state"], view["open"], view["kind"]) == (
        RUN_ID,
        "PARTIAL",
        False,
        "daily",
    )
    assert view["counts"] == {
        "tables": 3,
        "loaded": 1,
        "failed": 2,
        "skipped": 0,
        "running": 0,
        "waiting": 0,
    }
    assert [t["table"] for t in view["tables"]] == [KEYS[1], KEYS[2], KEYS[0]]
    failed = view["tables"][0]
    assert failed["state"] == "FAILED" and "DECIMAL(40,10)" in failed["error"]
    assert failed["seconds"] == 240 and failed["attempts"] == 1  # 15:10 -> 15:14 (DTS times)
    export = view["export"]
    assert (export["task_id"], export["status"], export["percent"]) == (TASK, "COMPLETE", 100)


def test_an_exporting_run_shows_its_progress_and_running_time() -> None:
    ops = Ops()
    ops.w.service.start_export(ops.w.clock.now())
    ops.w.exporter.set_status(TASK, ExportStatus.IN_PROGRESS, percent=42, extracted_gb=3.5)
    ops.w.clock.advance(minutes=30)
    ops.w.service.poll()
    view = reader(ops).run(RUN_ID)
    assert view["open"] and view["state"] == "EXPORTING"
    assert (view["export"]["percent"], view["export"]["extracted_gb"]) == (42, 3.5)
    assert view["export"]["seconds"] == 30 * 60
    assert view["tables"] == [] and view["counts"]["waiting"] == 3


def test_recent_runs_newest_first_with_counts() -> None:
    ops = Ops().closed_partial()
    ops.w.clock.advance(hours=1)
    ops.rerun(mode="export", run_id=RUN_ID, failed=True)
    runs = reader(ops).recent(5)["runs"]
    assert [(r["kind"], r["state"]) for r in runs] == [("rerun", "EXPORTING"), ("daily", "PARTIAL")]
    assert runs[0]["parent_run_id"] == RUN_ID and runs[1]["counts"]["failed"] == 2


@pytest.mark.parametrize(
    ("params", "error", "reason"),
    [
        ({"run_id": "yesterday"}, BadRequestError, "not a run id"),
        ({"run_id": "202001010000"}, NotFoundError, "not in the ledger"),
        ({"limit": "many"}, BadRequestError, "not a whole number"),
        ({"limit": "0"}, BadRequestError, "between 1 and 100"),
        ({"runid": "x"}, BadRequestError, "unknown parameter"),
    ],
)
def test_bad_queries(params: dict[str, str], error: type[Exception], reason: str) -> None:
    with pytest.raises(error, match=reason):
        reader(Ops()).query(params)


def test_query_defaults_to_recent_runs() -> None:
    assert reader(Ops()).query({}) == {"runs": []}


def test_seconds_between() -> None:
    ops = Ops()
    now = ops.w.clock.now()
    assert seconds_between(now, now + timedelta(minutes=2)) == 120
    assert seconds_between(None, now) is None

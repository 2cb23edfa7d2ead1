"""Run keys: a daily run and a re-export never share a run id or an export id, whatever minute
they fall in; a daily call adopts only the daily run of its own slot; the CLI takes no slot from
the clock. Regression tests for issue 13's first two defects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.core import machine
from orchestrator.core.errors import ConflictError
from orchestrator.core.keys import (
    daily_run_time,
    export_task_id,
    reexport_run_time,
    run_id_for,
    run_time_of,
)
from orchestrator.core.model import ExportStatus, RunState, TableExportStatus, Transition
from orchestrator.faces import cli
from tests.unit.test_config import VALID
from tests.unit.test_ops_entry_points import FakeWiring
from tests.unit.test_rerun import KEYS, Ops
from tests.unit.test_service import SLOT, TASK

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
)


# --------------------------------------------------------------------------- the keys


@given(moments, moments)
def test_daily_and_re_export_keys_never_meet_and_sort_as_their_run_times(
    a: datetime, b: datetime
) -> None:
    daily, rerun = daily_run_time(a), reexport_run_time(b)
    assert run_id_for(daily) != run_id_for(rerun)
    assert export_task_id("prod", daily) != export_task_id("prod", rerun)
    for run_time in (daily, rerun):
        assert run_time_of(run_id_for(run_time)) == run_time  # readable back
    ids = sorted([run_id_for(daily), run_id_for(rerun)])
    assert ids == [run_id_for(t) for t in sorted([daily, rerun])]  # sortable as times


def test_the_same_minute_gives_two_kinds_two_readable_ids() -> None:
    assert run_id_for(daily_run_time(SLOT)) == "202611271500"  # as the previous version
    rerun = reexport_run_time(SLOT + timedelta(seconds=20))
    assert run_id_for(rerun) == "20261127150001"
    assert export_task_id("prod", rerun) == "rds2bq-prod-20261127150001" != TASK


FULLWIDTH_DIGITS = "".join(chr(0xFF10 + int(d)) for d in "202611271500")


@pytest.mark.parametrize(
    "text", ["20261127150000", "2026112715", FULLWIDTH_DIGITS, "202613011500", "x" * 400]
)
def test_what_is_not_a_run_id(text: str) -> None:
    with pytest.raises(ValueError, match="is not a run id"):
        run_time_of(text)


def test_a_run_of_one_kind_cannot_take_the_other_kinds_run_time() -> None:
    with pytest.raises(ValueError):
        machine.new_run("prod", reexport_run_time(SLOT), "daily", KEYS, SLOT)
    with pytest.raises(ValueError):
        machine.new_run("prod", daily_run_time(SLOT), "rerun", KEYS, SLOT)


# --------------------------------------------------------------------------- the defect


def test_a_daily_call_in_the_minute_of_a_re_export_starts_the_days_full_export() -> None:
    # GIVEN an operator's re-export of one table at 15:00:20
    ops = Ops()
    ops.w.clock.current = SLOT + timedelta(seconds=20)
    rerun = ops.rerun(mode="export", tables=[KEYS[0]])
    # WHEN Cloud Scheduler's daily call for the 15:00 slot arrives in the same minute
    daily = ops.w.service.start_export(SLOT)
    # THEN it is a run of its own, exporting every table, beside the re-export
    assert daily.run_id != rerun.run_id and daily.export_task_id != rerun.export_task_id
    assert (daily.kind, daily.tables, daily.state) == ("daily", tuple(KEYS), RunState.EXPORTING)
    assert ops.w.exporter.export_only[daily.export_task_id] == KEYS
    assert ops.w.exporter.export_only[rerun.export_task_id] == [KEYS[0]]
    # ... and a retry of the daily call adopts the daily run, starting nothing more
    assert ops.w.service.start_export(SLOT).run_id == daily.run_id
    assert ops.w.exporter.start_calls == 2


def test_a_daily_call_never_adopts_a_previous_versions_rerun_of_its_minute() -> None:
    # GIVEN a ledger written by the previous version: a rerun under the minute's 12-digit id
    ops = Ops()
    legacy = machine.new_run("prod", SLOT, "daily", [KEYS[0]], SLOT).with_(kind="rerun")
    ops.w.ledger.create_run(legacy)
    # WHEN the daily call for that minute arrives THEN it is refused, not adopted
    with pytest.raises(ConflictError, match="previous version"):
        ops.w.service.start_export(SLOT)
    assert ops.w.exporter.start_calls == 0


def test_a_legacy_runs_export_id_is_kept_as_stored() -> None:
    # The previous version's export ids had no seconds; a run read back keeps its own.
    ops = Ops()
    legacy = machine.new_run("prod", SLOT, "daily", KEYS, SLOT)
    legacy = legacy.with_(export_task_id="rds2bq-prod-202611271500")
    ops.w.ledger.create_run(legacy)
    assert ops.w.service.start_export(SLOT).export_task_id == "rds2bq-prod-202611271500"
    assert ops.w.exporter.describe_export("rds2bq-prod-202611271500") is not None
    assert ops.w.exporter.describe_export(TASK) is None


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tables = tmp_path / "tables.txt"
    tables.write_text("\n".join(KEYS) + "\n")
    for key, value in VALID.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RDS2BQ_TABLES_FILE", str(tables))


def test_cli_start_takes_no_slot_from_the_clock(
    env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    ops = Ops()
    build = lambda _settings: FakeWiring(ops)  # noqa: E731
    # Two calls a minute apart, without --slot: both refused, nothing started.
    assert cli.main(["start"], build=build) == 2  # type: ignore[arg-type]
    ops.w.clock.advance(minutes=1)
    assert cli.main(["start"], build=build) == 2  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert "pass --slot" in err and "2026-11-27T15:00:00Z" in err
    assert ops.w.exporter.start_calls == 0 and not ops.w.ledger.runs
    # With the slot: one run, and a repeat adopts it.
    for _ in range(2):
        assert cli.main(["start", "--slot", "2026-11-27T15:00:00Z"], build=build) == 0  # type: ignore[arg-type]
    assert ops.w.exporter.start_calls == 1
    assert ops.w.exporter.tasks[TASK].status is ExportStatus.STARTING


# --------------------------------------------------------------------------- previous ledgers


def legacy_handed_off() -> Ops:
    """A daily run the previous version started (export id without seconds), then loaded."""
    ops = Ops()
    legacy = machine.new_run("prod", SLOT, "daily", KEYS, SLOT)
    ops.w.ledger.create_run(legacy.with_(export_task_id="rds2bq-prod-202611271500"))
    return ops


def test_a_previous_versions_run_is_not_handed_off_to_an_empty_folder() -> None:
    # GIVEN a run of the previous version still exporting when this version was deployed
    ops = legacy_handed_off()
    ops.w.service.start_export(SLOT)  # adopts it: its export id is the stored one
    old_task = "rds2bq-prod-202611271500"
    ops.w.exporter.tables_info[old_task] = [
        TableExportStatus(f"shop.shop.{k.split('.')[1]}", "COMPLETE") for k in KEYS
    ]
    ops.w.exporter.set_status(
        old_task, ExportStatus.COMPLETE, percent=100, task_end_time=ops.w.clock.now()
    )
    # WHEN the poll hands it off THEN no DTS run is started (it would load nothing and
    # still end SUCCEEDED): every table fails, saying why and what to do
    ops.w.service.poll()
    ops.w.clock.advance(minutes=5)
    ops.w.service.poll()
    assert ops.starts() == 0
    tables = ops.w.ledger.table_docs["202611271500"].values()
    assert all("previous version" in t.reason and "re-export" in t.reason for t in tables)
    assert ops.run().state is RunState.FAILED


def test_a_previous_versions_run_is_re_exported_not_re_transferred() -> None:
    ops = legacy_handed_off()
    ops.w.ledger.transition(
        "202611271500",
        lambda r: Transition(
            r.with_(state=RunState.PARTIAL, export_completed_at=SLOT, handed_off_at=SLOT)
        ),
    )
    with pytest.raises(ConflictError, match="previous version"):
        ops.rerun(run_id="202611271500", tables=[KEYS[0]])
    assert ops.starts() == 0

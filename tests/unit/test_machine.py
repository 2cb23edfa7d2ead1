"""The pure state machine, over every (run state, RDS observation) pair."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.core import machine
from orchestrator.core.events import HandoffDone
from orchestrator.core.model import (
    TERMINAL_RUN_STATES,
    EventKind,
    ExportObservation,
    ExportStatus,
    Run,
    RunState,
    Source,
    TableExportStatus,
    TableRun,
    TableState,
)

NOW = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
RUN_TIME = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
KEYS = ("shop.orders", "shop.customers", "shop.audit")
TARGETS = {k: frozenset({k, "shop." + k}) for k in KEYS}

OBSERVATIONS = {
    "STARTING": ExportObservation("t", ExportStatus.STARTING),
    "IN_PROGRESS": ExportObservation("t", ExportStatus.IN_PROGRESS, percent=40, extracted_gb=1.5),
    "COMPLETE": ExportObservation("t", ExportStatus.COMPLETE, percent=100),
    "COMPLETE_WARNING": ExportObservation(
        "t", ExportStatus.COMPLETE, percent=100, warning='{"skippedTables": ["shop.audit"]}'
    ),
    "FAILED": ExportObservation("t", ExportStatus.FAILED, failure_cause="S3 access denied"),
    "CANCELING": ExportObservation("t", ExportStatus.CANCELING, percent=10),
    "CANCELED": ExportObservation("t", ExportStatus.CANCELED, failure_cause="canceled by user"),
}


def make_run(state: RunState, **changes: object) -> Run:
    run = machine.new_run("prod", RUN_TIME, "daily", KEYS, RUN_TIME)
    return run.with_(state=state, export_started_at=RUN_TIME, **changes)


def tables_for(name: str) -> list[TableRun] | None:
    if not name.startswith("COMPLETE"):
        return None
    report = [
        TableExportStatus("shop.shop.orders", "COMPLETE"),
        TableExportStatus("shop.shop.customers", "COMPLETE"),
    ]
    return machine.classify_tables(KEYS, report, TARGETS)


@pytest.mark.parametrize("state", list(RunState))
@pytest.mark.parametrize("name", list(OBSERVATIONS))
def test_every_state_and_observation(state: RunState, name: str) -> None:
    # GIVEN a run in any state, WHEN any RDS status is observed
    run = make_run(state)
    obs = OBSERVATIONS[name]
    result = machine.observe_export(run, obs, NOW, deadline_minutes=360, tables=tables_for(name))

    # THEN only a run still exporting changes, and it moves where the status says
    if state not in (RunState.EXPORT_STARTING, RunState.EXPORTING):
        assert result.run is None and result.events == ()
        return
    assert result.run is not None
    expected = {
        "STARTING": RunState.EXPORTING,
        "IN_PROGRESS": RunState.EXPORTING,
        "CANCELING": RunState.EXPORTING,
        "COMPLETE": RunState.EXPORTED,
        "COMPLETE_WARNING": RunState.EXPORTED,
        "FAILED": RunState.FAILED,
        "CANCELED": RunState.CANCELED,
    }[name]
    assert result.run.state is expected
    kinds = [e.kind for e in result.events]
    if expected in TERMINAL_RUN_STATES:
        assert kinds == [EventKind.EXPORT_FAILED]
        assert result.run.failure_cause == obs.failure_cause
        assert result.events[0].status == obs.status.value
        assert result.run.closed_at == NOW
    elif expected is RunState.EXPORTED:
        assert kinds == [EventKind.TABLES_SKIPPED]  # shop.audit is not in the report
        assert result.run.export_completed_at == NOW
        assert result.run.export_warning == obs.warning
    else:
        assert kinds == []
        assert result.run.export_status == obs.status.value


def test_complete_requires_the_table_classification() -> None:
    with pytest.raises(ValueError):
        machine.observe_export(
            make_run(RunState.EXPORTING), OBSERVATIONS["COMPLETE"], NOW, deadline_minutes=360
        )


def test_same_observation_twice_changes_nothing_the_second_time() -> None:
    run = make_run(RunState.EXPORTING)
    first = machine.observe_export(run, OBSERVATIONS["IN_PROGRESS"], NOW, deadline_minutes=360)
    assert first.run is not None
    second = machine.observe_export(
        first.run, OBSERVATIONS["IN_PROGRESS"], NOW, deadline_minutes=360
    )
    assert second.run is None


def test_progress_never_goes_backwards() -> None:
    run = make_run(RunState.EXPORTING, percent=60)
    result = machine.observe_export(run, OBSERVATIONS["IN_PROGRESS"], NOW, deadline_minutes=360)
    assert result.run is not None and result.run.percent == 60


def test_late_export_is_flagged_once() -> None:
    run = make_run(RunState.EXPORTING)
    late = RUN_TIME + timedelta(minutes=361)
    first = machine.observe_export(run, OBSERVATIONS["IN_PROGRESS"], late, deadline_minutes=360)
    assert first.run is not None and first.run.late_flagged_at == late
    assert [e.kind for e in first.events] == [EventKind.EXPORT_LATE]
    assert first.events[0].running_minutes == 361
    again = machine.observe_export(
        first.run, OBSERVATIONS["IN_PROGRESS"], late + timedelta(minutes=30), deadline_minutes=360
    )
    assert again.events == ()


def test_not_late_before_the_deadline() -> None:
    run = make_run(RunState.EXPORTING)
    result = machine.observe_export(
        run, OBSERVATIONS["STARTING"], RUN_TIME + timedelta(minutes=359), deadline_minutes=360
    )
    assert result.events == ()


def test_classify_tables_marks_absent_and_non_complete_tables_skipped() -> None:
    report = [
        TableExportStatus("shop.shop.orders", "COMPLETE", size_bytes=10),
        TableExportStatus("shop.shop.customers", "SKIPPED", reason="column name has ';'"),
    ]
    tables = {t.key: t for t in machine.classify_tables(KEYS, report, TARGETS)}
    assert tables["shop.orders"].state is TableState.PENDING
    assert tables["shop.customers"].state is TableState.SKIPPED_BY_EXPORT
    assert tables["shop.customers"].reason == "column name has ';'"
    assert tables["shop.audit"].state is TableState.SKIPPED_BY_EXPORT
    assert "not in the export" in tables["shop.audit"].reason


def test_export_with_no_table_exported_fails_the_run() -> None:
    tables = machine.classify_tables(KEYS, [], TARGETS)
    result = machine.observe_export(
        make_run(RunState.EXPORTING),
        OBSERVATIONS["COMPLETE"],
        NOW,
        deadline_minutes=360,
        tables=tables,
    )
    assert result.run is not None and result.run.state is RunState.FAILED
    assert [e.kind for e in result.events] == [EventKind.TABLES_SKIPPED, EventKind.RUN_CLOSED]


def test_export_started_only_from_export_starting() -> None:
    source = Source("arn:aws:rds:r:1:cluster:c", "cluster")
    started = machine.export_started(make_run(RunState.EXPORT_STARTING), source, NOW)
    assert started.run is not None and started.run.state is RunState.EXPORTING
    assert [e.kind for e in started.events] == [EventKind.EXPORT_STARTED]
    for state in RunState:
        if state is not RunState.EXPORT_STARTING:
            assert machine.export_started(make_run(state), source, NOW).run is None


# --------------------------------------------------------------------------- hand-off


def exported(**changes: object) -> Run:
    return make_run(RunState.EXPORTED, export_completed_at=NOW, **changes)


def test_handoff_waits_for_the_visibility_margin() -> None:
    run = exported()
    assert not machine.handoff_due(run, NOW + timedelta(minutes=4, seconds=59), 5)
    assert machine.handoff_due(run, NOW + timedelta(minutes=5), 5)


def test_claim_is_exclusive_until_the_lease_expires() -> None:
    at = NOW + timedelta(minutes=10)
    first = machine.claim_handoff(exported(), at, "a", 600, 5)
    assert first.run is not None and first.run.handoff_owner == "a"
    assert first.run.state is RunState.TRANSFERRING
    assert machine.claim_handoff(first.run, at + timedelta(seconds=599), "b", 600, 5).run is None
    taken = machine.claim_handoff(first.run, at + timedelta(seconds=600), "b", 600, 5)
    assert taken.run is not None and taken.run.handoff_owner == "b"


def test_release_lets_the_next_poll_resume_at_once() -> None:
    at = NOW + timedelta(minutes=10)
    claimed = machine.claim_handoff(exported(), at, "a", 600, 5).run
    assert claimed is not None
    released = machine.release_handoff(claimed, "a", at).run
    assert released is not None
    assert machine.claim_handoff(released, at, "b", 600, 5).run is not None
    assert machine.release_handoff(claimed, "someone-else", at).run is None


def test_handoff_finished_only_by_its_owner_and_closes_when_nothing_is_in_flight() -> None:
    at = NOW + timedelta(minutes=10)
    claimed = machine.claim_handoff(exported(), at, "a", 600, 5).run
    assert claimed is not None
    tables = [
        TableRun("shop.orders", TableState.STARTED, dts_run="r1"),
        TableRun("shop.customers", TableState.FAILED, reason="no config"),
        TableRun("shop.audit", TableState.SKIPPED_BY_EXPORT),
    ]
    assert machine.handoff_finished(claimed, "b", at, tables).run is None
    done = machine.handoff_finished(claimed, "a", at, tables)
    assert done.run is not None and done.run.handed_off_at == at
    assert done.run.state is RunState.TRANSFERRING
    kinds = [e.kind for e in done.events]
    assert kinds == [EventKind.HANDOFF_DONE, EventKind.TABLE_FAILED]
    assert done.events[0] == HandoffDone(
        claimed.run_id, at, started=1, failed_to_start=1, skipped=1
    )
    all_final = [t.with_(state=TableState.FAILED) for t in tables]
    closed = machine.handoff_finished(claimed, "a", at, all_final)
    assert closed.run is not None and closed.run.state is RunState.FAILED


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ((TableState.SUCCEEDED, TableState.SUCCEEDED), RunState.SUCCEEDED),
        ((TableState.SUCCEEDED, TableState.FAILED), RunState.PARTIAL),
        ((TableState.SUCCEEDED, TableState.SKIPPED_BY_EXPORT), RunState.PARTIAL),
        ((TableState.FAILED, TableState.CANCELLED), RunState.FAILED),
        ((TableState.SUCCEEDED, TableState.STARTED), None),
    ],
)
def test_close_if_done(states: tuple[TableState, ...], expected: RunState | None) -> None:
    run = make_run(RunState.TRANSFERRING, handed_off_at=NOW)
    tables = [TableRun(f"shop.t{i}", s) for i, s in enumerate(states)]
    result = machine.close_if_done(run, tables, NOW)
    if expected is None:
        assert result.run is None
        return
    assert result.run is not None and result.run.state is expected
    assert [e.kind for e in result.events] == [EventKind.RUN_CLOSED]
    summary = result.events[0]
    assert summary.loaded == states.count(TableState.SUCCEEDED)


def test_close_waits_for_the_handoff() -> None:
    run = make_run(RunState.TRANSFERRING)
    assert machine.close_if_done(run, [TableRun("a", TableState.SUCCEEDED)], NOW).run is None


def test_table_finished_ignores_duplicates_and_older_attempts() -> None:
    table = TableRun("shop.orders", TableState.STARTED, dts_run="r2")
    assert machine.table_finished(table, "r1", TableState.FAILED, 3, "x", None, NOW) is None
    done = machine.table_finished(table, "r2", TableState.SUCCEEDED, 0, "", None, NOW)
    assert done is not None and done.state is TableState.SUCCEEDED
    assert machine.table_finished(done, "r2", TableState.SUCCEEDED, 0, "", None, NOW) is None


@pytest.mark.parametrize("state", list(RunState))
def test_export_not_started_closes_only_a_starting_run(state: RunState) -> None:
    result = machine.export_not_started(make_run(state), "cluster gone", NOW)
    if state is not RunState.EXPORT_STARTING:
        assert result.run is None and result.events == ()
        return
    assert result.run is not None and result.run.state is RunState.FAILED
    assert result.run.failure_cause == "cluster gone" and result.run.closed_at == NOW
    assert [e.status for e in result.events] == ["NOT_STARTED"]

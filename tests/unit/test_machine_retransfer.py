"""The pure re-transfer transitions: claim, record, refuse, release, reopen, and re-closing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.core import machine
from orchestrator.core.model import EventKind, Run, RunState, TableRun, TableState

NOW = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
RUN_TIME = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
STALE = timedelta(minutes=10)
CONFIG = "projects/p/locations/l/transferConfigs/1"
OLD_RUN = CONFIG + "/runs/old"


def table(state: TableState, **changes: object) -> TableRun:
    base = TableRun(
        "shop.orders",
        state,
        dts_config=CONFIG,
        dts_run=OLD_RUN,
        error_code=3,
        error_message="Parquet column 'amount' ...",
        started_at=RUN_TIME + timedelta(minutes=5),
        finished_at=RUN_TIME + timedelta(minutes=9),
        attempts=1,
    )
    return base.with_(**changes)


def closed_run(state: RunState = RunState.PARTIAL) -> Run:
    run = machine.new_run("prod", RUN_TIME, "daily", ["shop.orders", "shop.items"], RUN_TIME)
    return run.with_(
        state=state,
        export_completed_at=RUN_TIME + timedelta(minutes=2),
        handed_off_at=RUN_TIME + timedelta(minutes=7),
        closed_at=RUN_TIME + timedelta(minutes=10),
    )


@pytest.mark.parametrize("state", list(TableState))
def test_only_finished_tables_can_be_claimed(state: TableState) -> None:
    claimed = machine.claim_retransfer(table(state), CONFIG, NOW, STALE)
    finished = (
        TableState.SUCCEEDED,
        TableState.FAILED,
        TableState.CANCELLED,
        TableState.EMPTY,
        TableState.HELD,  # its re-transfer is how an operator accepts the schema change
        TableState.MISMATCHED,
    )
    if state in finished:
        assert claimed is not None
        assert (claimed.state, claimed.dts_run, claimed.started_at) == (
            TableState.STARTING,
            "",  # so that the new run's notification is accepted whatever its timing
            NOW,
        )
        assert claimed.finished_at is None and claimed.error_message == ""
        assert claimed.attempts == 1  # counted when the DTS run is recorded
    else:
        assert claimed is None


def test_an_abandoned_claim_can_be_taken_over_after_the_lease_but_not_before() -> None:
    claim = machine.claim_retransfer(table(TableState.FAILED), CONFIG, NOW, STALE)
    assert claim is not None
    assert (
        machine.claim_retransfer(claim, CONFIG, NOW + STALE - timedelta(seconds=1), STALE) is None
    )
    taken = machine.claim_retransfer(claim, CONFIG, NOW + STALE, STALE)
    assert taken is not None and taken.started_at == NOW + STALE


def test_a_fan_out_starting_table_is_never_taken_over() -> None:
    fan_out = TableRun("shop.orders", TableState.STARTING, dts_config=CONFIG)  # no started_at
    assert machine.claim_retransfer(fan_out, CONFIG, NOW + timedelta(days=1), STALE) is None


def test_recording_the_new_run_needs_the_claim() -> None:
    claim = machine.claim_retransfer(table(TableState.FAILED), CONFIG, NOW, STALE)
    assert claim is not None
    later = NOW + timedelta(seconds=2)
    started = machine.retransfer_started(claim, NOW, CONFIG + "/runs/new", later)
    assert started is not None
    assert (started.state, started.dts_run, started.attempts) == (
        TableState.STARTED,
        CONFIG + "/runs/new",
        2,
    )
    assert started.finished_at is None and started.reason == ""
    # another holder's claim (a takeover) is not ours to record
    assert machine.retransfer_started(claim, NOW - timedelta(seconds=1), "x", later) is None
    assert machine.retransfer_refused(claim, NOW - timedelta(seconds=1), "no", later) is None


def test_a_notification_that_beats_the_record_is_kept_and_the_attempt_counted() -> None:
    claim = machine.claim_retransfer(table(TableState.FAILED), CONFIG, NOW, STALE)
    assert claim is not None
    new = CONFIG + "/runs/new"
    finished = machine.table_finished(
        claim, new, TableState.SUCCEEDED, 0, "", NOW, NOW + timedelta(seconds=1)
    )
    assert finished is not None and finished.state is TableState.SUCCEEDED
    recorded = machine.retransfer_started(finished, NOW, new, NOW + timedelta(seconds=2))
    assert recorded is not None
    assert (recorded.state, recorded.attempts) == (TableState.SUCCEEDED, 2)


def test_a_late_notification_of_the_old_run_is_ignored_once_the_new_one_is_recorded() -> None:
    claim = machine.claim_retransfer(table(TableState.FAILED), CONFIG, NOW, STALE)
    assert claim is not None
    started = machine.retransfer_started(claim, NOW, CONFIG + "/runs/new", NOW)
    assert started is not None
    late = machine.table_finished(started, OLD_RUN, TableState.FAILED, 3, "old", None, NOW)
    assert late is None


def test_refused_and_released_claims() -> None:
    previous = table(TableState.FAILED)
    claim = machine.claim_retransfer(previous, CONFIG, NOW, STALE)
    assert claim is not None
    refused = machine.retransfer_refused(claim, NOW, "DTS refused: bad params", NOW)
    assert refused is not None
    assert (refused.state, refused.reason) == (TableState.FAILED, "DTS refused: bad params")
    assert machine.release_retransfer(claim, NOW, previous) == previous
    assert machine.release_retransfer(previous, NOW, previous) is None  # not a claim any more


@pytest.mark.parametrize("state", list(RunState))
def test_reopen_only_a_closed_handed_off_run(state: RunState) -> None:
    run = closed_run(state)
    result = machine.reopen(run, NOW)
    if state in (RunState.SUCCEEDED, RunState.PARTIAL, RunState.FAILED):
        assert result.run is not None
        assert result.run.state is RunState.TRANSFERRING and result.run.closed_at is None
        assert result.run.handed_off_at == run.handed_off_at
        assert result.events == ()
    else:
        assert result.run is None


def test_a_run_without_hand_off_is_not_reopened() -> None:
    run = closed_run(RunState.FAILED).with_(handed_off_at=None)
    assert machine.reopen(run, NOW).run is None


def test_a_reopened_run_closes_again_with_a_new_summary() -> None:
    run = closed_run(RunState.PARTIAL)
    reopened = machine.reopen(run, NOW).run
    assert reopened is not None
    in_flight = [
        TableRun("shop.orders", TableState.STARTED),
        TableRun("shop.items", TableState.SUCCEEDED),
    ]
    assert machine.close_if_done(reopened, in_flight, NOW).run is None
    done = [in_flight[0].with_(state=TableState.SUCCEEDED), in_flight[1]]
    closing = machine.close_if_done(reopened, done, NOW + timedelta(minutes=3))
    assert closing.run is not None and closing.run.state is RunState.SUCCEEDED
    assert [e.kind for e in closing.events] == [EventKind.RUN_CLOSED]
    assert closing.events[0].loaded == 2


@pytest.mark.parametrize("state", list(RunState))
def test_cancel_unstarted_only_before_the_export(state: RunState) -> None:
    run = closed_run(state)
    result = machine.cancel_unstarted(run, "not started: UNAVAILABLE", NOW)
    if state is RunState.EXPORT_STARTING:
        assert result.run is not None and result.run.state is RunState.CANCELED
        assert result.run.failure_cause == "not started: UNAVAILABLE" and result.events == ()
    else:
        assert result.run is None

"""The one home of a DTS run of one table (app/transfers.py) and of an export's start quota
(app/exports.py), over in-memory fakes: start with bounded retry and adoption, record once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.app.exports import MAX_CONCURRENT_EXPORTS, require_export_slot
from orchestrator.app.ports import RunOutcome
from orchestrator.app.transfers import (
    TransferRuns,
    close_if_done,
    finished_key,
    outcome_of,
    record_finished,
)
from orchestrator.core import machine
from orchestrator.core.errors import ExportQuotaError, PermanentError, TransientError
from orchestrator.core.model import (
    DTS_FINAL_STATES,
    EventKind,
    RunState,
    TableRun,
    TableState,
    table_state_of_dts,
)
from orchestrator.core.notifications import DtsRunState, TransferRunFinished
from orchestrator.core.retry import Backoff
from tests.fakes import FakeExporter, FakeTransfers, InMemoryLedger, RecordingEventBus

RUN_TIME = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
NOW = RUN_TIME + timedelta(hours=2)
CONFIG = "projects/p/locations/l/transferConfigs/0"
RUN_ID = "202611271500"


class World:
    def __init__(self, attempts: int = 3) -> None:
        self.ledger = InMemoryLedger()
        self.dts = FakeTransfers.for_tables(["shop.orders"])
        self.sleeps: list[float] = []
        self.runs = TransferRuns(
            self.ledger,
            lambda: self.dts,
            backoff=Backoff(attempts=attempts, base_seconds=0.0),
            sleep=self.sleeps.append,
        )

    def started(self) -> int:
        return len(self.dts.started.get((CONFIG, RUN_TIME), []))

    def handed_off(self, table_state: TableState = TableState.STARTED) -> TableRun:
        """A handed-off daily run whose one table's DTS run was started."""
        run = machine.new_run("prod", RUN_TIME, "daily", ["shop.orders"], RUN_TIME)
        self.ledger.create_run(
            run.with_(
                state=RunState.TRANSFERRING, handed_off_at=RUN_TIME, export_completed_at=RUN_TIME
            )
        )
        name = self.runs.start(CONFIG, RUN_TIME).name
        table = TableRun(
            key="shop.orders",
            state=table_state,
            dts_config=CONFIG,
            dts_run=name,
            started_at=RUN_TIME,
        )
        self.ledger.put_tables(run.run_id, [table])
        return table


# --------------------------------------------------------------------------- starting


def test_a_start_starts_one_run_for_the_run_time() -> None:
    w = World()
    started = w.runs.start(CONFIG, RUN_TIME)
    assert started.name == f"{CONFIG}/runs/r0" and not started.adopted
    assert w.started() == 1


def test_a_resumed_start_adopts_the_run_an_earlier_attempt_started() -> None:
    # GIVEN a hand-off that started the run and died before recording it
    w = World()
    first = w.runs.start(CONFIG, RUN_TIME)
    # WHEN the next holder resumes the table
    again = w.runs.start(CONFIG, RUN_TIME, resumed=True)
    # THEN it adopts that run: nothing is started twice
    assert again.name == first.name and again.adopted
    assert w.started() == 1


def test_a_resumed_start_that_finds_no_run_starts_one() -> None:
    w = World()
    started = w.runs.start(CONFIG, RUN_TIME, resumed=True)
    assert not started.adopted and w.started() == 1


def test_transient_faults_are_retried_within_the_bounds() -> None:
    w = World(attempts=3)
    w.dts.transient_failures = 2
    assert w.runs.start(CONFIG, RUN_TIME).name and w.started() == 1
    assert len(w.sleeps) == 2
    w.dts.transient_failures = 3
    with pytest.raises(TransientError):
        w.runs.start(CONFIG, RUN_TIME)
    assert w.started() == 1 and w.dts.transient_failures == 0  # three attempts, no more


def test_a_refusal_is_not_retried() -> None:
    w = World()
    w.dts.permanent_for.add(CONFIG)
    sleeps = len(w.sleeps)
    with pytest.raises(PermanentError):
        w.runs.start(CONFIG, RUN_TIME)
    assert w.started() == 0 and len(w.sleeps) == sleeps


def test_an_answer_naming_the_earlier_run_is_no_new_run() -> None:
    # A re-transfer asks at the same run time: an adapter that adopted after a deadline answers
    # with the previous run, which means the new one was not started.
    w = World()
    earlier = w.runs.start(CONFIG, RUN_TIME).name
    w.dts.start_run = lambda config, run_time: earlier  # type: ignore[method-assign]
    with pytest.raises(TransientError, match="earlier run"):
        w.runs.start(CONFIG, RUN_TIME, earlier=earlier)


# --------------------------------------------------------------------------- recording


def test_a_notification_and_a_look_up_of_one_run_share_its_key() -> None:
    note = TransferRunFinished(
        config_name=CONFIG,
        run_name=f"{CONFIG}/runs/r0",
        run_time=RUN_TIME,
        state=DtsRunState.FAILED,
        error_code=9,
        error_message="Access Denied",
    )
    looked_up = RunOutcome("FAILED", 9, "Access Denied")
    assert finished_key(note.run_name, outcome_of(note)) == finished_key(note.run_name, looked_up)
    assert finished_key(note.run_name, looked_up) != finished_key(
        note.run_name, RunOutcome("SUCCEEDED")
    )


def test_a_look_up_records_a_finished_run_once_under_its_key() -> None:
    w = World()
    table = w.handed_off()
    w.dts.outcomes[table.dts_run] = RunOutcome("FAILED", 9, "Access Denied")
    failed: list[TableRun] = []
    assert w.runs.settle(RUN_ID, table, NOW, failed.append)
    assert w.ledger.table_docs[RUN_ID]["shop.orders"].state is TableState.FAILED
    assert [t.error_message for t in failed] == ["Access Denied"]
    key = finished_key(table.dts_run, RunOutcome("FAILED"))
    assert key in w.ledger.done and not w.ledger.held
    # a second look-up (or the late notification's claim) handles nothing more
    assert not w.runs.settle(RUN_ID, table, NOW, failed.append)
    assert not w.ledger.claim_once(key, NOW)
    assert len(failed) == 1


def test_a_run_still_going_is_left_for_its_notification() -> None:
    w = World()
    table = w.handed_off()
    assert not w.runs.settle(RUN_ID, table, NOW, lambda t: None)
    assert w.ledger.table_docs[RUN_ID]["shop.orders"].state is TableState.STARTED
    assert not w.ledger.claimed


def test_a_transient_fault_while_recording_gives_the_key_back() -> None:
    w = World()
    table = w.handed_off()
    w.dts.outcomes[table.dts_run] = RunOutcome("FAILED", 9, "boom")

    def down(_: TableRun) -> None:
        raise TransientError("Pub/Sub unavailable")

    with pytest.raises(TransientError):
        w.runs.settle(RUN_ID, table, NOW, down)
    assert not w.ledger.claimed  # the next poll (or the notification) may handle it
    assert w.runs.settle(RUN_ID, table, NOW, lambda t: None)


def test_an_older_attempt_records_nothing() -> None:
    w = World()
    table = w.handed_off()
    older = record_finished(
        w.ledger, RUN_ID, table.key, f"{CONFIG}/runs/old", RunOutcome("FAILED"), NOW
    )
    assert older is None
    assert w.ledger.table_docs[RUN_ID]["shop.orders"].state is TableState.STARTED


def test_the_last_table_recorded_closes_the_run_once() -> None:
    w = World()
    table = w.handed_off()
    bus = RecordingEventBus()
    close_if_done(w.ledger, bus, RUN_ID, NOW)
    assert w.ledger.runs[RUN_ID].state is RunState.TRANSFERRING and not bus.events
    record_finished(w.ledger, RUN_ID, table.key, table.dts_run, RunOutcome("SUCCEEDED"), NOW)
    close_if_done(w.ledger, bus, RUN_ID, NOW)
    close_if_done(w.ledger, bus, RUN_ID, NOW)
    assert w.ledger.runs[RUN_ID].state is RunState.SUCCEEDED
    assert [e.kind for e in bus.events] == [EventKind.RUN_CLOSED]


# --------------------------------------------------------------------------- one mapping


def test_dts_states_map_to_table_states_in_one_place() -> None:
    assert set(DTS_FINAL_STATES) == {s.value for s in DtsRunState}
    for state in DtsRunState:
        assert state.table_state is DTS_FINAL_STATES[state.value]
        assert RunOutcome(state.value).table_state is state.table_state
    for going in ("PENDING", "RUNNING", "TRANSFER_STATE_UNSPECIFIED", "cancelled"):
        assert table_state_of_dts(going) is None and RunOutcome(going).table_state is None


# --------------------------------------------------------------------------- export quota


def test_the_export_quota_refuses_the_sixth_export() -> None:
    exporter = FakeExporter()
    exporter.other_running = MAX_CONCURRENT_EXPORTS - 1
    require_export_slot(exporter, "; the next poll tries again")
    exporter.other_running = MAX_CONCURRENT_EXPORTS
    with pytest.raises(ExportQuotaError, match=r"5 exports .* limit is 5\); the next poll"):
        require_export_slot(exporter, "; the next poll tries again")

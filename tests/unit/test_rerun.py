"""Reruns over in-memory fakes: re-transfer, re-export, every refusal, dry runs, repeats."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from orchestrator.app.rerun_request import Mode, RerunRequest, RerunResult
from orchestrator.app.reruns import Reruns
from orchestrator.app.transfers import TransferRuns
from orchestrator.core.errors import (
    BadRequestError,
    ConflictError,
    ExportFilesGoneError,
    ExportQuotaError,
    NoSnapshotError,
    NotFoundError,
    PermanentError,
    TransferConfigMissingError,
    TransientError,
)
from orchestrator.core.model import EventKind, ExportStatus, RunState, TableState, Transition
from orchestrator.core.retry import Backoff
from orchestrator.present.slack import SlackMessages
from tests.fakes import FakeExporter, LoopedNotify, RecordingNotifier
from tests.unit.test_notify import dts_message
from tests.unit.test_service import SLOT, TASK, World, names

RUN_ID = "202611271500"
KEYS = names(3)


@dataclass
class Exporter(FakeExporter):
    """The fake exporter, plus tables whose export files were deleted."""

    gone: set[str] = field(default_factory=set)

    def export_files_present(self, task_id: str, export_dir: str) -> bool:
        return task_id in self.tasks and export_dir not in self.gone


class Ops:
    """A world with a handed-off run of three tables, notify beside it, and the rerun service."""

    def __init__(self, keys: list[str] = KEYS, **env: str) -> None:
        self.w = w = World(keys, **env)
        w.exporter = self.exporter = Exporter()
        self.slack = RecordingNotifier()
        self.notify = LoopedNotify(
            w.settings,
            w.ledger,
            self.slack,
            w.events,
            w.clock,
            SlackMessages(w.settings),
            lambda: w.transfers,
        )
        runs = TransferRuns(
            w.ledger,
            lambda: w.transfers,
            backoff=Backoff(attempts=2, base_seconds=0.0),
            sleep=lambda _: None,
        )
        self.reruns = Reruns(
            w.settings, w.ledger, lambda: w.exporter, lambda: w.transfers, w.events, w.clock, runs
        )
        self.keys = keys
        self._mid = 0

    def handed_off(self) -> Ops:
        self.w.service.start_export(SLOT)
        self.w.complete(self.keys)
        self.w.service.poll()
        self.w.clock.advance(minutes=5)
        self.w.service.poll()
        return self

    def finish(self, key: str, state: str, error: str = "", run_id: str = RUN_ID) -> Any:
        """DTS reports the table's current run finished (as Pub/Sub would deliver it)."""
        table = self.table(key, run_id)
        self._mid += 1
        run_time = self.w.ledger.runs[run_id].run_time
        return self.notify.handle(
            dts_message(
                table.dts_config, table.dts_run, state, error, f"m{self._mid}", run_time=run_time
            )
        )

    def closed_partial(self) -> Ops:
        """t0000 loaded; t0001 and t0002 failed: the run is PARTIAL."""
        self.handed_off()
        self.finish(self.keys[0], "SUCCEEDED")
        for key in self.keys[1:]:
            self.finish(key, "FAILED", "Parquet column 'amount' has type DECIMAL(40,10)")
        assert self.run().state is RunState.PARTIAL
        return self

    def rerun(self, **body: Any) -> RerunResult:
        return self.reruns.rerun(RerunRequest.from_body(body))

    def close(self, run_id: str) -> None:
        self.w.ledger.transition(run_id, lambda r: Transition(r.with_(state=RunState.SUCCEEDED)))

    def run(self, run_id: str = RUN_ID) -> Any:
        return self.w.ledger.runs[run_id]

    def table(self, key: str, run_id: str = RUN_ID) -> Any:
        return self.w.ledger.table_docs[run_id][key]

    def starts(self) -> int:
        return sum(self.w.transfers.starts_per_config().values())

    def closed_events(self) -> int:
        return sum(1 for e in self.w.events.events if e.kind is EventKind.RUN_CLOSED)


# --------------------------------------------------------------------------- the request


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, "nothing to rerun"),
        ({"run_id": "yesterday", "failed": True}, "is not a run id"),
        ({"run_id": RUN_ID}, "name the tables of run"),
        ({"run_id": RUN_ID, "tables": ["shop.a"], "failed": True}, "not both"),
        ({"run_id": RUN_ID, "tables": []}, "tables is empty"),
        ({"run_id": RUN_ID, "tables": "shop.a"}, "must be a list"),
        ({"run_id": RUN_ID, "tables": [1]}, "must be a list"),
        ({"run_id": RUN_ID, "failed": "yes"}, "failed must be true or false"),
        ({"mode": "export", "failed": True}, "needs the run_id"),
        ({"mode": "sideways"}, "mode='sideways'"),
        ({"mode": "transfer", "tables": ["shop.a"]}, "needs the run_id"),
        ({"run_id": RUN_ID, "mode": "transfer", "as_of": "2026-11-20", "failed": True}, "as_of"),
        ({"mode": "export", "as_of": "20/11/2026"}, "not a date"),
        ({"mode": "export", "request_id": "has space"}, "request_id"),
        ({"mode": "export", "dry_run": 1}, "dry_run must be true or false"),
    ],
)
def test_malformed_requests_are_refused_with_the_reason(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadRequestError, match=reason):
        RerunRequest.from_body(body)


def test_the_mode_follows_from_the_request() -> None:
    assert RerunRequest.from_body({"run_id": RUN_ID, "failed": True}).mode is Mode.TRANSFER
    assert RerunRequest.from_body({"as_of": "2026-11-20"}).mode is Mode.EXPORT
    assert RerunRequest.from_body({"mode": "export"}).mode is Mode.EXPORT
    request = RerunRequest.from_body({"run_id": RUN_ID, "tables": ["a.b", "a.b", "a.c"]})
    assert request.tables == ("a.b", "a.c")


def test_the_fingerprint_ignores_order_dry_run_and_the_request_id() -> None:
    a = RerunRequest.from_body({"run_id": RUN_ID, "tables": ["a.b", "a.c"], "request_id": "x"})
    b = RerunRequest.from_body({"run_id": RUN_ID, "tables": ["a.c", "a.b"], "dry_run": True})
    c = RerunRequest.from_body({"run_id": RUN_ID, "tables": ["a.c"]})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


# --------------------------------------------------------------------------- re-transfer


def test_failed_tables_are_re_transferred_from_the_same_export_and_the_run_closes_again() -> None:
    ops = Ops().closed_partial()
    exports_before = ops.w.exporter.start_calls
    # WHEN the failed tables are rerun
    result = ops.rerun(run_id=RUN_ID, failed=True)
    # THEN each gets a new DTS run with the ORIGINAL run time, and no new export is started
    assert [(t.table, t.action) for t in result.tables] == [
        (KEYS[1], "started"),
        (KEYS[2], "started"),
    ]
    for key in KEYS[1:]:
        config = ops.w.transfers.configs[key].name
        assert ops.w.transfers.started[(config, SLOT)] == [f"{config}/runs/r0", f"{config}/runs/r1"]
        table = ops.table(key)
        assert (table.state, table.attempts, table.dts_run) == (
            TableState.STARTED,
            2,
            f"{config}/runs/r1",
        )
        assert table.error_message == "" and table.finished_at is None
    assert ops.w.exporter.start_calls == exports_before
    # AND the run is TRANSFERRING again, still handed off, with its loaded table untouched
    run = ops.run()
    assert run.state is RunState.TRANSFERRING and run.closed_at is None
    assert run.handed_off_at is not None and result.state == "TRANSFERRING"
    assert ops.table(KEYS[0]).attempts == 1
    assert ops.w.ledger.open_runs() == [run]
    # AND a poll leaves it alone (no second fan-out)
    ops.w.service.poll()
    assert ops.starts() == 5
    # WHEN DTS reports the new runs THEN notify closes the run again with a new summary
    closed_before = ops.closed_events()
    ops.finish(KEYS[1], "SUCCEEDED")
    assert ops.run().state is RunState.TRANSFERRING
    ops.finish(KEYS[2], "SUCCEEDED")
    assert ops.run().state is RunState.SUCCEEDED and ops.run().closed_at is not None
    assert ops.closed_events() == closed_before + 1
    summary = [e for e in ops.w.events.events if e.kind is EventKind.RUN_CLOSED][-1]
    assert summary.loaded == 3 and summary.failed == 0


def test_a_re_transfer_that_fails_again_closes_the_run_failed_or_partial() -> None:
    ops = Ops().closed_partial()
    ops.rerun(run_id=RUN_ID, tables=[KEYS[1]])
    ops.finish(KEYS[1], "FAILED", "still broken")
    assert ops.run().state is RunState.PARTIAL
    assert ops.table(KEYS[1]).error_message == "still broken"
    assert len(ops.slack.payloads) == 3  # two first failures, and this one


def test_repeating_a_re_transfer_starts_nothing_twice() -> None:
    ops = Ops().closed_partial()
    ops.rerun(run_id=RUN_ID, failed=True)
    assert ops.starts() == 5
    again = ops.rerun(run_id=RUN_ID, failed=True)
    assert again.tables == () and "nothing to re-transfer" in again.message
    with pytest.raises(ConflictError, match="has not finished yet"):
        ops.rerun(run_id=RUN_ID, tables=[KEYS[1]])
    assert ops.starts() == 5


def test_concurrent_re_transfers_of_one_table_start_one_dts_run() -> None:
    ops = Ops().closed_partial()

    def attempt(_: int) -> str:
        try:
            return ops.rerun(run_id=RUN_ID, tables=[KEYS[1]]).tables[0].action
        except ConflictError:
            return "refused"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    assert outcomes.count("started") == 1 and outcomes.count("refused") == 7
    config = ops.w.transfers.configs[KEYS[1]].name
    assert len(ops.w.transfers.started[(config, SLOT)]) == 2  # the first run and one rerun


def test_a_succeeded_table_may_be_re_transferred_by_name() -> None:
    ops = Ops().closed_partial()
    result = ops.rerun(run_id=RUN_ID, tables=[KEYS[0]])
    assert result.started == 1 and ops.table(KEYS[0]).state is TableState.STARTED


def test_dry_run_checks_everything_and_changes_nothing() -> None:
    ops = Ops().closed_partial()
    before = (dict(ops.w.ledger.runs), {k: dict(v) for k, v in ops.w.ledger.table_docs.items()})
    result = ops.rerun(run_id=RUN_ID, failed=True, dry_run=True)
    assert result.dry_run and [t.action for t in result.tables] == ["would-start"] * 2
    assert "would start 2 DTS run(s)" in result.message
    after = (dict(ops.w.ledger.runs), {k: dict(v) for k, v in ops.w.ledger.table_docs.items()})
    assert after == before and ops.starts() == 3
    # a dry run is refused for the same reasons as the real thing
    ops.exporter.gone.add(f"shop/{KEYS[1]}")
    with pytest.raises(ExportFilesGoneError):
        ops.rerun(run_id=RUN_ID, failed=True, dry_run=True)


@pytest.mark.parametrize(
    ("body", "error", "reason"),
    [
        ({"run_id": "202601010000", "failed": True}, NotFoundError, "not in the ledger"),
        ({"run_id": RUN_ID, "tables": ["shop.nope"]}, BadRequestError, "unknown table"),
        ({"run_id": RUN_ID, "tables": [KEYS[0]], "force": True}, None, ""),
    ],
)
def test_unknown_run_and_unknown_table(
    body: dict[str, Any], error: type[Exception] | None, reason: str
) -> None:
    ops = Ops().closed_partial()
    if error is None:
        assert ops.rerun(**body).started == 1
        return
    with pytest.raises(error, match=reason):
        ops.rerun(**body)
    assert ops.starts() == 3


def test_a_table_no_longer_in_the_tables_file_is_refused() -> None:
    ops = Ops().closed_partial()
    ops.reruns.settings = World(KEYS[:2]).settings  # the tables file lost t0002
    with pytest.raises(BadRequestError, match="no longer in the tables file"):
        ops.rerun(run_id=RUN_ID, tables=[KEYS[2]])


def test_export_files_gone_are_refused_before_anything_changes() -> None:
    ops = Ops().closed_partial()
    ops.exporter.gone.add(f"shop/{KEYS[2]}")
    with pytest.raises(ExportFilesGoneError, match=f"files of {KEYS[2]} are no longer"):
        ops.rerun(run_id=RUN_ID, failed=True)
    assert ops.table(KEYS[1]).state is TableState.FAILED  # not claimed either
    assert ops.run().state is RunState.PARTIAL and ops.starts() == 3


def test_a_table_without_transfer_config_is_refused() -> None:
    ops = Ops().closed_partial()
    del ops.w.transfers.configs[KEYS[1]]
    with pytest.raises(TransferConfigMissingError, match="orchestrator sync"):
        ops.rerun(run_id=RUN_ID, failed=True)


def test_a_run_still_exporting_or_handing_off_is_refused() -> None:
    ops = Ops()
    ops.w.service.start_export(SLOT)
    with pytest.raises(ConflictError, match="EXPORTING"):
        ops.rerun(run_id=RUN_ID, tables=[KEYS[0]])


def test_a_run_whose_export_failed_has_nothing_to_re_transfer() -> None:
    ops = Ops()
    ops.w.service.start_export(SLOT)
    ops.w.exporter.set_status(TASK, ExportStatus.FAILED, failure_cause="S3 access denied")
    ops.w.service.poll()
    with pytest.raises(ConflictError, match='re-export instead: "mode": "export"'):
        ops.rerun(run_id=RUN_ID, tables=[KEYS[0]])


def test_a_table_skipped_by_the_export_is_refused() -> None:
    ops = Ops()
    ops.w.service.start_export(SLOT)
    ops.w.complete(KEYS[:2], {KEYS[2]: "a column name contains a space"})
    ops.w.service.poll()
    ops.w.clock.advance(minutes=5)
    ops.w.service.poll()
    for key in KEYS[:2]:
        ops.finish(key, "SUCCEEDED")
    with pytest.raises(ConflictError, match=r"was not in the export \(a column name"):
        ops.rerun(run_id=RUN_ID, tables=[KEYS[2]])


def test_a_newer_load_of_the_table_needs_force() -> None:
    ops = Ops().closed_partial()
    # GIVEN a newer run that loaded t0001
    ops.w.clock.advance(hours=1)
    newer = ops.w.service.start_export(ops.w.clock.now())
    ops.w.ledger.add_tables(newer.run_id, [])
    ops.w.ledger.put_tables(
        newer.run_id,
        [ops.table(KEYS[1]).with_(state=TableState.SUCCEEDED, dts_run="x")],
    )
    ops.close(newer.run_id)
    with pytest.raises(ConflictError, match="loaded by the newer run"):
        ops.rerun(run_id=RUN_ID, tables=[KEYS[1]])
    assert ops.rerun(run_id=RUN_ID, tables=[KEYS[1]], force=True).started == 1


def test_another_run_exporting_the_table_is_a_conflict() -> None:
    ops = Ops().closed_partial()
    ops.w.clock.advance(minutes=30)
    ops.rerun(mode="export", tables=[KEYS[1]])  # a re-export of t0001 is now exporting
    with pytest.raises(ConflictError, match="is still exporting"):
        ops.rerun(run_id=RUN_ID, tables=[KEYS[1]])
    assert ops.rerun(run_id=RUN_ID, tables=[KEYS[2]]).started == 1  # other tables are fine


def test_dts_unavailable_releases_the_claim_and_says_try_again() -> None:
    ops = Ops().closed_partial()
    ops.w.transfers.transient_failures = 10
    with pytest.raises(TransientError, match="try again"):
        ops.rerun(run_id=RUN_ID, failed=True)
    for key in KEYS[1:]:
        assert ops.table(key).state is TableState.FAILED and ops.table(key).attempts == 1
    assert ops.run().state is RunState.PARTIAL  # never reopened
    ops.w.transfers.transient_failures = 0
    assert ops.rerun(run_id=RUN_ID, failed=True).started == 2


def test_dts_refusing_one_table_fails_only_that_table() -> None:
    ops = Ops().closed_partial()
    ops.w.transfers.permanent_for.add(ops.w.transfers.configs[KEYS[2]].name)
    result = ops.rerun(run_id=RUN_ID, failed=True)
    assert {t.table: t.action for t in result.tables} == {
        KEYS[1]: "started",
        KEYS[2]: "refused-by-dts",
    }
    assert ops.table(KEYS[2]).state is TableState.FAILED
    assert "DTS refused the re-transfer" in ops.table(KEYS[2]).reason
    ops.finish(KEYS[1], "SUCCEEDED")
    assert ops.run().state is RunState.PARTIAL


def test_dts_refusing_every_table_is_a_permanent_error() -> None:
    ops = Ops().closed_partial()
    ops.w.transfers.permanent_for.update(c.name for c in ops.w.transfers.configs.values())
    with pytest.raises(PermanentError, match="nothing re-transferred"):
        ops.rerun(run_id=RUN_ID, failed=True)
    assert ops.run().state is RunState.PARTIAL


def test_an_abandoned_claim_is_taken_over_after_the_lease() -> None:
    ops = Ops().closed_partial()
    # GIVEN a re-transfer that claimed t0001 and died before reaching DTS
    from orchestrator.core import machine

    config = ops.w.transfers.configs[KEYS[1]].name
    ops.w.ledger.update_table(
        RUN_ID,
        KEYS[1],
        lambda t: machine.claim_retransfer(t, config, ops.w.clock.now(), timedelta(minutes=10)),
    )
    with pytest.raises(ConflictError, match="being started right now"):
        ops.rerun(run_id=RUN_ID, tables=[KEYS[1]])
    ops.w.clock.advance(seconds=601)
    assert ops.rerun(run_id=RUN_ID, tables=[KEYS[1]]).started == 1


def test_a_request_id_makes_any_repeat_return_the_first_answer() -> None:
    ops = Ops().closed_partial()
    first = ops.rerun(run_id=RUN_ID, failed=True, request_id="oncall-42")
    assert first.started == 2 and not first.repeated
    again = ops.rerun(run_id=RUN_ID, failed=True, request_id="oncall-42")
    assert again.repeated and "already handled" in again.message
    assert [t.detail for t in again.tables] == ["STARTED", "STARTED"]
    assert ops.starts() == 5
    with pytest.raises(ConflictError, match="different request"):
        ops.rerun(run_id=RUN_ID, tables=[KEYS[0]], request_id="oncall-42")


def test_a_refused_request_id_can_be_used_again() -> None:
    ops = Ops().closed_partial()
    ops.w.transfers.transient_failures = 10
    with pytest.raises(TransientError):
        ops.rerun(run_id=RUN_ID, failed=True, request_id="r1")
    ops.w.transfers.transient_failures = 0
    assert ops.rerun(run_id=RUN_ID, failed=True, request_id="r1").started == 2


# --------------------------------------------------------------------------- re-export


def test_a_re_export_is_a_new_run_with_a_new_export_of_the_chosen_tables() -> None:
    ops = Ops().closed_partial()
    ops.w.clock.current = datetime(2026, 11, 28, 1, 30, 42, tzinfo=UTC)
    result = ops.rerun(mode="export", run_id=RUN_ID, failed=True)
    # A re-export's run time is its minute at second 01, so its ids can never be a daily run's.
    assert result.run_id == "20261128013001" and result.mode is Mode.EXPORT
    run = ops.run("20261128013001")
    assert (run.kind, run.parent_run_id, run.tables) == ("rerun", RUN_ID, tuple(KEYS[1:]))
    assert run.export_task_id == "rds2bq-prod-20261128013001" != TASK
    assert ops.w.exporter.export_only[run.export_task_id] == KEYS[1:]
    assert run.state is RunState.EXPORTING and result.state == "EXPORTING"


def test_a_re_export_of_everything_and_of_named_tables() -> None:
    ops = Ops()
    everything = ops.rerun(mode="export")
    assert ops.run(everything.run_id).tables == tuple(KEYS)
    ops.w.clock.advance(minutes=1)
    ops.close(everything.run_id)
    some = ops.rerun(mode="export", tables=[KEYS[2], KEYS[0]])
    assert ops.run(some.run_id).tables == (KEYS[0], KEYS[2])  # in tables-file order


def test_as_of_exports_the_snapshot_of_that_day() -> None:
    ops = Ops(RDS2BQ_SOURCE_KIND="cluster-snapshot")
    day = datetime(2026, 11, 20, tzinfo=UTC)
    ops.exporter.snapshots = [
        ("arn:snap:19", day - timedelta(hours=6), "available"),
        ("arn:snap:20-early", day + timedelta(hours=3), "available"),
        ("arn:snap:20-late", day + timedelta(hours=18), "available"),
        ("arn:snap:21", day + timedelta(days=1, hours=18), "available"),
    ]
    # The day is read in the configured time zone (Asia/Tokyo, UTC+9): 2026-11-20 there runs from
    # 11-19 15:00 to 11-20 15:00 UTC, so "20-late" (11-21 03:00 JST) is the next day's snapshot.
    result = ops.rerun(as_of="2026-11-20", tables=[KEYS[0]])
    assert result.source_arn == "arn:snap:20-early"
    assert ops.run(result.run_id).snapshot_time == day + timedelta(hours=3)
    assert "as of 2026-11-20 12:00 JST (Asia/Tokyo; 2026-11-20 03:00 UTC)" in result.message
    ops.w.clock.advance(minutes=1)
    with pytest.raises(NoSnapshotError):
        ops.rerun(as_of="2026-11-10", tables=[KEYS[1]])


def test_re_export_refusals() -> None:
    ops = Ops()
    with pytest.raises(BadRequestError, match="unknown table"):
        ops.rerun(mode="export", tables=["shop.nope"])
    with pytest.raises(NotFoundError):
        ops.rerun(mode="export", run_id="202601010000", failed=True)
    with pytest.raises(BadRequestError, match="in the future"):
        ops.rerun(mode="export", as_of="2030-01-01")
    ops.exporter.other_running = 5
    with pytest.raises(ExportQuotaError, match="5 exports are already running"):
        ops.rerun(mode="export")
    assert ops.w.ledger.runs == {}  # a refusal leaves no run behind


def test_a_second_re_export_of_a_table_being_exported_is_refused() -> None:
    ops = Ops()
    first = ops.rerun(mode="export", tables=[KEYS[0], KEYS[1]])
    # the same request in the same minute is the same run
    again = ops.rerun(mode="export", tables=[KEYS[1], KEYS[0]])
    assert again.repeated and again.run_id == first.run_id
    assert ops.w.exporter.start_calls == 1
    # another request in the same minute cannot have that minute's run id
    with pytest.raises(ConflictError, match="ask again in a minute"):
        ops.rerun(mode="export", tables=[KEYS[2]])
    # a minute later, any request that shares a table with the export in flight is refused
    ops.w.clock.advance(minutes=1)
    with pytest.raises(ConflictError, match=f"is still exporting {KEYS[1]}"):
        ops.rerun(mode="export", tables=[KEYS[1], KEYS[2]])
    assert ops.rerun(mode="export", tables=[KEYS[2]]).started == 1
    assert ops.w.exporter.start_calls == 2


def test_re_export_dry_run_changes_nothing() -> None:
    ops = Ops()
    result = ops.rerun(mode="export", dry_run=True)
    assert result.dry_run and "would start export rds2bq-prod-" in result.message
    assert ops.w.ledger.runs == {} and ops.w.exporter.start_calls == 0


def test_a_re_export_that_cannot_start_now_is_closed_not_left_for_a_poll() -> None:
    ops = Ops()
    ops.exporter.fail_start = TransientError("RDS throttled")
    with pytest.raises(TransientError, match="RDS throttled"):
        ops.rerun(mode="export", as_of=None)
    run = next(iter(ops.w.ledger.runs.values()))
    assert run.state is RunState.CANCELED and "not started: RDS throttled" in run.failure_cause
    ops.exporter.fail_start = None
    ops.w.service.poll()  # nothing open: nothing started behind the operator's back
    assert ops.w.exporter.tasks == {}
    with pytest.raises(TransientError, match="ask again in a minute"):
        ops.rerun(mode="export")
    ops.w.clock.advance(minutes=1)
    assert ops.rerun(mode="export").started == 3


def test_a_re_export_request_id_is_answered_once() -> None:
    ops = Ops()
    first = ops.rerun(mode="export", request_id="backfill-1120")
    ops.w.clock.advance(hours=2)
    again = ops.rerun(mode="export", request_id="backfill-1120")
    assert again.repeated and again.run_id == first.run_id
    assert ops.w.exporter.start_calls == 1


def test_as_of_date_type() -> None:
    assert RerunRequest.from_body({"as_of": "2026-11-20"}).as_of == date(2026, 11, 20)


def test_as_of_is_a_day_in_the_configured_time_zone_around_local_midnight() -> None:
    # GIVEN 00:00:20 on the 28th in Tokyo (15:00:20 on the 27th, UTC), and snapshots taken just
    # after Tokyo's midnight and just before it
    ops = Ops(RDS2BQ_SOURCE_KIND="cluster-snapshot")
    midnight = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # 2026-11-28 00:00 JST
    ops.exporter.snapshots = [
        ("arn:snap:27-jst", midnight - timedelta(minutes=1), "available"),
        ("arn:snap:28-jst", midnight + timedelta(seconds=10), "available"),
    ]
    # WHEN an operator asks for today, the 28th, which is still tomorrow in UTC
    result = ops.rerun(as_of="2026-11-28", tables=[KEYS[0]])
    # THEN it is not "in the future", and it is the snapshot of Tokyo's 28th
    assert result.source_arn == "arn:snap:28-jst"
    ops.w.clock.advance(minutes=1)
    assert ops.rerun(as_of="2026-11-27", tables=[KEYS[1]]).source_arn == "arn:snap:27-jst"
    with pytest.raises(BadRequestError, match=r"in the future \(Asia/Tokyo: today is 2026-11-28\)"):
        ops.rerun(as_of="2026-11-29", tables=[KEYS[0]])


def test_as_of_in_utc_when_so_configured() -> None:
    ops = Ops(RDS2BQ_SOURCE_KIND="cluster-snapshot", RDS2BQ_TIMEZONE="UTC")
    midnight = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)
    ops.exporter.snapshots = [("arn:snap:26", midnight - timedelta(minutes=1), "available")]
    assert ops.rerun(as_of="2026-11-26", tables=[KEYS[0]]).source_arn == "arn:snap:26"

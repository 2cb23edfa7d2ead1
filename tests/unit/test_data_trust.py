"""Trust the data: the preflight at export COMPLETE (rows, new columns, held tables) and the row
comparison after each load, over in-memory fakes of the ports."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from orchestrator.app.ports import DestinationTable, ExportedTable, RunOutcome
from orchestrator.app.preflight import Preflight
from orchestrator.core.errors import PermanentError, TransientError
from orchestrator.core.events import TableFailed
from orchestrator.core.keys import run_time_of
from orchestrator.core.model import RunState, TableRun, TableState
from orchestrator.core.schema import Column
from orchestrator.present.slack import SlackMessages
from tests.fakes import InMemoryTables, LoopedNotify, RecordingEventBus, RecordingNotifier
from tests.unit.test_notify import dts_message
from tests.unit.test_service import SLOT, World, names

RUN = "202611271500"
NEXT_DAY = "202611281500"
ID, NAME = Column("id", "INT64", "int64"), Column("name", "STRING", "string")


class TrustWorld(World):
    """The service with its preflight, a BigQuery fake, and notify beside it."""

    def __init__(self, n: int) -> None:
        bq = InMemoryTables()
        for key in names(n):
            bq.tables[bq_id(key)] = DestinationTable((ID, NAME), rows=90)
        super().__init__(names(n), bq=bq)
        self.bq = bq
        self.slack = RecordingNotifier()
        self.notify = LoopedNotify(
            self.settings,
            self.ledger,
            self.slack,
            RecordingEventBus(),
            self.clock,
            SlackMessages(self.settings),
            lambda: self.transfers,
            lambda: self.bq,
        )

    def export(self, key: str, rows: int, *columns: Column) -> None:
        self.exporter.exported[export_dir(key)] = ExportedTable(rows, columns or (ID, NAME), 1)

    def to_handoff(self, day: int = 0) -> None:
        """Day ``day``'s run (0: the first, RUN), from its start to its hand-off."""
        slot = SLOT + timedelta(days=day)
        if day:
            self.clock.current = slot + timedelta(seconds=20)
        self.service.start_export(slot)
        task = f"rds2bq-prod-{slot:%Y%m%d%H%M%S}"
        self.complete([t.key for t in self.settings.tables], task=task)
        self.service.poll()
        self.clock.advance(minutes=5)
        self.service.poll()

    def table(self, key: str, run_id: str = RUN) -> TableRun:
        return self.ledger.table_docs[run_id][key]

    def finish(self, key: str, state: str = "SUCCEEDED", run_id: str = RUN) -> str:
        table = self.table(key, run_id)
        message_id = key if run_id == RUN else f"{run_id}/{key}"
        message = dts_message(
            table.dts_config, table.dts_run, state, "", message_id, run_time_of(run_id)
        )
        return self.notify.handle(message).action

    def loaded(self, rows: int, run_id: str = RUN) -> None:
        """Every started table of ``run_id`` loads ``rows`` rows, and notify hears of it."""
        for table in self.ledger.tables(run_id):
            if table.state is TableState.STARTED:
                self.bq.load(bq_id(table.key), rows)
                self.finish(table.key, run_id=run_id)


def export_dir(key: str) -> str:
    db, name = key.split(".")
    return f"{db}/{db}.{name}"


def bq_id(key: str) -> str:
    return key.replace(".", "__")


def test_the_preflight_keeps_the_rows_exported_and_the_rows_before_the_load() -> None:
    w = TrustWorld(2)
    w.export("shop.t0000", 100)
    w.to_handoff()
    table = w.table("shop.t0000")
    assert (table.state, table.export_rows, table.previous_rows) == (TableState.STARTED, 100, 90)
    assert w.bq.describe_calls == 1  # one look at every destination, not one per table


def test_a_new_column_is_added_to_the_destination_before_the_load() -> None:
    w = TrustWorld(2)
    note = Column("note", "STRING", "string")
    w.export("shop.t0001", 100, ID, NAME, note)
    w.to_handoff()
    assert w.bq.added == [("shop__t0001", (note,))]
    table = w.table("shop.t0001")
    assert table.state is TableState.STARTED
    assert table.schema_changes == ("added column note STRING",)
    assert w.transfers.starts_per_config()  # it is loaded like the others


def test_an_incompatible_change_holds_its_table_and_the_others_go_on() -> None:
    # GIVEN an export where shop.t0001's `name` became an integer
    w = TrustWorld(3)
    w.export("shop.t0001", 100, ID, Column("name", "INT64", "int64"))
    # WHEN the export completes and the run is handed off
    w.to_handoff()
    # THEN that table is held, with the difference and the fix, and is never started
    held = w.table("shop.t0001")
    assert held.state is TableState.HELD and not held.dts_run
    assert "column name changed type: STRING -> INT64" in held.reason
    assert f"python -m orchestrator rerun {RUN} --table shop.t0001" in held.error_message
    assert w.bq.tables["shop__t0001"].columns == (ID, NAME)  # the destination is untouched
    # ... the others are started
    assert {w.table(k).state for k in ("shop.t0000", "shop.t0002")} == {TableState.STARTED}
    # ... and the hold was announced at once, as its own failure
    failed = [e for e in w.events.events if isinstance(e, TableFailed)]
    assert [(e.table, e.state) for e in failed] == [("shop.t0001", TableState.HELD)]


def test_a_run_whose_every_table_is_held_fails_and_says_why_per_table() -> None:
    w = TrustWorld(1)
    w.export("shop.t0000", 5, ID)  # `name` is no longer exported
    w.to_handoff()
    assert w.ledger.runs[RUN].state is RunState.FAILED
    assert w.table("shop.t0000").state is TableState.HELD
    held = [e for e in w.events.events if isinstance(e, TableFailed)]
    assert [e.state for e in held] == [TableState.HELD]
    assert "no longer exported" in held[0].error_message


def test_a_held_run_still_closes_partial_once_the_others_load() -> None:
    w = TrustWorld(2)
    w.export("shop.t0001", 100, ID)
    w.to_handoff()
    w.bq.load("shop__t0000", 100)
    assert w.finish("shop.t0000") == "recorded"
    assert w.ledger.runs[RUN].state is RunState.PARTIAL


def test_a_transient_fault_in_the_preflight_leaves_the_tables_for_the_next_poll() -> None:
    w = TrustWorld(2)
    w.service.start_export(SLOT)
    w.complete([t.key for t in w.settings.tables])
    w.service.poll()  # COMPLETE: the tables are recorded, the visibility margin begins
    w.clock.advance(minutes=5)
    w.exporter.fail_footers = TransientError("S3 503")
    report = w.service.poll()
    assert report.runs[0]["action"] == "handoff-incomplete"
    assert {t.state for t in w.ledger.tables(RUN)} == {TableState.PENDING}
    assert w.transfers.starts_per_config() == {}
    w.exporter.fail_footers = None
    assert w.service.poll().runs[0]["action"] == "handed-off"
    assert w.table("shop.t0000").export_rows == 100
    assert set(w.transfers.starts_per_config().values()) == {1}


def test_a_permanent_fault_in_the_preflight_lets_the_tables_load_unchecked() -> None:
    w = TrustWorld(2)
    w.bq.fail = PermanentError("BigQuery: access denied to dataset")
    w.to_handoff()
    table = w.table("shop.t0000")
    assert table.state is TableState.STARTED and table.export_rows is None


def test_a_load_with_the_rows_the_export_wrote_is_recorded_with_them() -> None:
    w = TrustWorld(2)
    w.export("shop.t0000", 100)
    w.to_handoff()
    w.bq.load("shop__t0000", 100)
    assert w.finish("shop.t0000") == "recorded"
    table = w.table("shop.t0000")
    assert (table.state, table.loaded_rows) == (TableState.SUCCEEDED, 100)
    assert w.slack.payloads == []


def test_a_load_with_fewer_rows_than_exported_is_a_mismatch_posted_with_both_numbers() -> None:
    w = TrustWorld(2)
    w.export("shop.t0000", 1_000)
    w.to_handoff()
    w.bq.load("shop__t0000", 990)
    assert w.finish("shop.t0000") == "announced"
    table = w.table("shop.t0000")
    assert (table.state, table.loaded_rows, table.export_rows) == (
        TableState.MISMATCHED,
        990,
        1_000,
    )
    assert "990 rows, the export wrote 1,000" in table.error_message
    assert "990" in json.dumps(w.slack.payloads[0])


def test_the_poll_compares_the_rows_of_a_load_whose_notification_was_lost() -> None:
    w = TrustWorld(2)
    w.export("shop.t0000", 50)
    w.to_handoff()
    table = w.table("shop.t0000")
    w.transfers.outcomes[table.dts_run] = RunOutcome("SUCCEEDED")
    w.bq.load("shop__t0000", 49)
    failed: list[TableRun] = []
    assert w.runs.settle(RUN, table, w.clock.now(), failed.append)
    assert [t.state for t in failed] == [TableState.MISMATCHED]


def test_rows_that_cannot_be_counted_leave_the_load_succeeded() -> None:
    w = TrustWorld(1)
    w.export("shop.t0000", 10)
    w.to_handoff()
    w.bq.fail = PermanentError("denied")
    assert w.finish("shop.t0000") == "recorded"
    assert w.table("shop.t0000").state is TableState.SUCCEEDED


def test_an_unknown_export_count_never_makes_a_mismatch() -> None:
    w = TrustWorld(1)
    w.bq.fail = PermanentError("denied")  # the preflight could not look
    w.to_handoff()
    w.bq.fail = None
    w.bq.load("shop__t0000", 7)
    assert w.finish("shop.t0000") == "recorded"
    assert w.table("shop.t0000").loaded_rows == 7


def test_rerun_failed_leaves_a_held_table_to_be_named() -> None:
    from orchestrator.app.rerun_checks import transfer_keys
    from orchestrator.app.rerun_request import Mode, RerunRequest

    w = TrustWorld(3)
    w.export("shop.t0001", 100, ID)  # held: `name` is no longer exported
    w.to_handoff()
    w.bq.load("shop__t0000", 100)
    w.finish("shop.t0000")
    w.finish("shop.t0002", "FAILED")
    run, docs = w.ledger.runs[RUN], {t.key: t for t in w.ledger.tables(RUN)}
    failed = RerunRequest(Mode.TRANSFER, run_id=RUN, failed=True)
    assert transfer_keys(w.settings, failed, run, docs) == ["shop.t0002"]
    named = RerunRequest(Mode.TRANSFER, run_id=RUN, tables=("shop.t0001",))
    assert transfer_keys(w.settings, named, run, docs) == ["shop.t0001"]


class FlakyFooters:
    """An exporter whose footer reads fail (transiently) for the chunks that contain ``key``."""

    def __init__(self, inner: Any, key: str) -> None:
        self.inner, self.key, self.failing = inner, key, True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def read_exported_tables(self, task_id: str, dirs: Any) -> Any:
        if self.failing and export_dir(self.key) in dirs:
            raise TransientError("S3 503")
        return self.inner.read_exported_tables(task_id, dirs)


def test_a_large_hand_off_is_checked_chunk_by_chunk_and_each_table_started_once() -> None:
    # GIVEN 130 tables (three chunks): one gains a column, one in the last chunk is held, and
    # the chunk holding shop.t0100 cannot be read at first
    w = TrustWorld(130)
    w.export("shop.t0003", 100, ID, NAME, Column("note", "STRING", "string"))
    w.export("shop.t0120", 100, ID)
    flaky = FlakyFooters(w.exporter, "shop.t0100")
    w.service.preflight = Preflight(lambda: flaky, lambda: w.bq, w.ledger)
    # WHEN the export completes and the hand-off runs
    w.to_handoff()
    # THEN the chunks before the fault are started, the rest wait for the next poll
    started = {k for k, n in w.transfers.starts_per_config().items() if n}
    assert 0 < len(started) < 129
    assert w.table("shop.t0100").state is TableState.PENDING
    flaky.failing = False
    w.clock.advance(minutes=1)
    w.service.poll()
    # ... which starts every one but the held table, each once, with its rows counted
    assert sorted(w.transfers.starts_per_config().values()) == [1] * 129
    assert w.table("shop.t0120").state is TableState.HELD and not w.table("shop.t0120").dts_run
    assert w.table("shop.t0003").schema_changes == ("added column note STRING",)
    assert all(t.export_rows is not None for t in w.ledger.tables(RUN))


# --------------------------------------------------------------------------- the next day


def a_day_loaded(n: int, rows: int = 100) -> TrustWorld:
    """``n`` tables exported with ``rows`` rows each, all loaded with them on the first day; the
    describes of that day forgotten."""
    w = TrustWorld(n)
    for key in names(n):
        w.export(key, rows)
    w.to_handoff()
    w.loaded(rows)
    w.bq.described.clear()
    return w


def test_an_ordinary_day_describes_no_destination_and_counts_from_the_last_load() -> None:
    # GIVEN a day whose every load succeeded with the rows its export wrote
    w = a_day_loaded(3)
    assert {t.state for t in w.ledger.tables(RUN)} == {TableState.SUCCEEDED}
    built: list[InMemoryTables] = []
    assert w.service.preflight is not None
    w.service.preflight.destinations = lambda: built.append(w.bq) or w.bq
    # WHEN the next day exports the same columns, one table with more rows
    w.export("shop.t0001", 130)
    w.to_handoff(day=1)
    # THEN no destination is described (the poll needs no BigQuery client): the rows before
    # each load are the last load's
    assert w.bq.described == [] and built == []
    today = {t.key: t for t in w.ledger.tables(NEXT_DAY)}
    assert {t.state for t in today.values()} == {TableState.STARTED}
    assert [(today[k].export_rows, today[k].previous_rows) for k in names(3)] == [
        (100, 100),
        (130, 100),
        (100, 100),
    ]
    assert today["shop.t0000"].export_schema == w.table("shop.t0000").export_schema != ""
    # ... and the digest's change against the previous day follows from them
    w.loaded(130, NEXT_DAY)
    assert w.table("shop.t0001", NEXT_DAY).change == 30


def test_a_table_whose_columns_changed_overnight_is_described_and_planned() -> None:
    w = a_day_loaded(3)
    # the next day, shop.t0001 gains a column and shop.t0002's `name` became an integer
    note = Column("note", "STRING", "string")
    w.export("shop.t0001", 100, ID, NAME, note)
    w.export("shop.t0002", 100, ID, Column("name", "INT64", "int64"))
    w.to_handoff(day=1)
    # only those two destinations are looked at, and each is handled as on any day
    assert sorted(w.bq.described) == ["shop__t0001", "shop__t0002"]
    assert w.bq.added == [("shop__t0001", (note,))]
    assert w.table("shop.t0001", NEXT_DAY).schema_changes == ("added column note STRING",)
    held = w.table("shop.t0002", NEXT_DAY)
    assert held.state is TableState.HELD and "STRING -> INT64" in held.reason
    assert w.table("shop.t0000", NEXT_DAY).state is TableState.STARTED


def test_a_table_the_previous_run_did_not_load_is_described() -> None:
    # GIVEN a day where one load failed, one loaded fewer rows than exported, one succeeded
    w = TrustWorld(3)
    for key in names(3):
        w.export(key, 100)
    w.to_handoff()
    w.finish("shop.t0000", "FAILED")
    w.bq.load("shop__t0001", 99)
    assert w.finish("shop.t0001") == "announced"  # MISMATCHED
    w.bq.load("shop__t0002", 100)
    w.finish("shop.t0002")
    w.bq.described.clear()
    # WHEN the next day hands off
    w.to_handoff(day=1)
    # THEN the two the previous run did not load as exported are described
    assert sorted(w.bq.described) == ["shop__t0000", "shop__t0001"]
    assert w.table("shop.t0001", NEXT_DAY).previous_rows == 99  # the destination's own count


def test_a_fault_reading_the_previous_run_describes_every_destination() -> None:
    w = a_day_loaded(2)

    def unavailable(run_id: str, keys: Any) -> Any:
        raise TransientError("Firestore 503")

    w.ledger.get_tables = unavailable  # type: ignore[method-assign]
    w.to_handoff(day=1)
    assert sorted(w.bq.described) == ["shop__t0000", "shop__t0001"]
    assert {t.state for t in w.ledger.tables(NEXT_DAY)} == {TableState.STARTED}
    assert w.table("shop.t0000", NEXT_DAY).previous_rows == 100


# --------------------------------------------------------------------------- configs


def test_a_table_without_a_transfer_config_is_refused_before_its_schema_is_checked() -> None:
    # GIVEN three tables, two without a config: one of them also changed its columns
    w = TrustWorld(3)
    w.export("shop.t0001", 100, ID)  # `name` is no longer exported: a check would hold it
    del w.transfers.configs["shop.t0001"], w.transfers.configs["shop.t0002"]
    # WHEN the run is handed off
    w.to_handoff()
    # THEN both are refused for want of a config, and the third is started
    for key in ("shop.t0001", "shop.t0002"):
        table = w.table(key)
        assert table.state is TableState.FAILED and not table.dts_run
        assert "no transfer config for " + key in table.reason
    assert w.table("shop.t0000").state is TableState.STARTED
    assert list(w.transfers.starts_per_config().values()) == [1]


def test_a_fault_listing_the_configs_starts_nothing_and_the_poll_retries() -> None:
    w = TrustWorld(2)
    w.transfers.configs_fault = TransientError("DTS 503")
    w.service.start_export(SLOT)
    w.complete([t.key for t in w.settings.tables])
    w.service.poll()
    w.clock.advance(minutes=5)
    assert w.service.poll().runs[0]["action"] == "retry-later"
    assert w.transfers.starts_per_config() == {}
    assert {t.state for t in w.ledger.tables(RUN)} == {TableState.PENDING}
    # the lease was given back: the next poll tries again, not waiting for it to run out
    w.clock.advance(minutes=5)
    assert w.service.poll().runs[0]["action"] == "retry-later"
    # once DTS answers, the next poll hands off, each table once
    w.transfers.configs_fault = None
    w.clock.advance(minutes=5)
    assert w.service.poll().runs[0]["action"] == "handed-off"
    assert sorted(w.transfers.starts_per_config().values()) == [1, 1]

"""The run ledger against the official Firestore emulator."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from orchestrator.adapters.ledger import FirestoreLedger
from orchestrator.core import machine
from orchestrator.core.errors import NotFoundError, PermanentError
from orchestrator.core.model import RunState, TableRun, TableState, Transition
from tests.stack import firestore_client

pytestmark = pytest.mark.integration
RUN_TIME = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


@pytest.fixture
def ledger(firestore_emulator: Any) -> FirestoreLedger:
    client = firestore_client(firestore_emulator.host)
    return FirestoreLedger(client, f"runs_{uuid.uuid4().hex[:8]}")


def new_run(keys: tuple[str, ...] = ("shop.orders",), minute: int = 0) -> Any:
    return machine.new_run("prod", RUN_TIME + timedelta(minutes=minute), "daily", keys, RUN_TIME)


def test_create_is_idempotent_and_round_trips_every_field(ledger: FirestoreLedger) -> None:
    run = new_run().with_(snapshot_time=RUN_TIME - timedelta(hours=6), percent=3)
    _, created = ledger.create_run(run)
    again, created_again = ledger.create_run(run.with_(percent=99))
    assert created and not created_again
    assert again == run == ledger.get_run(run.run_id)
    assert ledger.get_run("209901010000") is None


def test_concurrent_creates_make_one_run(ledger: FirestoreLedger) -> None:
    run = new_run()
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: ledger.create_run(run), range(10)))
    assert sum(1 for _, created in results if created) == 1


def test_concurrent_transitions_serialize(ledger: FirestoreLedger) -> None:
    run = new_run()
    ledger.create_run(run)

    def bump(current: Any) -> Transition:
        return Transition(current.with_(percent=current.percent + 1))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: ledger.transition(run.run_id, bump), range(16)))
    stored = ledger.get_run(run.run_id)
    assert stored is not None and stored.percent == 16


def test_only_one_concurrent_claim_wins(ledger: FirestoreLedger) -> None:
    run = new_run().with_(state=RunState.EXPORTED, export_completed_at=RUN_TIME)
    ledger.create_run(run)
    at = RUN_TIME + timedelta(minutes=10)
    with ThreadPoolExecutor(10) as pool:
        claims = list(
            pool.map(
                lambda i: ledger.transition(
                    run.run_id, lambda r: machine.claim_handoff(r, at, f"owner-{i}", 600, 5)
                ),
                range(10),
            )
        )
    winners = [c.run.handoff_owner for c in claims if c.run is not None]
    assert len(winners) == 1
    stored = ledger.get_run(run.run_id)
    assert stored is not None and stored.handoff_owner == winners[0]


def test_open_runs_and_recent_runs(ledger: FirestoreLedger) -> None:
    for minute in range(3):
        ledger.create_run(new_run(minute=minute))
    ledger.transition("202611271501", lambda r: Transition(r.with_(state=RunState.SUCCEEDED)))
    assert [r.run_id for r in ledger.open_runs()] == ["202611271500", "202611271502"]
    assert [r.run_id for r in ledger.recent_runs(2)] == ["202611271502", "202611271501"]


def test_two_thousand_tables(ledger: FirestoreLedger) -> None:
    keys = tuple(f"shop.t{i:04d}" for i in range(2000))
    run = new_run(keys)
    ledger.create_run(run)
    tables = [TableRun(k) for k in keys]
    ledger.add_tables(run.run_id, tables)
    # a second add (a concurrent poll) leaves existing documents alone
    ledger.put_tables(run.run_id, [tables[0].with_(state=TableState.STARTED, dts_run="r")])
    ledger.add_tables(run.run_id, tables)
    stored = ledger.tables(run.run_id)
    assert len(stored) == 2000
    assert stored[0].state is TableState.STARTED and stored[1].state is TableState.PENDING


def test_update_table_is_transactional(ledger: FirestoreLedger) -> None:
    run = new_run()
    ledger.create_run(run)
    ledger.add_tables(run.run_id, [TableRun("shop.orders", TableState.STARTED, dts_run="r1")])
    done = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)

    def finish(t: TableRun) -> TableRun | None:
        return machine.table_finished(t, "r1", TableState.SUCCEEDED, 0, "", None, done)

    with ThreadPoolExecutor(5) as pool:
        results = list(
            pool.map(lambda _: ledger.update_table(run.run_id, "shop.orders", finish), range(5))
        )
    assert sum(1 for r in results if r is not None) == 1
    assert ledger.update_table(run.run_id, "shop.nope", finish) is None


def test_a_claim_is_taken_over_only_after_its_lease(ledger: FirestoreLedger) -> None:
    now = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
    assert ledger.claim_once("k", now)
    assert not ledger.claim_once("k", now + timedelta(minutes=5))  # a live handler has it
    assert ledger.claim_once("k", now + timedelta(minutes=11))  # its handler died
    ledger.mark_done("k")
    assert not ledger.claim_once("k", now + timedelta(days=1))
    ledger.forget("k")
    assert ledger.claim_once("k", now + timedelta(days=1))


def test_count_unfinished(ledger: FirestoreLedger) -> None:
    run = new_run(("a.x", "a.y", "a.z"))
    ledger.create_run(run)
    ledger.add_tables(
        run.run_id,
        [
            TableRun("a.x", TableState.STARTED),
            TableRun("a.y", TableState.SUCCEEDED),
            TableRun("a.z", TableState.PENDING),
        ],
    )
    assert ledger.count_unfinished(run.run_id) == 2


def test_get_table_find_table_and_remember(ledger: FirestoreLedger) -> None:
    run = new_run(("a.x", "a.y"))
    ledger.create_run(run)
    ledger.add_tables(run.run_id, [TableRun("a.x", dts_config="c/x"), TableRun("a.y")])
    assert ledger.get_table(run.run_id, "a.y") == TableRun("a.y")
    assert ledger.get_table(run.run_id, "a.none") is None
    found = ledger.find_table(run.run_id, "c/x")
    assert found is not None and found.key == "a.x"
    assert ledger.find_table(run.run_id, "c/none") is None
    assert ledger.remember("rerun-1", "v1", RUN_TIME) == ("v1", True)
    assert ledger.remember("rerun-1", "v2", RUN_TIME) == ("v1", False)


def test_get_tables_reads_the_named_tables_in_one_batch(ledger: FirestoreLedger) -> None:
    keys = [f"a.t{i:04d}" for i in range(150)]
    run = new_run(tuple(keys))
    ledger.create_run(run)
    loaded = TableRun("a.t0007", TableState.SUCCEEDED, loaded_rows=12, export_schema="f00d")
    ledger.add_tables(run.run_id, [loaded, *(TableRun(k) for k in keys if k != "a.t0007")])
    wanted = [*keys[:120], "a.none"]
    got = ledger.get_tables(run.run_id, wanted)
    assert sorted(got) == keys[:120]  # the one that does not exist is left out
    assert got["a.t0007"] == loaded
    assert ledger.get_tables(run.run_id, []) == {}
    assert ledger.get_tables("209901010000", ["a.t0000"]) == {}


def test_missing_documents_are_errors_where_they_were(ledger: FirestoreLedger) -> None:
    with pytest.raises(NotFoundError):
        ledger.transition("209901010000", lambda r: Transition(r))
    with pytest.raises(PermanentError):
        ledger.mark_done("never-claimed")
    ledger.forget("never-claimed")  # deleting what is not there is fine


def test_times_keep_microseconds_and_come_back_in_utc(ledger: FirestoreLedger) -> None:
    tokyo = timezone(timedelta(hours=9))
    at = datetime(2026, 11, 28, 0, 0, 1, 123456, tzinfo=tokyo)
    run = new_run().with_(export_started_at=at)
    ledger.create_run(run)
    stored = ledger.get_run(run.run_id)
    assert stored is not None and stored.export_started_at == at
    assert stored.export_started_at.tzinfo is UTC


def test_an_update_after_find_table_writes_on_what_it_read_and_rereads_if_stale(
    firestore_emulator: Any,
) -> None:
    # GIVEN a table, and two ledgers (two instances of notify) on the same collection
    client = firestore_client(firestore_emulator.host)
    collection = f"runs_{uuid.uuid4().hex[:8]}"
    ours, other = FirestoreLedger(client, collection), FirestoreLedger(client, collection)
    run = new_run()
    ours.create_run(run)
    ours.add_tables(run.run_id, [TableRun("shop.orders", TableState.STARTED, dts_config="c1")])
    reads: list[str] = []
    api = client._firestore_api  # the SDK's generated client, built once per Client
    real_get = api.batch_get_documents

    def counting_get(*args: Any, **kwargs: Any) -> Any:
        reads.append("get")  # each call is one BatchGetDocuments RPC
        return real_get(*args, **kwargs)

    api.batch_get_documents = counting_get
    # WHEN one finds the table, and updates it with nothing in between
    found = ours.find_table(run.run_id, "c1")
    assert found is not None
    ours.update_table(run.run_id, "shop.orders", lambda t: t.with_(attempts=t.attempts + 1))
    # THEN the write is conditioned on the snapshot found: no second read
    assert reads == []
    # WHEN another instance writes the table between a find and an update
    ours.find_table(run.run_id, "c1")
    other.update_table(run.run_id, "shop.orders", lambda t: t.with_(reason="other"))
    reads.clear()
    updated = ours.update_table(
        run.run_id, "shop.orders", lambda t: t.with_(attempts=t.attempts + 1)
    )
    # THEN the stale snapshot fails the precondition, the table is read again, nothing is lost
    assert reads  # the re-read
    assert updated is not None and (updated.attempts, updated.reason) == (2, "other")

"""Empty loads: DTS ends a run that matched no file SUCCEEDED; its transfer logs say it loaded
nothing, and we record the table EMPTY, post it at once (once), and count it as not loaded."""

from __future__ import annotations

import json

from orchestrator.app.ports import RunOutcome
from orchestrator.app.rerun_checks import transfer_keys
from orchestrator.app.rerun_request import Mode, RerunRequest
from orchestrator.app.status import counts
from orchestrator.core.errors import PermanentError, TransientError
from orchestrator.core.model import RunState, TableRun, TableState
from orchestrator.present.slack_blocks import validate_payload
from tests.unit.test_notify import Notify

RUN = "202611271500"
NO_FILES = "No new files found matching s3://b/p/shop/shop.t0001/*.parquet"


def empty(n: Notify, key: str, line: str = NO_FILES) -> None:
    n.world.transfers.empty[n.tables[key].dts_run] = line


def test_a_succeeded_run_that_loaded_nothing_is_empty_and_posted_at_once_with_its_path() -> None:
    # GIVEN a run of two tables, one of whose DTS runs matched no file
    n = Notify(2)
    empty(n, "shop.t0001")
    # WHEN DTS notifies SUCCEEDED for it
    outcome = n.finish("shop.t0001", "SUCCEEDED")
    # THEN it is recorded EMPTY with DTS's log line, and posted at once
    assert outcome.action == "announced"
    table = n.world.ledger.table_docs[RUN]["shop.t0001"]
    assert (table.state, table.error_message) == (TableState.EMPTY, NO_FILES)
    assert len(n.slack.payloads) == 1
    post = n.slack.payloads[0]
    validate_payload(post)
    assert "shop.t0001: load empty" in json.dumps(post)
    assert "s3://b/p/shop/shop.t0001/*.parquet" in json.dumps(post)
    assert "EMPTY" in post["text"]


def test_an_empty_load_is_posted_once_whatever_the_deliveries() -> None:
    n = Notify(2)
    empty(n, "shop.t0001")
    n.finish("shop.t0001", "SUCCEEDED", mid="a")
    n.finish("shop.t0001", "SUCCEEDED", mid="a")  # redelivered
    n.finish("shop.t0001", "SUCCEEDED", mid="b")  # re-published
    assert len(n.slack.payloads) == 1
    assert n.world.transfers.logs_read == [n.tables["shop.t0001"].dts_run]  # one read


def test_logs_are_read_only_after_succeeded() -> None:
    n = Notify(2)
    n.finish("shop.t0000", "FAILED", "boom")
    n.finish("shop.t0001", "CANCELLED")
    assert n.world.transfers.logs_read == []


def test_a_loaded_table_stays_succeeded_and_silent() -> None:
    n = Notify(1)
    assert n.finish("shop.t0000", "SUCCEEDED").action == "recorded"
    assert n.world.ledger.table_docs[RUN]["shop.t0000"].state is TableState.SUCCEEDED
    assert n.slack.payloads == []


def test_a_transient_log_fault_is_retried_by_the_platform_and_then_posted_once() -> None:
    n = Notify(1)
    empty(n, "shop.t0000")
    n.world.transfers.logs_faults.append(TransientError("UNAVAILABLE"))
    try:
        n.finish("shop.t0000", "SUCCEEDED")
        raise AssertionError("a transient fault must raise, for the platform's retry")
    except TransientError:
        pass
    assert n.world.ledger.table_docs[RUN]["shop.t0000"].state is TableState.STARTED
    n.finish("shop.t0000", "SUCCEEDED")  # the retry
    assert n.world.ledger.table_docs[RUN]["shop.t0000"].state is TableState.EMPTY
    assert len([p for p in n.slack.payloads if "EMPTY" in p["text"]]) == 1


def test_logs_refused_for_good_leave_the_run_succeeded() -> None:
    n = Notify(1)
    empty(n, "shop.t0000")
    n.world.transfers.logs_faults.append(PermanentError("PERMISSION_DENIED"))
    assert n.finish("shop.t0000", "SUCCEEDED").action == "recorded"
    assert n.world.ledger.table_docs[RUN]["shop.t0000"].state is TableState.SUCCEEDED


def test_an_empty_table_is_not_loaded_in_the_run_state_counts_and_summary() -> None:
    n = Notify(3)
    empty(n, "shop.t0001", "Job x (table shop__t0001) completed. Number of records: 0")
    for key in sorted(n.tables):
        n.finish(key, "SUCCEEDED")
    run = n.world.ledger.runs[RUN]
    assert run.state is RunState.PARTIAL
    tables = n.world.ledger.tables(RUN)
    assert counts(run, tables)["failed"] == 1 and counts(run, tables)["loaded"] == 2
    closed = n.published.events[-1]
    assert (closed.loaded, closed.failed) == (2, 1)  # type: ignore[attr-defined]
    n.deliver_published()
    summary = json.dumps(n.slack.payloads[-1])
    assert "shop.t0001" in summary and "Number of records: 0" in summary


def test_a_run_whose_every_table_is_empty_fails() -> None:
    n = Notify(2)
    for key in n.tables:
        empty(n, key)
        n.finish(key, "SUCCEEDED")
    assert n.world.ledger.runs[RUN].state is RunState.FAILED


def test_rerun_failed_includes_empty_tables() -> None:
    n = Notify(3)
    empty(n, "shop.t0001")
    n.finish("shop.t0000", "SUCCEEDED")
    n.finish("shop.t0001", "SUCCEEDED")
    n.finish("shop.t0002", "FAILED", "boom")
    run = n.world.ledger.runs[RUN]
    docs = {t.key: t for t in n.world.ledger.tables(RUN)}
    request = RerunRequest(Mode.TRANSFER, run_id=RUN, failed=True)
    assert transfer_keys(n.world.settings, request, run, docs) == ["shop.t0001", "shop.t0002"]


def test_the_poll_records_an_empty_load_whose_notification_was_lost() -> None:
    # GIVEN a table whose DTS run SUCCEEDED with nothing matched, and no notification
    n = Notify(2)
    w = n.world
    lost = n.tables["shop.t0001"]
    w.transfers.outcomes[lost.dts_run] = RunOutcome("SUCCEEDED")
    empty(n, "shop.t0001")
    failed: list[TableRun] = []
    # WHEN the poll settles it
    done = w.runs.settle(RUN, lost, w.clock.now(), failed.append)
    # THEN it is EMPTY, handed to on_failed (the post), and its late notification changes nothing
    assert done and [t.state for t in failed] == [TableState.EMPTY]
    assert w.ledger.table_docs[RUN]["shop.t0001"].state is TableState.EMPTY
    w.clock.advance(minutes=1)
    assert n.finish("shop.t0001", "SUCCEEDED").action == "duplicate"
    assert n.slack.payloads == []

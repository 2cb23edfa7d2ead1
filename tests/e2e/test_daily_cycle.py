"""The whole daily cycle as assertions, through the functions served by functions-framework.

Cloud Scheduler's calls go over HTTP to the function processes; DTS's notifications go through
the Pub/Sub emulator's push subscription to ``notify``; Slack posts land in the stand-in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from devstack.aws import realistic_layout
from devstack.day import HELD_TABLE, NEW_COLUMN, NEW_COLUMN_TABLE, TODAY_ROWS, YESTERDAY_ROWS, today
from devstack.stack import DATASET, PROJECT, LocalStack, call, start_stack, wait_for
from orchestrator.core.keys import export_task_id
from orchestrator.core.model import RunState, TableState
from orchestrator.present.slack_blocks import validate_payload
from tests.e2e.conftest import isolated_env

pytestmark = pytest.mark.e2e
TABLES = [
    "shop.orders",
    "shop.order_items",
    "shop.customers",
    "shop.payments",
    "shop.audit_log",
    "shop.products",
    "shop.reviews",
]
FAILING = "shop.payments"
SKIPPED = "shop.audit_log"
EMPTY = "shop.products"  # COMPLETE in the export with no data file: DTS matches nothing
GAINED = NEW_COLUMN_TABLE  # the source gained a column: added to BigQuery before the load
HELD = HELD_TABLE  # a column changed type at the source: the table is held, not loaded
DTS_SECRET = "local-dts-reader-secret-key-0000000000"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with start_stack(TABLES, extra_env=isolated_env()) as running:
        running.apply_env()
        yield running


def schedule(slot: datetime) -> dict[str, str]:
    return {"X-CloudScheduler-ScheduleTime": slot.strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_a_whole_day(stack: LocalStack) -> None:
    book = stack.ledger()
    slot = datetime.now(UTC).replace(second=0, microsecond=0)
    stack.dts.set_outcome(FAILING.replace(".", "__"), "FAILED", "Parquet type mismatch", code=3)

    # GIVEN the scheduler's call, delivered three times (retries), two of them concurrently
    statuses = [call(stack, "start_export", headers=schedule(slot))[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    run_id = slot.strftime("%Y%m%d%H%M")
    task_id = export_task_id(stack.env["RDS2BQ_ENV"], slot)
    assert [t for t in stack.control.tasks() if t.startswith(task_id[:-2])] == [task_id]

    # WHEN the export progresses and completes with a realistic layout, one skipped table and one
    # exported without a data file
    stack.control.progress(task_id, 50, gb=2)
    _, report = call(stack, "poll")
    assert report["runs"][0]["state"] == "EXPORTING"
    files, skipped = realistic_layout(TABLES, {SKIPPED: "column name contains ';'"}, [EMPTY])
    stack.control.complete(task_id, files, skipped, data=today(TABLES))
    _, report = call(stack, "poll")
    assert [r["action"] for r in report["runs"]] == ["export-complete", "handed-off"]

    # THEN each exported table's transfer run reads exactly its own files, every batch folder
    stack.dts.wait_idle(30)
    runs = stack.dts.runs()
    mine = [r for r in runs if f"/{task_id}/" in r.data_path]
    assert len(mine) == len(TABLES) - 2  # not the skipped one, not the held one
    assert not any(f"/shop.{HELD.split('.')[1]}/" in r.data_path for r in mine)
    for record in mine:
        table = record.data_path.split(f"/{task_id}/")[1].rsplit("/", 1)[0]  # shop/shop.orders
        expected = sorted(
            f"rds2bq/{task_id}/{k}"
            for k in files[table.replace("/", ".")]
            if k.endswith(".parquet")
        )
        assert sorted(record.matched_keys) == expected, table

    # AND notify closes the run PARTIAL with one failure post, one empty-load post naming the
    # data path that matched nothing, and one summary
    wait_for(lambda: not book.get_run(run_id).is_open, 60, "the run to close")
    run = book.get_run(run_id)
    assert run.state is RunState.PARTIAL
    tables = {t.key: t for t in book.tables(run_id)}
    assert tables[FAILING].state is TableState.FAILED
    assert tables[FAILING].error_message == "Parquet type mismatch"
    assert tables[SKIPPED].state is TableState.SKIPPED_BY_EXPORT
    (empty_run,) = [r for r in mine if "/shop.products/" in r.data_path]
    assert empty_run.matched_keys == []
    assert tables[EMPTY].state is TableState.EMPTY
    assert tables[EMPTY].error_message == f"No new files found matching {empty_run.data_path}"
    assert {k for k, t in tables.items() if t.state is TableState.SUCCEEDED} == (
        set(TABLES) - {FAILING, SKIPPED, EMPTY, HELD}
    )
    # ... the new column was added before the load, and every load has the rows exported
    gained = stack.bigquery.table(PROJECT, DATASET, GAINED.replace(".", "__"))
    assert NEW_COLUMN[0] in [f["name"] for f in gained["schema"]["fields"]]
    assert tables[GAINED].schema_changes == (f"added column {NEW_COLUMN[0]} STRING",)
    for key, table in tables.items():
        if table.state is TableState.SUCCEEDED:
            assert (table.export_rows, table.loaded_rows, table.previous_rows) == (
                TODAY_ROWS,
                TODAY_ROWS,
                YESTERDAY_ROWS,
            ), key
    # ... the held table is untouched in BigQuery, and says why and how to accept it
    assert tables[HELD].state is TableState.HELD and not tables[HELD].dts_run
    assert "rating changed type: INT64 -> STRING" in tables[HELD].reason
    held_fields = stack.bigquery.table(PROJECT, DATASET, HELD.replace(".", "__"))["schema"]
    assert {"name": "rating", "type": "INTEGER", "mode": "NULLABLE"} in held_fields["fields"]
    wait_for(lambda: any("PARTIAL" in p["text"] for p in stack.slack.payloads), 30, "summary")
    time.sleep(1.0)
    posts = stack.slack.payloads
    texts = [p["text"] for p in posts]
    assert sum(1 for t in texts if FAILING in t and "fail" in t.lower()) == 1
    assert sum(1 for t in texts if "PARTIAL" in t) == 1
    (empty_post,) = [p for p in posts if f"{EMPTY} EMPTY" in p["text"]]
    (held_post,) = [p for p in posts if HELD in p["text"] and "held" in p["text"].lower()]
    assert f"rerun {run_id} --table {HELD}" in json.dumps(held_post)
    assert empty_run.data_path in json.dumps(empty_post)
    for payload in posts:
        assert validate_payload(payload) == []

    # AND replaying every DTS notification posts nothing new
    count = len(posts)
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    for note in stack.dts.notifications:
        publisher.publish(note.topic, json.dumps(note.payload).encode(), **note.attributes).result(
            timeout=10
        )
    time.sleep(3.0)
    assert len(stack.slack.payloads) == count

    # AND no secret reached a function log, a Slack post or the ledger
    logs = "\n".join(s.log_path.read_text() for s in stack.functions.values() if s.log_path)
    documents = json.dumps([str(run)] + [str(t) for t in tables.values()])
    for text in (logs, json.dumps(posts), documents):
        assert DTS_SECRET not in text
        assert stack.slack.url not in text
        assert "AKIALOCALDTSREADER01" not in text

"""notify behind a real push subscription: 50 tables, 3 failures, replays, malformed messages."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from devstack.aws import realistic_layout
from devstack.stack import LocalStack, call, start_stack, wait_for
from orchestrator.present.slack_blocks import validate_payload
from tests.e2e.conftest import isolated_env

pytestmark = pytest.mark.e2e
TABLES = [f"shop.t{i:02d}" for i in range(50)]
FAILING = ["shop.t07", "shop.t21", "shop.t42"]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with start_stack(
        TABLES, functions=("start_export", "poll", "notify"), extra_env=isolated_env()
    ) as running:
        running.apply_env()
        yield running


def publisher() -> object:
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient()


def test_fifty_tables_three_failures_three_posts_one_summary_and_replays_post_nothing(
    stack: LocalStack,
) -> None:
    for key in FAILING:
        stack.dts.set_outcome(key.replace(".", "__"), "FAILED", f"{key} failed to load", code=3)
    slot = datetime.now(UTC).replace(second=0, microsecond=0)
    call(stack, "start_export", {"slot": slot.isoformat()})
    task = f"rds2bq-{stack.env['RDS2BQ_ENV']}-{slot:%Y%m%d%H%M%S}"
    files, skipped = realistic_layout(TABLES)
    stack.control.complete(task, files, skipped)
    call(stack, "poll")
    wait_for(lambda: any("PARTIAL" in p["text"] for p in stack.slack.payloads), 90, "summary")
    time.sleep(2.0)
    texts = [p["text"] for p in stack.slack.payloads]
    failures = [t for t in texts if any(k in t for k in FAILING) and "PARTIAL" not in t]
    assert len(failures) == 3, texts
    assert sum(1 for t in texts if "PARTIAL" in t) == 1
    assert all(validate_payload(p) == [] for p in stack.slack.payloads)

    before = len(stack.slack.payloads)
    client = publisher()
    for note in stack.dts.notifications:
        client.publish(
            note.topic,
            json.dumps(note.payload).encode(),  # type: ignore[attr-defined]
            **note.attributes,
        ).result(timeout=10)
    time.sleep(4.0)
    assert len(stack.slack.payloads) == before


@pytest.mark.parametrize(
    ("data", "attributes"),
    [
        (b"not json at all", {"eventType": "TRANSFER_RUN_FINISHED"}),
        (
            b'{"name": "projects/p/locations/l/transferConfigs/c/runs/r"}',
            {"eventType": "TRANSFER_RUN_FINISHED"},
        ),
        (
            b'{"runId": "202611271500", "at": "2026-11-27T15:00:00Z", "data": {}}',
            {"rds2bqEvent": "NO_SUCH_KIND"},
        ),
        (b"", {}),
        (b"x" * 5_000_000, {"eventType": "TRANSFER_RUN_FINISHED"}),
    ],
)
def test_malformed_messages_are_acknowledged_once_without_a_post(
    stack: LocalStack, data: bytes, attributes: dict[str, str]
) -> None:
    log = stack.functions["notify"].log_path
    assert log is not None
    before_posts = len(stack.slack.payloads)
    before_lines = log.read_text().count("dropped")
    payload = data if data else b" "  # Pub/Sub refuses a message with neither data nor attributes
    message_id = (
        publisher()
        .publish(
            stack.topic_path,
            payload,  # type: ignore[attr-defined]
            **attributes,
        )
        .result(timeout=10)
    )
    wait_for(lambda: log.read_text().count("dropped") > before_lines, 30, "the drop log line")
    time.sleep(2.0)  # a crash loop would redeliver within this time
    assert log.read_text().count("dropped") == before_lines + 1, message_id
    assert len(stack.slack.payloads) == before_posts

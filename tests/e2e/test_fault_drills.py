"""Fault drills on the whole stack. Each states what was lost or duplicated: the answer is nothing.

The functions run as functions-framework processes; AWS goes through a throttling proxy in front
of moto; DTS runs finish only when a drill says so, so every drill controls its own timing.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.aws import realistic_layout
from devstack.stack import PROJECT, LocalStack, call, start_stack, wait_for
from orchestrator.core.model import RunState, TableState
from tests.e2e.conftest import isolated_env

pytestmark = pytest.mark.e2e
TABLES = [f"shop.t{i:02d}" for i in range(20)]
LEASE_SECONDS = 30
_minute = iter(range(10, 400, 7))


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    extra = isolated_env(RDS2BQ_LEASE_SECONDS=str(LEASE_SECONDS), RDS2BQ_FANOUT_CONCURRENCY="4")
    with start_stack(TABLES, finish_delay=None, extra_env=extra, aws_proxy=True) as running:
        running.apply_env()
        yield running


@pytest.fixture(scope="module")
def tap(stack: LocalStack) -> Any:
    """A pull subscription that sees every message on the topic (for the redelivery drill)."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    name = f"projects/{PROJECT}/subscriptions/drill-tap"
    subscriber.create_subscription(request={"name": name, "topic": stack.topic_path})
    return subscriber, name


def new_slot() -> datetime:
    """A distinct past minute per drill, so each drill has its own run and export."""
    return datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=next(_minute))


def start_and_export(stack: LocalStack, slot: datetime) -> tuple[str, str]:
    status, body = call(stack, "start_export", {"slot": slot.isoformat()})
    assert status == 200, body
    run_id = body["run"]["run_id"]
    task = body["run"]["export"]["task_id"]
    files, skipped = realistic_layout(TABLES)
    stack.control.complete(task, files, skipped)
    return run_id, task


def starts_per_table(stack: LocalStack, slot: datetime) -> Counter[str]:
    counts: Counter[str] = Counter()
    for record in stack.dts.runs():
        if record.run.run_time == slot:
            counts[record.run.destination_dataset_id + ":" + record.config_name] += 1
    return counts


def assert_each_table_started_once(stack: LocalStack, slot: datetime) -> None:
    counts = starts_per_table(stack, slot)
    lost = len(TABLES) - len(counts)
    duplicated = sum(n - 1 for n in counts.values())
    assert (lost, duplicated) == (0, 0), f"lost {lost} tables, duplicated {duplicated} starts"


def poll_until_handed_off(stack: LocalStack, run_id: str, polls: int = 8) -> list[str]:
    actions = []
    for _ in range(polls):
        status, report = call(stack, "poll")
        assert status == 200, report
        mine = [r["action"] for r in report["runs"] if r["run_id"] == run_id]
        actions += mine
        if "handed-off" in mine:
            return actions
        time.sleep(0.5)
    raise AssertionError(f"not handed off after {polls} polls: {actions}")


def settle(stack: LocalStack) -> None:
    """Finish what earlier drills left loading, and wait until notify has recorded it: a table
    still loading for one run makes another run's hand-off wait for it."""
    stack.dts.clear_outcomes()
    stack.dts.finish_pending()
    book = stack.ledger()
    loading = (TableState.STARTING, TableState.STARTED)

    def quiet() -> bool:
        return not any(t.state in loading for r in book.open_runs() for t in book.tables(r.run_id))

    wait_for(quiet, 60, "earlier drills' loads to be recorded")
    time.sleep(1)


def of_run(payloads: list[dict[str, Any]], run_id: str) -> list[str]:
    return [p["text"] for p in payloads if run_id in json.dumps(p)]


def test_the_same_scheduler_call_three_times_concurrently(stack: LocalStack) -> None:
    slot = new_slot()
    with ThreadPoolExecutor(3) as pool:
        results = list(
            pool.map(
                lambda _: call(
                    stack,
                    "start_export",
                    headers={"X-CloudScheduler-ScheduleTime": slot.strftime("%Y-%m-%dT%H:%M:%SZ")},
                ),
                range(3),
            )
        )
    assert [status for status, _ in results] == [200, 200, 200]
    run_id = slot.strftime("%Y%m%d%H%M")
    tasks = [t for t in stack.control.tasks() if run_id in t]
    assert len(tasks) == 1, f"duplicated: {len(tasks) - 1} export tasks"
    assert len([r for r in stack.ledger().recent_runs(50) if r.run_id == run_id]) == 1


def test_poll_killed_mid_fan_out(stack: LocalStack) -> None:
    settle(stack)
    slot = new_slot()
    run_id, _ = start_and_export(stack, slot)
    stack.dts.faults.latency = 0.5  # 20 tables, 4 at a time: about 2.5 s of fan-out
    try:
        first = threading.Thread(target=lambda: _ignore_errors(call, stack, "poll"))
        first.start()
        book = stack.ledger()
        wait_for(
            lambda: 0 < len(starts_per_table(stack, slot)) < len(TABLES),
            20,
            "the fan-out to be half way",
        )
        stack.restart_function("poll", kill=True)  # SIGKILL: no cleanup, the lease stays held
        first.join(30)
        started_before = len(starts_per_table(stack, slot))
        assert 0 < started_before < len(TABLES)
        _, report = call(stack, "poll")  # the lease is still held by the dead invocation
        assert [r["action"] for r in report["runs"] if r["run_id"] == run_id] == [
            "handoff-held-elsewhere"
        ]
        time.sleep(LEASE_SECONDS + 1)
        poll_until_handed_off(stack, run_id)
    finally:
        stack.dts.faults.latency = 0.0
    assert_each_table_started_once(stack, slot)
    assert {t.state for t in book.tables(run_id)} == {TableState.STARTED}


def test_aws_throttling_at_the_http_layer(stack: LocalStack) -> None:
    settle(stack)
    slot = new_slot()
    stack.aws_proxy.throttle_next(50)  # more than botocore's retries: the call must fail
    status, body = call(stack, "start_export", {"slot": slot.isoformat()})
    assert status == 503 and "Throttling" in json.dumps(body)
    first_burst = stack.aws_proxy.throttled
    assert first_burst >= 4  # botocore retried (standard mode), then we answered 503
    stack.aws_proxy.throttle_next(0)
    run_id, task = start_and_export(stack, slot)  # the scheduler's retry
    stack.aws_proxy.throttle_next(2)  # within botocore's retries: absorbed
    poll_until_handed_off(stack, run_id)
    assert stack.aws_proxy.throttled == first_burst + 2
    assert len([t for t in stack.control.tasks() if t == task]) == 1
    assert_each_table_started_once(stack, slot)


def test_bursts_of_dts_unavailable(stack: LocalStack) -> None:
    settle(stack)
    slot = new_slot()
    run_id, _ = start_and_export(stack, slot)
    stack.dts.faults.fail_next(40, "UNAVAILABLE", "StartManualTransferRuns")
    actions = poll_until_handed_off(stack, run_id, polls=12)
    stack.dts.faults.clear()
    assert_each_table_started_once(stack, slot)
    assert actions[-1] == "handed-off"


def test_a_slack_429_storm(stack: LocalStack) -> None:
    settle(stack)
    slot = new_slot()
    run_id, _ = start_and_export(stack, slot)
    poll_until_handed_off(stack, run_id)
    failing = {"shop.t03", "shop.t11"}
    for key in failing:
        stack.dts.set_outcome(key.replace(".", "__"), "FAILED", f"{key}: drill failure")
    before = len(stack.slack.payloads)
    stack.slack.fail_next(429, 25, retry_after=1)
    stack.dts.finish_pending()
    wait_for(
        lambda: any("PARTIAL" in t for t in of_run(stack.slack.payloads[before:], run_id)),
        120,
        "the summary through the storm",
    )
    time.sleep(3)
    new = of_run(stack.slack.payloads[before:], run_id)
    for key in failing:
        assert sum(1 for t in new if key in t and "PARTIAL" not in t) == 1, (key, new)
    assert sum(1 for t in new if "PARTIAL" in t) == 1, new
    assert stack.slack.statuses.count(429) >= 25
    stack.dts.clear_outcomes()


def test_firestore_restarted_between_polls(stack: LocalStack) -> None:
    settle(stack)
    slot = new_slot()
    status, body = call(stack, "start_export", {"slot": slot.isoformat()})
    assert status == 200
    run_id, task = body["run"]["run_id"], body["run"]["export"]["task_id"]
    call(stack, "poll")
    stack.restart_firestore()
    stack.control.progress(task, 60)
    files, skipped = realistic_layout(TABLES)
    stack.control.complete(task, files, skipped)
    poll_until_handed_off(stack, run_id)
    run = stack.ledger().get_run(run_id)
    assert run is not None and run.state is RunState.TRANSFERRING
    assert_each_table_started_once(stack, slot)


def test_a_pubsub_message_delivered_twice(stack: LocalStack, tap: Any) -> None:
    settle(stack)
    subscriber, subscription = tap
    slot = new_slot()
    run_id, _ = start_and_export(stack, slot)
    poll_until_handed_off(stack, run_id)
    stack.dts.finish_pending()
    wait_for(lambda: not stack.ledger().get_run(run_id).is_open, 60, "the run to close")
    time.sleep(3)
    before = len(stack.slack.payloads)
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    captured = []
    while True:  # drain first: what we republish lands on the tap again
        response = subscriber.pull(
            request={"subscription": subscription, "max_messages": 100}, timeout=10
        )
        if not response.received_messages:
            break
        captured += [received.message for received in response.received_messages]
        subscriber.acknowledge(
            request={
                "subscription": subscription,
                "ack_ids": [m.ack_id for m in response.received_messages],
            }
        )
    for message in captured:
        publisher.publish(stack.topic_path, message.data, **dict(message.attributes)).result(
            timeout=10
        )
    redelivered = len(captured)
    time.sleep(4)
    assert redelivered > len(TABLES)
    assert len(stack.slack.payloads) == before, "duplicated posts"


def _ignore_errors(fn: Any, *args: Any) -> None:
    with contextlib.suppress(Exception):  # the process is killed under it
        fn(*args)

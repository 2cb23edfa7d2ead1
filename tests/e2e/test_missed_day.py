"""A day whose scheduler call never came: the poll says so in Slack once, and only once.

Over the real stack: functions under functions-framework, the Firestore emulator, the Slack
stand-in. The daily schedule is set so that today's slot was an hour ago (in Asia/Tokyo, the
stack's zone) with a 30-minute grace period, and nobody called start_export for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from devstack.stack import LocalStack, call, start_stack
from orchestrator.core.keys import run_id_for
from tests.e2e.conftest import isolated_env

pytestmark = pytest.mark.e2e
TOKYO = ZoneInfo("Asia/Tokyo")
SLOT = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    local = SLOT.astimezone(TOKYO)
    extra = isolated_env(
        RDS2BQ_DAILY_SCHEDULE=f"{local.minute} {local.hour} * * *",
        RDS2BQ_MISSED_RUN_GRACE_MINUTES="30",
    )
    with start_stack(["shop.orders"], finish_delay=None, extra_env=extra) as running:
        running.apply_env()
        yield running


def missed_posts(stack: LocalStack) -> list[str]:
    return [p["text"] for p in stack.slack.payloads if "no daily run" in p["text"]]


def test_a_slot_whose_call_never_came_is_said_once(stack: LocalStack) -> None:
    run_id = run_id_for(SLOT)

    # WHEN the scheduler's polls come, one after another, and no daily call ever did
    reports = [call(stack, "poll") for _ in range(3)]

    # THEN the first says the slot's run is missing, and Slack hears it once
    assert [status for status, _ in reports] == [200, 200, 200]
    assert [report["missed_day"] for _, report in reports] == [run_id, "", ""]
    (text,) = missed_posts(stack)
    assert f"no daily run for {SLOT.astimezone(TOKYO):%Y-%m-%d %H:%M} JST" in text

    # WHEN the day is then started by hand, late, and polled
    status, body = call(stack, "start_export", {"slot": SLOT.isoformat()})
    assert status == 200, body
    assert body["run"]["run_id"] == run_id
    status, report = call(stack, "poll")

    # THEN nothing more is said about it
    assert status == 200 and report["missed_day"] == ""
    assert len(missed_posts(stack)) == 1

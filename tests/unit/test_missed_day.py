"""The poll's missed-day check: a daily slot whose call never came is said in Slack, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.app.missed_day import WINDOW, MissedDayWatch
from orchestrator.config import Settings, load_settings
from orchestrator.core import machine
from orchestrator.core.errors import ConfigError, TransientError
from orchestrator.present.slack import SlackMessages
from orchestrator.present.slack_blocks import validate_payload
from tests.fakes import FixedClock, InMemoryLedger, RecordingNotifier
from tests.unit.test_config import VALID

# 01:00 in Tokyo on 2026-11-28 is 16:00 UTC on the 27th: the slot's run id is its UTC minute
SLOT = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
RUN_ID = "202611271600"
GRACE = timedelta(minutes=120)


def settings(**env: str) -> Settings:
    return load_settings(
        {**VALID, "RDS2BQ_DAILY_SCHEDULE": "0 1 * * *", **env}, read_text=lambda _: "shop.orders"
    )


class Failing(RecordingNotifier):
    def post(self, payload: object) -> None:
        raise TransientError("Slack answered 503")


def watch(
    at: datetime, ledger: InMemoryLedger | None = None, notifier: RecordingNotifier | None = None
) -> tuple[MissedDayWatch, InMemoryLedger, RecordingNotifier, FixedClock]:
    s = settings()
    ledger = ledger or InMemoryLedger()
    notifier = notifier if notifier is not None else RecordingNotifier()
    clock = FixedClock(at)
    return (
        MissedDayWatch(s, ledger, lambda: notifier, SlackMessages(s), clock),
        ledger,
        notifier,
        clock,
    )


def test_a_slot_past_its_grace_with_no_run_is_said_once() -> None:
    # GIVEN no run for the 01:00 JST slot, two hours and a minute later
    w, ledger, slack, clock = watch(SLOT + GRACE + timedelta(minutes=1))

    # WHEN several polls look, concurrently or one after another
    assert w.check() == RUN_ID
    assert w.check() is None
    clock.advance(hours=1)
    assert w.check() is None

    # THEN Slack hears it once, with the local and UTC slot and how to run the day
    (payload,) = slack.payloads
    assert validate_payload(payload) == []
    text = str(payload)
    assert "No daily run for 2026-11-28 01:00 JST" in text and "2026-11-27 16:00 UTC" in text
    assert "start --slot 2026-11-27T16:00:00Z" in text
    assert ledger.get_run(RUN_ID) is None  # nothing is started on its own


def test_nothing_is_said_before_the_grace_period_or_when_the_run_exists() -> None:
    w, _, slack, clock = watch(SLOT + GRACE - timedelta(minutes=1))
    assert w.check() is None

    clock.advance(minutes=2)
    run = machine.new_run("prod", SLOT, "daily", ("shop.orders",), SLOT)
    w.ledger.create_run(run)
    assert w.check() is None
    assert slack.payloads == []


def test_outside_its_window_the_check_reads_nothing() -> None:
    class Counting(InMemoryLedger):
        reads = 0

        def get_run(self, run_id: str) -> object:
            Counting.reads += 1
            return super().get_run(run_id)

    w, _, slack, _ = watch(SLOT + GRACE + WINDOW + timedelta(minutes=1), ledger=Counting())
    assert w.check() is None
    assert Counting.reads == 0 and slack.payloads == []


def test_a_failed_post_is_tried_again_by_the_next_poll() -> None:
    w, _, _, _ = watch(SLOT + GRACE, notifier=Failing())
    assert w.check() is None  # the poll goes on; the claim is given back
    slack = RecordingNotifier()
    w.notifier = lambda: slack
    assert w.check() == RUN_ID
    assert len(slack.payloads) == 1


def test_without_a_schedule_there_is_no_check() -> None:
    s = load_settings(VALID, read_text=lambda _: "shop.orders")
    assert s.daily_schedule is None
    w = MissedDayWatch(
        s, InMemoryLedger(), RecordingNotifier, SlackMessages(s), FixedClock(SLOT + GRACE)
    )
    assert w.check() is None


def test_a_schedule_that_is_not_daily_is_refused_with_its_key() -> None:
    with pytest.raises(ConfigError, match="RDS2BQ_DAILY_SCHEDULE"):
        settings(RDS2BQ_DAILY_SCHEDULE="*/5 * * * *")
    with pytest.raises(ConfigError, match="RDS2BQ_MISSED_RUN_GRACE_MINUTES"):
        settings(RDS2BQ_MISSED_RUN_GRACE_MINUTES="5")

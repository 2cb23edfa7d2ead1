"""The daily slot and the overdue check, around local midnight and DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.core.schedule import DailySchedule, overdue_slot

TOKYO = ZoneInfo("Asia/Tokyo")
GRACE = timedelta(hours=2)
WINDOW = timedelta(hours=6)


def test_parse_takes_only_the_daily_form() -> None:
    assert DailySchedule.parse("0 1 * * *") == DailySchedule(0, 1)
    assert DailySchedule.parse(" 30  23 * * * ") == DailySchedule(30, 23)
    for bad in ("*/5 * * * *", "0 1 * * 1", "60 1 * * *", "0 24 * * *", "", "0 1"):
        with pytest.raises(ValueError, match=r"daily cron schedule|minute 0-59"):
            DailySchedule.parse(bad)


def test_a_tokyo_slot_at_01_00_is_the_previous_utc_day() -> None:
    slot = DailySchedule(0, 1).slot_on(date(2026, 11, 28), TOKYO)
    assert slot == datetime(2026, 11, 27, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # 23:59 JST on the 27th: the slot of the 27th (01:00 JST) is the latest
        (datetime(2026, 11, 27, 14, 59, tzinfo=UTC), datetime(2026, 11, 26, 16, 0, tzinfo=UTC)),
        # 00:30 JST on the 28th: still the 27th's slot, 01:00 has not come
        (datetime(2026, 11, 27, 15, 30, tzinfo=UTC), datetime(2026, 11, 26, 16, 0, tzinfo=UTC)),
        # 01:00 JST on the 28th exactly: the new slot
        (datetime(2026, 11, 27, 16, 0, tzinfo=UTC), datetime(2026, 11, 27, 16, 0, tzinfo=UTC)),
    ],
)
def test_latest_slot_around_local_midnight(now: datetime, expected: datetime) -> None:
    assert DailySchedule(0, 1).latest_slot(now, TOKYO) == expected


def test_overdue_only_between_grace_and_the_end_of_the_window() -> None:
    schedule = DailySchedule(0, 1)
    slot = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    assert overdue_slot(schedule, TOKYO, slot + GRACE - timedelta(seconds=1), GRACE, WINDOW) is None
    assert overdue_slot(schedule, TOKYO, slot + GRACE, GRACE, WINDOW) == slot
    assert overdue_slot(schedule, TOKYO, slot + GRACE + WINDOW / 2, GRACE, WINDOW) == slot
    assert overdue_slot(schedule, TOKYO, slot + GRACE + WINDOW, GRACE, WINDOW) is None


def test_a_dst_zone_keeps_one_slot_a_day() -> None:
    # New York falls back on 2026-11-01: 01:30 happens twice; the first one is the slot
    ny = ZoneInfo("America/New_York")
    schedule = DailySchedule(30, 1)
    before = schedule.slot_on(date(2026, 10, 31), ny)
    during = schedule.slot_on(date(2026, 11, 1), ny)
    after = schedule.slot_on(date(2026, 11, 2), ny)
    assert during - before == timedelta(hours=24)
    assert after - during == timedelta(hours=25)


@given(
    st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2099, 1, 1)),
    st.integers(0, 59),
    st.integers(0, 23),
)
def test_the_latest_slot_is_at_most_a_day_old_and_never_in_the_future(
    naive: datetime, minute: int, hour: int
) -> None:
    now = naive.replace(tzinfo=UTC)
    slot = DailySchedule(minute, hour).latest_slot(now, TOKYO)
    assert slot <= now < slot + timedelta(days=1)
    assert slot.astimezone(TOKYO).hour == hour and slot.astimezone(TOKYO).minute == minute

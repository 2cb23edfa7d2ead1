"""The daily slot: when Cloud Scheduler's daily job fires, and whether the latest one was missed.

Cloud Scheduler reads the daily job's cron in the deployment's time zone (scheduler.tf's
``daily_schedule`` and ``time_zone``); its slot, in UTC, is the daily run's run time. If the call
never comes (the job paused or deleted, its service account broken, the function down), there is
no run to report on, so nothing would say so: the poll asks ``overdue_slot`` and posts once when a
slot's grace period has passed without its run. Pure standard library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from orchestrator.core.timestamps import utc

_DAILY = re.compile(r"^([0-9]{1,2}) ([0-9]{1,2}) \* \* \*$")


@dataclass(frozen=True)
class DailySchedule:
    """A cron schedule of the form ``M H * * *``: once a day, at H:M local time."""

    minute: int
    hour: int

    @classmethod
    def parse(cls, text: str) -> DailySchedule:
        match = _DAILY.fullmatch(" ".join(text.split()))
        if match is None:
            raise ValueError(
                f"{text!r} is not a daily cron schedule 'M H * * *' (e.g. '0 1 * * *')"
            )
        minute, hour = int(match[1]), int(match[2])
        if minute > 59 or hour > 23:
            raise ValueError(f"{text!r}: minute 0-59 and hour 0-23")
        return cls(minute, hour)

    def slot_on(self, day: date, tz: tzinfo) -> datetime:
        """The slot of one local day, in UTC. A time that a DST change skips or repeats is read
        as its first occurrence (``fold=0``); when Cloud Scheduler fires then is unconfirmed."""
        return utc(datetime.combine(day, time(self.hour, self.minute), tzinfo=tz))

    def latest_slot(self, now: datetime, tz: tzinfo) -> datetime:
        """The last slot at or before ``now`` (UTC)."""
        today = utc(now).astimezone(tz).date()
        for day in (today, today - timedelta(days=1), today - timedelta(days=2)):
            slot = self.slot_on(day, tz)
            if slot <= now:
                return slot
        raise AssertionError("a daily schedule has a slot in every two days")  # pragma: no cover


def overdue_slot(
    schedule: DailySchedule, tz: tzinfo, now: datetime, grace: timedelta, window: timedelta
) -> datetime | None:
    """The latest slot if its grace period has passed within ``window`` (the time the poll keeps
    looking for its run), else None. Outside that window the poll asks nothing of the ledger."""
    slot = schedule.latest_slot(now, tz)
    return slot if slot + grace <= now < slot + grace + window else None

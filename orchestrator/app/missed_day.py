"""Watching the watcher from inside: a daily slot whose run never started is said in Slack, once.

Without a run there is nothing to report on, so a scheduler job that stopped calling (paused,
deleted, its service account's invoker grant gone, start_export failing before it writes the
ledger) would go unnoticed; Cloud Monitoring's alerts (scheduler.tf) say it to the on-call, this
says it where the team reads about its data. The poll asks on every call, but only between the
slot's grace period and ``WINDOW`` after it does that cost a ledger read (docs/operations.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from orchestrator.core.errors import Rds2bqError
from orchestrator.core.keys import daily_run_time, missed_day_key, run_id_for
from orchestrator.core.schedule import overdue_slot

if TYPE_CHECKING:
    # Types only: an idle poll, which asks this on every call, need not import the ports.
    from orchestrator.app.ports import Clock, Ledger, Messages, Notifier
    from orchestrator.config import Settings

log = logging.getLogger(__name__)
WINDOW = timedelta(hours=6)  # how long after the grace period a missing run is still looked for


class MissedDayWatch:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        notifier: Callable[[], Notifier],
        messages: Messages,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.notifier = notifier  # a factory: a poll that posts nothing builds no Slack client
        self.messages = messages
        self.clock = clock

    def check(self) -> str | None:
        """The id of the daily run reported missing by this call, or None."""
        s = self.settings
        if s.daily_schedule is None:
            return None
        now = self.clock.now()
        grace = timedelta(minutes=s.missed_run_grace_minutes)
        slot = overdue_slot(s.daily_schedule, s.timezone, now, grace, WINDOW)
        if slot is None:
            return None
        run_id = run_id_for(daily_run_time(slot))
        if self.ledger.get_run(run_id) is not None:
            return None
        key = missed_day_key(run_id)
        if not self.ledger.claim_once(key, now):
            return None  # said already, or being said by a concurrent poll
        try:
            self.notifier().post(
                self.messages.slot_missed(slot, run_id, s.missed_run_grace_minutes)
            )
        except Rds2bqError as exc:
            # The poll's own work goes on; the next poll says it.
            self.ledger.forget(key)
            log.warning("run %s: could not say that it is missing: %s", run_id, exc)
            return None
        self.ledger.mark_done(key)
        log.warning(
            "run %s: no daily run for slot %s", run_id, slot.isoformat(), extra={"run_id": run_id}
        )
        return run_id

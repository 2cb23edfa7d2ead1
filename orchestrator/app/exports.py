"""Starting a run's RDS export, in one home: the daily ``start_export``, the poll that retries a
start, and a re-export.

The run is created in the ledger if absent, and its export started or adopted: the export id is
derived from the run time, so a second start adopts the first. At most
``MAX_CONCURRENT_EXPORTS`` exports run in an AWS account at once (an RDS quota); the check is
``require_export_slot``, here and for a re-export's checks before it asks for one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta

from orchestrator.app import outbox
from orchestrator.app.ports import Clock, EventBus, Exporter, Ledger
from orchestrator.config import Settings
from orchestrator.core import machine
from orchestrator.core.errors import (
    BadRequestError,
    ConflictError,
    ExportQuotaError,
    PermanentError,
)
from orchestrator.core.keys import daily_run_time
from orchestrator.core.model import Run, RunState, Source, Transition

log = logging.getLogger(__name__)

MAX_CONCURRENT_EXPORTS = 5  # per account, an RDS quota
FUTURE_SKEW = timedelta(minutes=5)


def require_export_slot(exporter: Exporter, then: str) -> None:
    """Refuse with ExportQuotaError (transient: HTTP 503) while the account runs as many exports
    as RDS allows. ``then`` ends the message: what happens next, or what to do."""
    running = exporter.running_exports()
    if running >= MAX_CONCURRENT_EXPORTS:
        raise ExportQuotaError(
            f"{running} exports are already running in this AWS account (the limit is "
            f"{MAX_CONCURRENT_EXPORTS}){then}"
        )


class Exports:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        exporter: Callable[[], Exporter],
        events: EventBus,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.exporter = exporter
        self.events = events
        self.clock = clock

    def start(
        self,
        slot: datetime,
        kind: str = "daily",
        tables: Sequence[str] | None = None,
        as_of: date | None = None,
        parent_run_id: str = "",
    ) -> Run:
        """Create the run for ``slot`` if absent and make sure its export is started.

        A daily run's slot is taken to the minute; a re-export passes its run time as made by
        ``keys.reexport_run_time``. Only a run of the same kind (and origin) is adopted."""
        now = self.clock.now()
        run_time = daily_run_time(slot) if kind == "daily" else slot
        if run_time > now + FUTURE_SKEW:
            raise BadRequestError(f"slot {run_time.isoformat()} is in the future")
        if now - run_time > timedelta(hours=self.settings.max_slot_age_hours):
            raise BadRequestError(
                f"slot {run_time.isoformat()} is older than RDS2BQ_MAX_SLOT_AGE_HOURS="
                f"{self.settings.max_slot_age_hours}; use a rerun to export an older day"
            )
        keys = list(tables) if tables is not None else [t.key for t in self.settings.tables]
        run, created = self.ledger.create_run(
            machine.new_run(self.settings.env, run_time, kind, keys, now, parent_run_id)
        )
        if not created and (run.kind != kind or run.parent_run_id != parent_run_id):
            # Only a ledger written by the previous version (one id per minute for every kind)
            # can hold another kind's run under this id: never adopt it as ours.
            raise ConflictError(
                f"run {run.run_id} is a {run.kind} run, not this {kind} run: it was written by "
                "the previous version, whose runs of every kind shared one id per minute"
            )
        log.info(
            "run %s %s for slot %s",
            run.run_id,
            "created" if created else "already exists",
            run_time.isoformat(),
            extra={"run_id": run.run_id},
        )
        if run.state is RunState.EXPORT_STARTING:
            run = self.ensure(run, as_of)
        return run

    def ensure(self, run: Run, as_of: date | None = None) -> Run:
        """Start the run's export, or adopt it if it already exists. Permanent failures close the
        run (and say why); transient ones leave it for the next call or poll."""
        exporter = self.exporter()
        try:
            existing = exporter.describe_export(run.export_task_id)
            if existing is not None:
                source = Source(
                    existing.source_arn, self.settings.source_kind, existing.snapshot_time
                )
            else:
                source = exporter.resolve_source(
                    self.settings.source_kind,
                    self.settings.source_id,
                    as_of,
                    self.settings.timezone,
                )
                require_export_slot(exporter, "; the next poll tries again")
                exporter.start_export(run.export_task_id, source, list(run.tables))
        except PermanentError as exc:
            self._fail_start(run, str(exc))
            raise
        result = self._transition(
            run.run_id, lambda r: machine.export_started(r, source, self.clock.now())
        )
        return result.run or self.ledger.get_run(run.run_id) or run

    def _fail_start(self, run: Run, cause: str) -> None:
        self._transition(
            run.run_id, lambda r: machine.export_not_started(r, cause, self.clock.now())
        )
        log.error(
            "run %s: the export could not be started: %s",
            run.run_id,
            cause,
            extra={"run_id": run.run_id},
        )

    def _transition(self, run_id: str, mutate: Callable[[Run], Transition]) -> Transition:
        return outbox.transition(self.ledger, self.events, run_id, mutate)

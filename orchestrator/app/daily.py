"""Executes the state machine through the ports: start the daily export (``app.exports``), poll,
hand off, and look up the DTS runs whose notification was lost (each DTS run started and recorded
through ``app.transfers``). No SDK import.

Every method is safe to call twice or concurrently: the ledger's transactions decide who acts, the
export id is derived from the run time (a second start adopts the first), and the hand-off holds a
lease so that no table is started twice for one run.

What advances a run (the state machine, the outbox, the exports and the DTS runs, and with them the
event types) is imported where it is used: a poll with no open run, the most frequent cold start,
loads none of it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from orchestrator.core.errors import PermanentError, TransientError
from orchestrator.core.model import (
    ExportStatus,
    Run,
    RunState,
    TableRun,
    TableState,
    Transition,
)

if TYPE_CHECKING:
    from orchestrator.app.exports import Exports
    from orchestrator.app.missed_day import MissedDayWatch
    from orchestrator.app.ports import (
        Clock,
        EventBus,
        Exporter,
        Ledger,
        TransferConfig,
        TransferRunner,
    )
    from orchestrator.app.preflight import Preflight
    from orchestrator.app.transfers import TransferRuns
    from orchestrator.config import Settings

log = logging.getLogger(__name__)

RECORD_BATCH = 50  # fan-out results written together, at most this many
RECORD_SECONDS = 1.0  # ... or this often


@dataclass
class PollReport:
    runs: list[dict[str, Any]] = field(default_factory=list)
    missed_day: str = ""  # the daily run this poll reported missing (its slot's call never came)

    def add(self, run: Run, action: str, **extra: Any) -> None:
        self.runs.append(
            {"run_id": run.run_id, "state": run.state.value, "action": action, **extra}
        )


class Orchestrator:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        exporter: Callable[[], Exporter],
        transfers: Callable[[], TransferRunner],
        events: EventBus,
        clock: Clock,
        runs: Callable[[], TransferRuns] | None = None,
        missed_days: MissedDayWatch | None = None,
        preflight: Preflight | None = None,
    ) -> None:
        # Exporter and TransferRunner come as factories: an idle poll must not build AWS or DTS
        # clients (cold start, and no AWS call when no run is open). ``runs`` starts and records
        # the DTS runs (the wiring shares one with the reruns), a factory too; by default one
        # over these ports.
        self.settings = settings
        self.ledger = ledger
        self.exporter = exporter
        self.transfers = transfers
        self.events = events
        self.clock = clock
        self._runs = runs
        self.missed_days = missed_days  # says in Slack when a daily slot's run never started
        self.preflight = preflight  # checks rows and schemas as the hand-off goes (app.preflight)

    @cached_property
    def runs(self) -> TransferRuns:
        if self._runs is not None:
            return self._runs()
        from orchestrator.app.transfers import TransferRuns

        return TransferRuns(self.ledger, self.transfers)

    # ------------------------------------------------------------------ start_export

    def start_export(self, slot: datetime) -> Run:
        """Create the daily run of ``slot`` if absent and make sure its export is started."""
        return self._exports().start(slot)

    def _exports(self) -> Exports:
        # Built per call over the current ports: cheap, and nothing held apart from them.
        from orchestrator.app.exports import Exports

        return Exports(self.settings, self.ledger, self.exporter, self.events, self.clock)

    # ------------------------------------------------------------------ poll

    def poll(self) -> PollReport:
        """Advance every open run by one step. One ledger query when nothing is open."""
        report = PollReport()
        for run in self.ledger.open_runs():
            try:
                self._advance(run, report)
            except TransientError as exc:
                log.warning(
                    "run %s: transient fault, the next poll retries: %s",
                    run.run_id,
                    exc,
                    extra={"run_id": run.run_id},
                )
                report.add(run, "retry-later", error=str(exc))
            except PermanentError as exc:
                log.error("run %s: %s", run.run_id, exc, extra={"run_id": run.run_id})
                report.add(run, "failed", error=str(exc))
        if self.missed_days is not None:
            report.missed_day = self.missed_days.check() or ""
        return report

    def _advance(self, run: Run, report: PollReport) -> None:
        from orchestrator.app import outbox
        from orchestrator.core import machine

        if run.outbox:
            flushed = outbox.flush(self.ledger, self.events, run)
            if not run.is_open:
                report.add(run, "events-published", events=flushed)
                return
        if run.state is RunState.EXPORT_STARTING:
            run = self._exports().ensure(run)
            report.add(run, "export-started")
        elif run.state is RunState.EXPORTING:
            self._follow_export(run, report)
        elif machine.handoff_due(run, self.clock.now(), self.settings.visibility_margin_minutes):
            self._handoff(run, report)
        elif run.state is RunState.TRANSFERRING and run.handed_off_at is None:
            report.add(run, "handoff-held-elsewhere")  # another poll holds the lease
        elif self._reconcile_due(run):
            self._reconcile(run, report)
        else:
            report.add(run, "waiting")

    def _follow_export(self, run: Run, report: PollReport) -> None:
        from orchestrator.core import machine

        exporter = self.exporter()
        obs = exporter.describe_export(run.export_task_id)
        if obs is None:
            log.warning(
                "run %s: export task %s not found",
                run.run_id,
                run.export_task_id,
                extra={"run_id": run.run_id},
            )
            report.add(run, "export-missing")
            return
        tables = None
        if obs.status is ExportStatus.COMPLETE:
            report_entries = exporter.read_tables_info(run.export_task_id)
            targets = {t.key: t.export_targets for t in self.settings.tables}
            tables = machine.classify_tables(run.tables, report_entries, targets)
            self.ledger.add_tables(run.run_id, tables)
        now = self.clock.now()
        result = self._transition(
            run.run_id,
            lambda r: machine.observe_export(
                r, obs, now, deadline_minutes=self.settings.export_deadline_minutes, tables=tables
            ),
        )
        current = result.run or run
        report.add(current, f"export-{obs.status.value.lower()}", percent=obs.percent)
        if machine.handoff_due(current, now, self.settings.visibility_margin_minutes):
            self._handoff(current, report)

    # ------------------------------------------------------------------ hand-off

    def _handoff(self, run: Run, report: PollReport) -> None:
        from orchestrator.core import machine

        owner = uuid.uuid4().hex
        s = self.settings
        claim = self._transition(
            run.run_id,
            lambda r: machine.claim_handoff(
                r, self.clock.now(), owner, s.lease_seconds, s.visibility_margin_minutes
            ),
        )
        if claim.run is None or claim.run.handoff_owner != owner:
            report.add(run, "handoff-held-elsewhere")
            return
        run = claim.run
        log.info("run %s: hand-off claimed", run.run_id, extra={"run_id": run.run_id})
        run_id = run.run_id

        def release() -> None:  # the lease back early: the next poll goes on at once
            self._transition(run_id, lambda r: machine.release_handoff(r, owner, self.clock.now()))

        tables = {t.key: t for t in self.ledger.tables(run_id)}
        try:
            configs = self.transfers().configs_by_table()
        except TransientError:
            release()  # nothing is started yet
            raise
        if not self._fan_out(run, tables, configs):
            release()  # tables left over
            report.add(run, "handoff-incomplete")
            return
        final = list(tables.values())
        done = self._transition(
            run.run_id, lambda r: machine.handoff_finished(r, owner, self.clock.now(), final)
        )
        report.add(
            done.run or run,
            "handed-off",
            started=sum(1 for t in final if t.state is TableState.STARTED),
        )

    def _fan_out(
        self, run: Run, tables: dict[str, TableRun], configs: dict[str, TransferConfig]
    ) -> bool:
        """Start one DTS run per exported table not yet started; True when none is left over.

        The preflight (``app.preflight``) checks the tables a chunk at a time, and a chunk's DTS
        calls begin as soon as it is checked: the checks run ahead of the starts instead of all
        before them. A checked table is marked STARTING (with its config) before its call: if
        this invocation dies, the next holder asks DTS whether such a table's run exists before
        starting it again. A table the preflight holds is recorded HELD and never started.
        """
        from orchestrator.core import machine

        now = self.clock.now()
        unloadable = machine.unloadable_export(run, self.settings.env)
        busy = self._loading_elsewhere(run)
        resumed: list[TableRun] = []  # STARTING: claimed, and checked, by an earlier holder
        to_check: list[TableRun] = []
        refused: list[TableRun] = []
        for key, table in sorted(tables.items()):
            if table.state is TableState.STARTING:
                resumed.append(table)
                continue
            if table.state is not TableState.PENDING:
                continue
            if key in busy:
                # Never two DTS runs at once on one config: an older run (a late load, or a
                # re-transfer) is still loading this table, and whichever load ended last would
                # win. It stays PENDING; a later poll starts it once that load is over.
                log.info(
                    "run %s: %s waits for run %s's load to finish",
                    run.run_id,
                    key,
                    busy[key],
                    extra={"run_id": run.run_id},
                )
                continue
            config = configs.get(key)
            if unloadable:
                # A load would read an empty folder and still end SUCCEEDED (docs/platform.md):
                # say so.
                refused.append(machine.table_start_failed(table, unloadable, now))
            elif config is None:
                refused.append(
                    machine.table_start_failed(
                        table,
                        f"no transfer config for {key}: run `python -m orchestrator sync`",
                        now,
                    )
                )
            else:
                to_check.append(table.with_(dts_config=config.name))
        tables.update({t.key: t for t in refused})
        self.ledger.put_tables(run.run_id, refused)
        log.info(
            "run %s: starting %d transfer runs (%d resumed), %d at a time",
            run.run_id,
            len(to_check) + len(resumed),
            len(resumed),
            self.settings.fanout_concurrency,
            extra={"run_id": run.run_id},
        )

        # The workers only call DTS; this thread records their results as they come back, a batch
        # at a time. A result lost with a crashed invocation leaves its table STARTING, and the
        # next holder adopts that run (find_run) instead of starting it again: batching costs no
        # safety and keeps the ledger's latency off every DTS call.
        with ThreadPoolExecutor(max_workers=self.settings.fanout_concurrency) as pool:
            runs = self.runs  # built here, once, before the workers share it
            futures = [pool.submit(self._start_one, runs, run, t, True) for t in resumed]
            try:
                for chunk in self._checked(run, to_check):
                    # Paced: the next chunk is taken once the loads waiting for a worker are
                    # fewer than two rounds of them, so the checks run beside the starts
                    # rather than all at once ahead of them.
                    waiting = [f for f in futures if not f.done()]
                    while len(waiting) > 2 * self.settings.fanout_concurrency:
                        wait(waiting, return_when=FIRST_COMPLETED)
                        waiting = [f for f in waiting if not f.done()]
                    ready = [
                        t.with_(state=TableState.STARTING) if t.state is TableState.PENDING else t
                        for t in chunk
                    ]
                    self.ledger.put_tables(run.run_id, ready)
                    tables.update({t.key: t for t in ready})
                    futures += [
                        pool.submit(self._start_one, runs, run, t, False)
                        for t in ready
                        if t.state is TableState.STARTING
                    ]
            except TransientError as exc:
                # The tables not checked yet stay PENDING: the next poll checks and starts them.
                log.warning(
                    "run %s: preflight: transient fault, the next poll goes on: %s",
                    run.run_id,
                    exc,
                    extra={"run_id": run.run_id},
                )
            batch: list[TableRun] = []
            flushed = time.monotonic()
            for future in as_completed(futures):
                result = future.result()
                tables[result.key] = result
                batch.append(result)
                if len(batch) >= RECORD_BATCH or time.monotonic() - flushed >= RECORD_SECONDS:
                    self.ledger.put_tables(run.run_id, batch)
                    batch, flushed = [], time.monotonic()
            if batch:
                self.ledger.put_tables(run.run_id, batch)
        return all(
            t.state not in (TableState.STARTING, TableState.PENDING) for t in tables.values()
        )

    def _checked(self, run: Run, tables: list[TableRun]) -> Iterator[list[TableRun]]:
        """The tables to start, checked by the preflight a chunk at a time (as they are without
        one)."""
        if self.preflight is not None:
            yield from self.preflight.chunks(run, tables)
        elif tables:
            yield tables

    def _loading_elsewhere(self, run: Run) -> dict[str, str]:
        """Tables that another open run is loading right now: table key -> that run's id."""
        busy: dict[str, str] = {}
        for other in self.ledger.open_runs():
            if other.run_id == run.run_id or other.state is not RunState.TRANSFERRING:
                continue
            for table in self.ledger.tables(other.run_id):
                if table.state in (TableState.STARTING, TableState.STARTED):
                    busy[table.key] = other.run_id
        return busy

    def _start_one(self, runs: TransferRuns, run: Run, table: TableRun, resumed: bool) -> TableRun:
        from orchestrator.core import machine

        try:
            started = runs.start(table.dts_config, run.run_time, resumed=resumed)
        except TransientError as exc:
            log.warning(
                "run %s: %s not started yet (transient: %s); the next poll resumes it",
                run.run_id,
                table.key,
                exc,
                extra={"run_id": run.run_id},
            )
            return table  # still STARTING: resumed, with an existence check, by the next holder
        except PermanentError as exc:
            return machine.table_start_failed(
                table, f"DTS refused the run: {exc}", self.clock.now()
            )
        if started.adopted:
            log.info(
                "run %s: %s was started by an earlier hand-off; adopted",
                run.run_id,
                table.key,
                extra={"run_id": run.run_id},
            )
        return machine.table_start_recorded(table, started.name, self.clock.now())

    # ------------------------------------------------------------------ lost notifications

    def _reconcile_due(self, run: Run) -> bool:
        since = run.reconciled_at or run.handed_off_at
        after = timedelta(minutes=self.settings.reconcile_after_minutes)
        return (
            run.state is RunState.TRANSFERRING
            and since is not None
            and self.clock.now() - since >= after
        )

    def _reconcile(self, run: Run, report: PollReport) -> None:
        """Ask DTS about runs that have been silent too long, and record those that finished.

        Their notification may be lost (topic misconfigured, messages expired). Each outcome is
        claimed under the same key as its notification would be, so a late notification and
        this look-up never both record or post it.
        """
        from orchestrator.app.transfers import close_if_done
        from orchestrator.core import machine

        now = self.clock.now()
        after = timedelta(minutes=self.settings.reconcile_after_minutes)
        silent = [
            t
            for t in self.ledger.tables(run.run_id)
            if t.state is TableState.STARTED
            and t.dts_run
            and t.started_at is not None
            and now - t.started_at >= after
        ]
        settled = 0
        for table in silent:
            if self.runs.settle(run.run_id, table, now, lambda t: self._table_failed(run, t, now)):
                settled += 1
        # Also when none settled: a run whose tables are all final but whose TABLES_FINISHED
        # could not close it (notify) is closed here (one count while a table is in flight).
        close_if_done(self.ledger, self.events, run.run_id, now)
        self._transition(
            run.run_id,
            lambda r: Transition(r.with_(reconciled_at=now)) if r.is_open else machine.UNCHANGED,
        )
        log.info(
            "run %s: looked up %d silent transfer run(s), %d had finished",
            run.run_id,
            len(silent),
            settled,
            extra={"run_id": run.run_id},
        )
        report.add(run, "reconciled", looked_up=len(silent), settled=settled)

    def _table_failed(self, run: Run, table: TableRun, now: datetime) -> None:
        from orchestrator.app.transfers import failed_event

        event = failed_event(run.run_id, table, now)
        self._transition(run.run_id, lambda r: Transition(None, (event,)))

    # ------------------------------------------------------------------ plumbing

    def _transition(self, run_id: str, mutate: Callable[[Run], Transition]) -> Transition:
        from orchestrator.app import outbox

        return outbox.transition(self.ledger, self.events, run_id, mutate)

"""One DTS run of one table, in one home: starting it, and recording it finished.

- **Starting** (the daily hand-off, a re-transfer): one manual run with ``requested_run_time`` =
  the run time, retried on transient faults within the backoff's bounds (``core.retry``). A start
  that an earlier attempt may already have made (a hand-off resumed after its holder died) asks
  DTS first and adopts the run it finds, so nothing is started twice; after a call whose outcome
  is unknown, the adapter looks before the retry in the same way.
- **Recording** a finished run (notify, from its notification; the poll, from a look-up when the
  notification is lost): the table's final state, under the run's de-duplication key
  (``core.keys.transfer_key``), so that whichever of the two comes second changes nothing. Then
  the run is closed if that was its last table.
- **Checked loads** (``verified``): DTS ends a run that matched no file SUCCEEDED ("No new files
  found matching ..."). Before a SUCCEEDED run is recorded, its transfer logs are read (one
  ListTransferLogs, and only then), and a run that loaded nothing is recorded EMPTY. Otherwise the
  destination table's rows are read (one tables.get) and compared with the rows the export wrote
  (counted by the preflight from the Parquet footers): a difference is recorded MISMATCHED, with
  both numbers. Either is not loaded, and posted at once.

No SDK import: DTS is reached through the ``TransferRunner`` port.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from orchestrator.app import outbox
from orchestrator.app.ports import (
    DestinationTables,
    EventBus,
    Ledger,
    RunOutcome,
    TransferRunner,
)
from orchestrator.core import machine
from orchestrator.core.errors import PermanentError, TransientError
from orchestrator.core.events import TableFailed
from orchestrator.core.keys import transfer_key
from orchestrator.core.model import NOT_LOADED_STATES, TableRun, TableState, parse_table_ref
from orchestrator.core.retry import DEFAULT_BACKOFF, Backoff, call_with_retry

if TYPE_CHECKING:
    # A type only: the hand-off and reruns, which start runs, need no message parser.
    from orchestrator.core.notifications import TransferRunFinished

log = logging.getLogger(__name__)

NOT_LOADED = NOT_LOADED_STATES


@dataclass(frozen=True)
class Started:
    """A DTS run of a table, started now or adopted (an earlier attempt had started it)."""

    name: str  # projects/.../transferConfigs/ID/runs/RUN
    adopted: bool = False


class TransferRuns:
    def __init__(
        self,
        ledger: Ledger,
        transfers: Callable[[], TransferRunner],
        backoff: Backoff = DEFAULT_BACKOFF,
        sleep: Callable[[float], None] | None = None,
        destinations: Callable[[], DestinationTables] | None = None,
    ) -> None:
        # The ports come as factories: their clients are built on the first call. Without
        # ``destinations`` a succeeded load's rows are not compared.
        self.ledger = ledger
        self.transfers = transfers
        self.destinations = destinations
        self.backoff = backoff
        self.sleep = sleep

    def start(
        self, config_name: str, run_time: datetime, *, resumed: bool = False, earlier: str = ""
    ) -> Started:
        """Start one manual run of ``config_name`` for ``run_time``.

        ``resumed``: an earlier attempt may have started it and its answer was lost, so a run of
        this run time is looked for first and adopted. ``earlier``: the table's previous run, at
        the same run time (a re-transfer); an answer naming it (the adapter looks for a run of
        this run time after a deadline) means that no new run was started.
        Raises TransientError (nothing known to be started, retries spent) or PermanentError.
        """
        transfers = self.transfers()
        if resumed:
            existing = transfers.find_run(config_name, run_time)
            if existing:
                return Started(existing, adopted=True)
        kwargs = {} if self.sleep is None else {"sleep": self.sleep}
        name = call_with_retry(
            lambda: transfers.start_run(config_name, run_time), self.backoff, **kwargs
        )
        if earlier and name == earlier:
            raise TransientError(f"DTS answered with the earlier run {name}")
        return Started(name)

    def settle(
        self,
        run_id: str,
        table: TableRun,
        now: datetime,
        on_failed: Callable[[TableRun], None],
    ) -> bool:
        """Ask DTS where a table's run stands (its notification has not come) and, if it has
        finished, record it as the notification would: under the same key, so that a late
        notification and this look-up never both record or post it. ``on_failed`` is called,
        still under the key's claim, with a table this records as not loaded. True when this call
        handled the outcome."""
        outcome = self.transfers().run_outcome(table.dts_run)
        if outcome.table_state is None:
            return False  # still running: DTS will notify
        key = finished_key(table.dts_run, outcome)
        if not self.ledger.claim_once(key, now):
            return False  # its notification is being (or was) handled
        try:
            outcome = verified(self.transfers(), self.destinations, table, table.dts_run, outcome)
            updated = record_finished(self.ledger, run_id, table.key, table.dts_run, outcome, now)
            if updated is not None and updated.state in NOT_LOADED:
                on_failed(updated)
        except TransientError:
            self.ledger.forget(key)
            raise
        self.ledger.mark_done(key)
        return True


def outcome_of(note: TransferRunFinished) -> RunOutcome:
    """A run-finished notification as the outcome a look-up of that run would give."""
    return RunOutcome(
        note.state.value, note.error_code, note.error_message, note.start_time, note.end_time
    )


def verified(
    runner: TransferRunner,
    destinations: Callable[[], DestinationTables] | None,
    table: TableRun,
    run_name: str,
    outcome: RunOutcome,
) -> RunOutcome:
    """The outcome of a finished run after our checks of a SUCCEEDED one: EMPTY when its logs say
    it loaded nothing, MISMATCHED when the destination's rows differ from the export's. Only a
    SUCCEEDED run is checked. A check refused for good (PermanentError) leaves the run SUCCEEDED,
    with a warning: the load itself is not known to have failed, and a table left STARTED would
    wait for a notification already handled."""
    if outcome.table_state is not TableState.SUCCEEDED:
        return outcome
    try:
        nothing = runner.empty_load(run_name)
    except PermanentError as exc:
        log.warning("could not read the transfer logs of %s: %s", run_name, exc)
        nothing = ""
    if nothing:
        return replace(outcome, loaded_nothing=nothing)
    if destinations is None:
        return outcome
    destination = parse_table_ref(table.key).bq_table
    try:
        rows = destinations().row_count(destination)
    except PermanentError as exc:
        log.warning("could not count the rows of %s: %s", destination, exc)
        return outcome
    return replace(outcome, loaded_rows=rows, rows_mismatch=rows_mismatch(table, rows))


def rows_mismatch(table: TableRun, loaded: int | None) -> str:
    """Why the rows loaded are not the rows exported ('' when they match or one is unknown)."""
    exported = table.export_rows
    if exported is None or loaded is None or exported == loaded:
        return ""
    return f"the destination table holds {loaded:,} rows, the export wrote {exported:,}"


def finished_key(run_name: str, outcome: RunOutcome) -> str:
    """The de-duplication key of a DTS run reaching its final state, however we learn of it."""
    return transfer_key(run_name, outcome.state)


def record_finished(
    ledger: Ledger,
    run_id: str,
    table_key: str,
    run_name: str,
    outcome: RunOutcome,
    now: datetime,
) -> TableRun | None:
    """Record in the ledger that DTS run ``run_name`` of a table finished as ``outcome`` says.
    None when there is nothing new: a duplicate, or an older attempt than the ledger follows.

    A run DTS gives no end time is recorded as finished ``now``, when we learned of it: the
    failure announced for it carries that recorded time, and so, announced again by a later
    delivery, the same content and de-duplication key (``failed_event``)."""
    state = outcome.table_state
    if state is None:
        raise ValueError(f"DTS run {run_name} has not finished: it is {outcome.state}")
    return ledger.update_table(
        run_id,
        table_key,
        lambda t: machine.table_finished(
            t,
            run_name,
            state,
            outcome.error_code,
            outcome.problem,
            outcome.started_at,
            outcome.finished_at or now,
            loaded_rows=outcome.loaded_rows,
        ),
    )


def failed_event(run_id: str, table: TableRun, now: datetime) -> TableFailed:
    """A table not loaded, announced at a time of its own (the end of its run, as recorded:
    ``record_finished``): announced again after a fault, it has the same content, and so the same
    de-duplication key in notify. ``now`` only for a table recorded without one."""
    return machine.table_failed_event(run_id, table, table.finished_at or now)


def close_if_done(ledger: Ledger, events: EventBus, run_id: str, now: datetime) -> None:
    """Close a handed-off run once its last table is final (RUN_CLOSED goes out with it).

    One count query while any table is in flight; every table is read only when none is left.
    (Reading them all per finished table would cost tables² reads a day: 4 million at 2,000.)
    """
    if ledger.count_unfinished(run_id) > 0:
        return
    close(ledger, events, run_id, now)


def close(ledger: Ledger, events: EventBus, run_id: str, now: datetime) -> bool:
    """Close the run if it is handed off and every table is final (all of them are read): True
    when this call closed it. A run closed already, or with a table in flight, is left as is."""
    tables = ledger.tables(run_id)
    closing = outbox.transition(
        ledger, events, run_id, lambda r: machine.close_if_done(r, tables, now)
    )
    return closing.run is not None

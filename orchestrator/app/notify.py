"""What the ``notify`` function does with each message on the notification topic.

- A DTS run-finished message updates its table in the ledger (a SUCCEEDED run whose transfer logs
  say it loaded nothing is recorded EMPTY, one whose rows differ from the export's MISMATCHED). A
  table not loaded is announced (TABLE_FAILED); when no table of the run is left in flight,
  TABLES_FINISHED is announced.
- Our own events (export started, failed, late, tables skipped, hand-off done, table failed, run
  closed) are rendered and posted, so one channel tells the whole story of a day. TABLES_FINISHED
  is not posted: it closes the run, whose RUN_CLOSED is the run's one summary.

Why a failure and the closing are messages of their own (README, "How it works", "Five Firestore
operations per message"): each message then costs at most five Firestore operations. A DTS
message is claim, find, write, count, done; posting its failure there would add a read of the
run, and closing the run there a read of every table, the run's conditional write and the
outbox's clearing.

Delivery is at least once, possibly concurrent: every message is claimed once by a key derived
from its content (a redelivery or a duplicate publish has the same key), and a table's final state
is recorded by a conditional write, so nothing is posted twice. TABLES_FINISHED is not claimed:
closing is a conditional transition that a second delivery finds done. Transient faults raise (the
platform retries); permanent ones are logged and acknowledged; old messages are dropped.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from orchestrator.app import transfers
from orchestrator.app.ports import (
    Clock,
    DestinationTables,
    EventBus,
    Ledger,
    Messages,
    Notifier,
    TransferRunner,
)
from orchestrator.config import Settings
from orchestrator.core.errors import NotFoundError, PermanentError, TransientError
from orchestrator.core.events import Event, TableFailed, TablesFinished, payload
from orchestrator.core.keys import run_id_for
from orchestrator.core.model import EventKind, RunState, TableRun, TableState
from orchestrator.core.notifications import (
    MalformedMessageError,
    PubsubMessage,
    TransferRunFinished,
    parse_message,
)

log = logging.getLogger(__name__)
# Kinds rendered with every table of the run (TABLE_FAILED reads its table, the others need only
# the run document).
_NEEDS_TABLES = (
    EventKind.RUN_CLOSED,
    EventKind.HANDOFF_DONE,
    EventKind.TABLES_SKIPPED,
)


@dataclass(frozen=True)
class Outcome:
    """What happened to one message, for the log line and the tests."""

    # posted | recorded | announced | closed | duplicate | dropped-malformed | dropped-old |
    # unknown-run | failed
    action: str
    run_id: str = ""
    detail: str = ""


class NotifyService:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        notifier: Notifier,
        events: EventBus,
        clock: Clock,
        messages: Messages,
        transfers: Callable[[], TransferRunner],
        destinations: Callable[[], DestinationTables] | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.notifier = notifier
        self.events = events
        self.clock = clock
        self.messages = messages
        # Factories: the DTS and BigQuery clients are built on the first SUCCEEDED run (its logs
        # are read, its destination's rows counted).
        self.transfers = transfers
        self.destinations = destinations

    def handle(self, message: PubsubMessage) -> Outcome:
        try:
            parsed = parse_message(message)
        except MalformedMessageError as exc:
            log.warning(
                "dropped a malformed message %s: %s", message.message_id or "(no id)", exc.reason
            )
            return Outcome("dropped-malformed", detail=exc.reason)
        now = self.clock.now()
        published = message.publish_time
        if published is not None and now - published > timedelta(
            hours=self.settings.notify_max_age_hours
        ):
            log.warning(
                "dropped message %s published at %s: older than RDS2BQ_NOTIFY_MAX_AGE_HOURS=%s",
                message.message_id,
                published.isoformat(),
                self.settings.notify_max_age_hours,
            )
            return Outcome("dropped-old")
        # Closing needs no claim: it is a conditional transition, and a second one changes nothing.
        key = None if isinstance(parsed, TablesFinished) else _dedupe_key(parsed)
        if key is not None and not self.ledger.claim_once(key, now):
            log.info("duplicate message %s ignored", message.message_id)
            return Outcome("duplicate")
        try:
            if isinstance(parsed, TransferRunFinished):
                outcome = self._transfer_finished(parsed)
            elif isinstance(parsed, TablesFinished):
                outcome = self._close(parsed)
            else:
                outcome = self._event(parsed)
        except TransientError:
            if key is not None:
                self.ledger.forget(key)  # let the platform's retry handle it again
            raise
        except PermanentError as exc:
            log.error("message %s could not be handled: %s", message.message_id, exc)
            outcome = Outcome("failed", detail=str(exc))
        except Exception as exc:
            # Not one of our errors: a defect, or input the parser let through. Adapters
            # translate every vendor fault into our two roots, so this is not transient, and a
            # redelivery would fail the same way for days. Log it (with the traceback, which
            # stays in the logs), acknowledge it, and release the claim as done: never left held
            # until its lease expires.
            log.exception(
                "message %s could not be handled (%s): acknowledged",
                message.message_id or "(no id)",
                type(exc).__name__,
            )
            outcome = Outcome("failed", detail=f"unexpected {type(exc).__name__}")
        if key is not None:
            self.ledger.mark_done(key)
        return outcome

    # ------------------------------------------------------------------ DTS runs

    def _transfer_finished(self, note: TransferRunFinished) -> Outcome:
        run_id = run_id_for(note.run_time)  # the run time we requested is our run key
        # The table alone says whether the run is ours. Five Firestore operations whatever the
        # outcome: claim, find, write, count, done.
        table = self.ledger.find_table(run_id, note.config_name)
        if table is None:
            log.warning(
                "transfer run %s (config %s, run time %s) matches no run we started",
                note.run_name,
                note.config_name,
                note.run_time.isoformat(),
            )
            self._post(self.messages.unknown_run(note))
            return Outcome("unknown-run", run_id)
        outcome = transfers.outcome_of(note)
        succeeded = note.state.table_state is TableState.SUCCEEDED
        if succeeded and table.dts_run in ("", note.run_name):  # not an older attempt's logs
            outcome = transfers.verified(
                self.transfers(), self.destinations, table, note.run_name, outcome
            )
        state = outcome.table_state or note.state.table_state
        now = self.clock.now()
        updated = transfers.record_finished(
            self.ledger, run_id, table.key, note.run_name, outcome, now
        )
        if updated is None:
            if table.dts_run != note.run_name or table.state is not state:
                return Outcome("duplicate", run_id, f"{table.key}: an older attempt")
            # Recorded by an earlier delivery that failed before it announced: announce now
            # (a TABLE_FAILED already posted has the same content, so it is not posted again).
            updated = table
        log.info("run %s: %s %s", run_id, table.key, state.value, extra={"run_id": run_id})
        failed = state in transfers.NOT_LOADED
        announced: list[Event] = []
        if failed:  # posted by its own message
            announced.append(transfers.failed_event(run_id, updated, now))
        if self.ledger.count_unfinished(run_id) == 0:
            announced.append(TablesFinished(run_id, now))
        if announced:
            self.events.publish(announced)
        return Outcome("announced" if failed else "recorded", run_id, table.key)

    def _close(self, note: TablesFinished) -> Outcome:
        """Close the run: every table read, the run's conditional write, RUN_CLOSED published
        and cleared from its outbox (five operations)."""
        try:
            closed = transfers.close(self.ledger, self.events, note.run_id, self.clock.now())
        except NotFoundError:
            log.warning("%s for unknown run %s ignored", note.kind, note.run_id)
            return Outcome("unknown-run", note.run_id)
        if closed:
            return Outcome("closed", note.run_id)
        return Outcome("recorded", note.run_id, "not closed: closed already, or a table in flight")

    # ------------------------------------------------------------------ our events

    def _event(self, event: Event) -> Outcome:
        run = self.ledger.get_run(event.run_id)
        if run is None:
            log.warning("event %s for unknown run %s ignored", event.kind, event.run_id)
            return Outcome("unknown-run", event.run_id)
        tables: list[TableRun] = []
        if isinstance(event, TableFailed):
            table = self.ledger.get_table(run.run_id, event.table)
            tables = [] if table is None else [table]
        elif event.kind in _NEEDS_TABLES:
            tables = self.ledger.tables(run.run_id)
        if event.kind is EventKind.RUN_CLOSED and run.state is RunState.FAILED and not tables:
            return Outcome("recorded", run.run_id, "export failure already reported")
        self._post(self.messages.for_event(event, run, tables))
        return Outcome("posted", run.run_id, event.kind.value)

    def _post(self, payload: Mapping[str, Any]) -> None:
        try:
            self.notifier.post(payload)
        except PermanentError as exc:
            # Slack refused the message for good (bad payload, revoked webhook): retrying cannot
            # help, and the ledger already holds the truth.
            log.error("Slack refused a message: %s", exc)


def _dedupe_key(parsed: TransferRunFinished | Event) -> str:
    if isinstance(parsed, TransferRunFinished):
        return transfers.finished_key(parsed.run_name, transfers.outcome_of(parsed))
    else:
        data = json.dumps(payload(parsed), sort_keys=True)
        basis = f"event|{parsed.run_id}|{parsed.kind}|{parsed.at.isoformat()}|{data}"
    return hashlib.sha256(basis.encode()).hexdigest()

"""Events leave with the state change that caused them: never without it, and never lost.

A transition's events are written into the run document (its outbox) by the same conditional write
as the new state, then published, then removed. If publishing fails, they stay: the run stays
listed by the open-runs query, and the next poll publishes them again. notify de-duplicates by
content, so an event published twice is still posted once.

An entry is the event's own JSON (``core.events.to_json``), not a Pub/Sub message: the adapter
encodes what it publishes. The previous version stored the encoded message,
``{"data": <event JSON without its kind>, "attributes": {"rds2bqEvent": KIND, ...}}``; such an
entry (a run whose publish failed just before the upgrade) is still read, and published as the
event it holds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence

from orchestrator.app.ports import EventBus, Ledger
from orchestrator.core import events as event_json
from orchestrator.core.errors import MalformedMessageError, TransientError
from orchestrator.core.events import EVENT_ATTRIBUTE, Event
from orchestrator.core.model import EventKind, Run, Transition

log = logging.getLogger(__name__)

# Logged once per run, when the transition that closes it (SUCCEEDED, PARTIAL, FAILED, CANCELED) is
# committed: every closing goes through transition() below. The dead-man's switch counts these
# lines (scheduler.tf, google_logging_metric.run_closed; docs/deploy.md, "Watching the watcher"),
# so the text is part of the deployment: tests/infra/test_monitoring.py holds the two together.
RUN_CLOSED_LOG = "run closed: %s %s"


def entry(event: Event) -> str:
    return event_json.to_json(event)


def decode(entries: Sequence[str]) -> list[Event]:
    """The events of stored entries. One that cannot be read (it never could: it was checked
    when stored) is logged and left out, so that it cannot hold its run open for ever."""
    events = []
    for text in entries:
        try:
            events.append(_read(text))
        except MalformedMessageError as exc:
            log.error("an outbox entry cannot be read and is dropped: %s", exc.reason)
    return events


def _read(text: str) -> Event:
    legacy = _legacy_entry(text)
    if legacy is None:
        return event_json.from_json(text)
    data, kind = legacy
    return event_json.from_json(data, kind=kind)


def _legacy_entry(text: str) -> tuple[str, str] | None:
    """The event JSON and kind of an entry the previous version stored, or None."""
    try:
        stored = json.loads(text)
    except ValueError:
        return None  # from_json says why
    if not isinstance(stored, dict) or "attributes" not in stored or "kind" in stored:
        return None
    data, attributes = stored.get("data"), stored.get("attributes")
    kind = attributes.get(EVENT_ATTRIBUTE) if isinstance(attributes, dict) else None
    if not isinstance(data, str) or not isinstance(kind, str):
        raise MalformedMessageError("an outbox entry of the previous version without its event")
    return data, kind


def transition(
    ledger: Ledger, bus: EventBus, run_id: str, mutate: Callable[[Run], Transition]
) -> Transition:
    """Apply ``mutate``; its events are stored with the new state, then published."""

    def with_outbox(run: Run) -> Transition:
        result = mutate(run)
        if not result.events:
            return result
        changed = result.run or run
        pending = changed.outbox + tuple(entry(e) for e in result.events)
        return Transition(changed.with_(outbox=pending), result.events)

    result = ledger.transition(run_id, with_outbox)
    if result.events:
        if result.run is not None and any(e.kind is EventKind.RUN_CLOSED for e in result.events):
            log.info(RUN_CLOSED_LOG, run_id, result.run.state.value, extra={"run_id": run_id})
        _publish(ledger, bus, run_id, [entry(e) for e in result.events], result.events)
    return result


def flush(ledger: Ledger, bus: EventBus, run: Run) -> int:
    """Publish what an earlier invocation stored but could not publish; how many events."""
    if not run.outbox:
        return 0
    events = decode(run.outbox)
    log.info(
        "run %s: publishing %d stored event(s)",
        run.run_id,
        len(events),
        extra={"run_id": run.run_id},
    )
    _publish(ledger, bus, run.run_id, list(run.outbox), events)
    return len(events)


def _publish(
    ledger: Ledger, bus: EventBus, run_id: str, entries: list[str], events: Sequence[Event]
) -> None:
    try:
        bus.publish(events)
    except TransientError:
        log.warning(
            "run %s: %d event(s) kept in the outbox for the next poll",
            run_id,
            len(entries),
            extra={"run_id": run_id},
        )
        raise
    sent = set(entries)

    def clear(run: Run) -> Transition:
        if not sent.intersection(run.outbox):
            return Transition(None)
        return Transition(run.with_(outbox=tuple(e for e in run.outbox if e not in sent)))

    ledger.transition(run_id, clear)

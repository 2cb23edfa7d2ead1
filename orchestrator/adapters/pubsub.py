"""Pub/Sub: publish our events to the notification topic (the ``EventBus`` port), through
``google.cloud.pubsub_v1.PublisherClient``.

Each message is the Pub/Sub form of one event (``encode_message``): its data is the event's own
JSON (``core.events.to_json``), its attributes ``rds2bqEvent`` (the kind) and ``runId``, the names
``core.notifications`` parses, so the consumer reads exactly what is produced here.

``publish`` returns only when Pub/Sub has accepted every message, or raises:
TransientError when a retry may work (unavailable, deadline, throttled), PermanentError when it
cannot (topic missing, no permission, bad request). A failure after some messages went out means
a retry publishes those again: consumers de-duplicate (delivery is at least once anyway).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from google.api_core import exceptions as gexc

from orchestrator.core import events as event_json
from orchestrator.core.errors import PermanentError, TransientError
from orchestrator.core.events import EVENT_ATTRIBUTE, MAX_DATA_BYTES, RUN_ID_ATTRIBUTE, Event

if TYPE_CHECKING:
    from orchestrator.config import Settings

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 30.0
# topics.publish takes at most 1,000 messages and 10 MB per request; stay under both.
MAX_MESSAGES = 1000
MAX_BYTES = 9_000_000
MAX_LATENCY = 0.01  # seconds a batch waits for more messages: the outbox hands them over at once

# Codes (HTTP-style, as google.api_core exposes them) worth retrying.
_TRANSIENT_CODES = frozenset({408, 409, 429, 499, 500, 502, 503, 504})


class PublishFuture(Protocol):
    def result(self, timeout: float | None = None) -> Any: ...


class Publisher(Protocol):
    """What we use of ``google.cloud.pubsub_v1.PublisherClient``."""

    def publish(self, topic: str, data: bytes, **kwargs: Any) -> Any: ...


class PubsubEventBus:
    """Publishes events to one topic; every call bounded by ``timeout`` seconds in all."""

    def __init__(
        self,
        publisher: Publisher,
        topic_path: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publisher = publisher
        self._topic = topic_path
        self._timeout = timeout
        self._clock = clock

    @property
    def topic_path(self) -> str:
        return self._topic

    def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        deadline = self._clock() + self._timeout
        # Encode everything first: an event we cannot encode must not leave the batch half sent.
        encoded = []
        for event in events:
            try:
                encoded.append((event, *encode_message(event)))
            except (ValueError, TypeError) as exc:
                raise PermanentError(
                    f"the {event.kind} event of run {event.run_id} cannot be encoded: {exc}"
                ) from exc
        pending: list[tuple[Event, PublishFuture]] = []
        for event, data, attributes in encoded:
            try:
                # The per-RPC timeout bounds the client's own retries of the publish call.
                future = self._publisher.publish(
                    self._topic, data, timeout=self._timeout, **attributes
                )
            except gexc.GoogleAPICallError as exc:
                raise _translate(exc, self._topic, event) from exc
            pending.append((event, future))
        # Await every future, even after a failure, so none is left running unobserved; the
        # first failure is the one reported.
        failure: Exception | None = None
        for event, future in pending:
            try:
                future.result(timeout=max(deadline - self._clock(), 0.0))
            except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
                failure = failure or _translate(exc, self._topic, event)
            except TimeoutError:
                failure = failure or TransientError(
                    f"Pub/Sub did not confirm the {event.kind} event of run {event.run_id} on "
                    f"{self._topic} within {self._timeout:.0f}s"
                )
        if failure is not None:
            raise failure
        logger.debug("published %d event(s) to %s", len(pending), self._topic)


def encode_message(event: Event) -> tuple[bytes, dict[str, str]]:
    """An event as Pub/Sub data and attributes; ``notifications.parse_message`` turns it back
    into ``event``. Raises ValueError for what the parser would refuse (a bad run id, a naive
    time, data over ``MAX_DATA_BYTES``)."""
    data = event_json.to_json(event).encode("utf-8")
    if len(data) > MAX_DATA_BYTES:
        raise ValueError(
            f"{event.kind} event for run {event.run_id} is {len(data)} bytes; "
            f"the limit is {MAX_DATA_BYTES}"
        )
    return data, {EVENT_ATTRIBUTE: event.kind.value, RUN_ID_ATTRIBUTE: event.run_id}


def build_publisher() -> Publisher:
    """One ``PublisherClient`` per instance, batching as the outbox publishes: every event of one
    transition goes out in as few requests as Pub/Sub takes (at most 1,000 messages and 10 MB a
    request), and a lone event waits at most ``MAX_LATENCY`` for company. The client honours
    ``PUBSUB_EMULATOR_HOST`` (the local stack)."""
    from google.cloud.pubsub_v1 import PublisherClient
    from google.cloud.pubsub_v1.types import BatchSettings

    batching = BatchSettings(
        max_messages=MAX_MESSAGES, max_bytes=MAX_BYTES, max_latency=MAX_LATENCY
    )
    publisher: Publisher = PublisherClient(batch_settings=batching)
    return publisher


def build_event_bus(
    settings: Settings, publisher: Publisher | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> PubsubEventBus:
    """The bus for ``settings.topic_path``."""
    return PubsubEventBus(publisher or build_publisher(), settings.topic_path, timeout=timeout)


def _translate(exc: Exception, topic: str, event: Event) -> TransientError | PermanentError:
    what = f"publishing the {event.kind} event of run {event.run_id} to {topic}"
    if isinstance(exc, gexc.NotFound):
        return PermanentError(f"{what}: the topic does not exist")
    if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
        return PermanentError(f"{what}: permission denied (needs roles/pubsub.publisher)")
    if isinstance(exc, gexc.RetryError):
        return TransientError(f"{what}: gave up retrying ({exc.message})")
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code in _TRANSIENT_CODES:
        return TransientError(f"{what}: {type(exc).__name__}: {getattr(exc, 'message', exc)}")
    return PermanentError(f"{what}: {type(exc).__name__}: {getattr(exc, 'message', exc)}")

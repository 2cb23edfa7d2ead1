"""Pub/Sub: publish our events to the notification topic (the ``EventBus`` port), over the REST
API (``topics.publish``; see ``google_http`` for why not the SDK).

Messages are encoded by ``notifications.encode_event`` so the consumer parses exactly what is
produced here. ``publish`` returns only when Pub/Sub has accepted every message, or raises:
TransientError when a retry may work (unavailable, no answer, throttled), PermanentError when it
cannot (topic missing, no permission, bad request). A failure after some messages went out means
a retry publishes those again: consumers de-duplicate (delivery is at least once anyway).
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from orchestrator.adapters.google_http import ApiError, GoogleHttp, google_api
from orchestrator.errors import PermanentError, TransientError
from orchestrator.model import Event
from orchestrator.notifications import encode_event

if TYPE_CHECKING:
    from orchestrator.config import Settings

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 30.0
ENDPOINT = "https://pubsub.googleapis.com/v1/"
# topics.publish takes at most 1,000 messages and 10 MB per request; stay under both.
MAX_MESSAGES = 1000
MAX_BYTES = 9_000_000


class PubsubEventBus:
    """Publishes events to one topic; every call bounded by ``timeout`` seconds in all."""

    def __init__(
        self,
        http: GoogleHttp,
        topic_path: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
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
        messages: list[tuple[Event, dict[str, Any]]] = []
        for event in events:
            try:
                data, attributes = encode_event(event)
            except (ValueError, TypeError) as exc:
                raise PermanentError(
                    f"the {event.kind} event of run {event.run_id} cannot be encoded: {exc}"
                ) from exc
            wire = {"data": base64.b64encode(data).decode("ascii"), "attributes": attributes}
            messages.append((event, wire))
        for chunk in _chunks(messages):
            remaining = deadline - self._clock()
            first = chunk[0][0]
            if remaining <= 0:
                raise TransientError(
                    f"Pub/Sub did not confirm the {first.kind} event of run {first.run_id} on "
                    f"{self._topic} within {self._timeout:.0f}s"
                )
            try:
                answer = self._http.call(
                    "POST",
                    f"{self._topic}:publish",
                    {"messages": [wire for _, wire in chunk]},
                    timeout=remaining,
                )
            except ApiError as exc:
                raise _translate(exc, self._topic, first) from exc
            if len(answer.get("messageIds", ())) != len(chunk):
                raise TransientError(
                    f"Pub/Sub confirmed {len(answer.get('messageIds', ()))} of {len(chunk)} "
                    f"events on {self._topic}"
                )
        logger.debug("published %d event(s) to %s", len(messages), self._topic)


def _chunks(
    messages: list[tuple[Event, dict[str, Any]]],
) -> Iterator[list[tuple[Event, dict[str, Any]]]]:
    chunk: list[tuple[Event, dict[str, Any]]] = []
    size = 0
    for item in messages:
        weight = len(item[1]["data"]) + sum(
            len(k) + len(v) for k, v in item[1]["attributes"].items()
        )
        if chunk and (len(chunk) == MAX_MESSAGES or size + weight > MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += weight
    if chunk:
        yield chunk


def build_event_bus(
    settings: Settings,
    http: GoogleHttp | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    environ: Mapping[str, str] | None = None,
) -> PubsubEventBus:
    """The bus for ``settings.topic_path``; ``PUBSUB_EMULATOR_HOST`` (as the SDKs honour it)
    points it at the emulator, which takes no credentials."""
    if http is None:
        http = pubsub_http(os.environ if environ is None else environ)
    return PubsubEventBus(http, settings.topic_path, timeout=timeout)


def pubsub_http(environ: Mapping[str, str]) -> GoogleHttp:
    return google_api(ENDPOINT, environ.get("PUBSUB_EMULATOR_HOST", ""), "v1/", environ=environ)


def _translate(exc: ApiError, topic: str, event: Event) -> TransientError | PermanentError:
    what = f"publishing the {event.kind} event of run {event.run_id} to {topic}"
    if exc.status == "NOT_FOUND":
        return PermanentError(f"{what}: the topic does not exist")
    if exc.status in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return PermanentError(f"{what}: permission denied (needs roles/pubsub.publisher)")
    if exc.transient or exc.status == "CANCELLED":
        return TransientError(f"{what}: {exc.status}: {exc.message}")
    return PermanentError(f"{what}: {exc.status}: {exc.message}")

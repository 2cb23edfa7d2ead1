"""Run-finished notifications, published to the config's Pub/Sub topic (the emulator's, never
Google's) byte for byte in the shape DTS sends."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from google.cloud.bigquery_datatransfer_v1 import types

log = logging.getLogger("devstack.dts")


@dataclass
class Notification:
    topic: str
    attributes: dict[str, str]
    payload: dict[str, Any]
    message_id: str = ""
    error: str = ""


class _Notifier:
    """Publishes run-finished notifications to the Pub/Sub emulator, never to Google."""

    def __init__(self, host: str | None) -> None:
        self.host = host
        self._client: Any = None
        self._lock = threading.Lock()

    def _publisher(self) -> Any:
        with self._lock:
            if self._client is None:
                import grpc
                from google.cloud import pubsub_v1
                from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

                channel = grpc.insecure_channel(self.host or "")
                self._client = pubsub_v1.PublisherClient(
                    transport=PublisherGrpcTransport(channel=channel)
                )
            return self._client

    def publish(self, note: Notification) -> None:
        if not self.host:
            note.error = "no Pub/Sub emulator configured"
            return
        data = json.dumps(note.payload).encode()
        try:
            future = self._publisher().publish(note.topic, data, **note.attributes)
            note.message_id = str(future.result(timeout=10))
        except Exception as exc:  # the real service also just logs a failed notification
            note.error = f"{type(exc).__name__}: {exc}"
            log.warning("DTS stand-in: notification to %s failed: %s", note.topic, note.error)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.stop()
                self._client = None


class NotificationsMixin:
    """DtsStandin's notifications: one per finished run whose config names a topic."""

    notifications: list[Notification]
    _lock: threading.RLock
    _notifier: _Notifier

    def _notify(self, topic: str, run: types.TransferRun) -> None:
        payload = json.loads(
            types.TransferRun.to_json(
                run,
                use_integers_for_enums=False,
                indent=None,
                always_print_fields_with_no_presence=False,
            )
        )
        note = Notification(
            topic, {"eventType": "TRANSFER_RUN_FINISHED", "payloadFormat": "JSON_API_V1"}, payload
        )
        self._notifier.publish(note)
        with self._lock:
            self.notifications.append(note)

"""Two do-nothing functions: the cold-start child calls them first, so that the platform's own
per-request code (Flask request handling, CloudEvent decoding) is loaded before the measurement
starts, as it is in Cloud Functions before the first request reaches ``main``."""

from __future__ import annotations

from typing import Any


def http_stub(request: Any) -> str:
    return "ok"


def event_stub(cloud_event: Any) -> None:
    return None

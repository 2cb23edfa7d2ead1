"""HTTP decoding and encoding for the entry points: strict JSON bodies, errors as status codes.

400 bad input (the reason in the body), 404 unknown thing, 409 conflict, 422 a permanent failure
the caller cannot fix by retrying, 500 a misconfigured deployment or a bug, 503 transient (retry).
No reply ever carries a secret: messages come from our own errors, built without secret values.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any

from orchestrator.core.errors import (
    BadRequestError,
    ConfigError,
    ConflictError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from orchestrator.logs import redact

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024
Reply = tuple[str, int, dict[str, str]]


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)


def to_json(payload: Any) -> str:
    return json.dumps(payload, default=_default, ensure_ascii=False)


def reply(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
    return redact(to_json(payload)), status, {"Content-Type": "application/json", **(headers or {})}


def error_reply(exc: Exception) -> Reply:
    if isinstance(exc, BadRequestError):
        return reply({"error": "bad_request", "message": str(exc)}, 400)
    if isinstance(exc, NotFoundError):
        return reply({"error": "not_found", "message": str(exc)}, 404)
    if isinstance(exc, ConflictError):
        return reply({"error": "conflict", "message": str(exc)}, 409)
    if isinstance(exc, ConfigError):
        log.error("configuration invalid: %s", exc)
        return reply({"error": "misconfigured", "problems": exc.problems}, 500)
    if isinstance(exc, TransientError):
        log.warning("transient fault: %s", exc)
        return reply({"error": "unavailable", "message": str(exc)}, 503, {"Retry-After": "60"})
    if isinstance(exc, PermanentError):
        log.error("permanent failure: %s", exc)
        return reply({"error": "failed", "message": str(exc)}, 422)
    log.exception("unexpected error")
    return reply({"error": "internal", "message": "internal error; see the logs"}, 500)


def json_body(request: Any, allowed: set[str]) -> dict[str, Any]:
    """The request's JSON object (an empty body is ``{}``); unknown fields are refused."""
    raw = request.get_data(cache=True) or b""
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequestError(f"body larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequestError(
            f"unknown field(s): {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(allowed)) or 'none'}"
        )
    return body


def parse_time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise BadRequestError(f"{field} must be an RFC 3339 timestamp string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequestError(f"{field}={value!r} is not an RFC 3339 timestamp") from exc
    if parsed.tzinfo is None:
        raise BadRequestError(f"{field}={value!r} has no time zone (add Z or an offset)")
    return parsed


def scheduled_slot(request: Any, body: Mapping[str, Any]) -> datetime:
    """The slot of a start: ``slot`` in the body, else Cloud Scheduler's schedule time header.

    Without either the call is refused: a slot taken from the clock would let two manual calls a
    minute apart start two exports."""
    if "slot" in body:
        return parse_time(body["slot"], "slot")
    header = request.headers.get("X-CloudScheduler-ScheduleTime")
    if header:
        return parse_time(header, "X-CloudScheduler-ScheduleTime")
    raise BadRequestError(
        'no slot: send {"slot": "2026-11-27T15:00:00Z"} or call through '
        "Cloud Scheduler (X-CloudScheduler-ScheduleTime)"
    )


def handle(action: Callable[[], Any]) -> Reply:
    try:
        return reply(action())
    except Exception as exc:  # noqa: BLE001 - every failure becomes a reply with its code
        return error_reply(exc)

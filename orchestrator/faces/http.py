"""HTTP decoding and encoding for the entry points: strict JSON bodies, errors as status codes.

400 bad input (the reason in the body), 404 unknown thing, 409 conflict, 422 a permanent failure
the caller cannot fix by retrying, 500 a misconfigured deployment or a bug, 503 transient (retry).
No reply ever carries a secret: messages come from our own errors, built without secret values.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, is_dataclass
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

from orchestrator.core import jsontext
from orchestrator.core.errors import (
    BadRequestError,
    ConfigError,
    ConflictError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from orchestrator.core.timestamps import EARLIEST_TIME, LATEST_TIME
from orchestrator.logs import redact

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 8  # no body of ours nests beyond 2 levels
MAX_QUERY_VALUE = 256
MAX_TIME_TEXT = 64
Reply = tuple[str, int, dict[str, str]]
_ISO_TIME_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)


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
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError("body is not UTF-8 text") from None
    try:
        body = jsontext.loads(text, MAX_JSON_DEPTH)
    except jsontext.JsonTextError as exc:
        # The reason names a position or a rule, never the body (which may hold anything).
        raise BadRequestError(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequestError(
            f"unknown field(s): {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(allowed)) or 'none'}"
        )
    return body


def _clip(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_time(value: Any, field: str) -> datetime:
    """An RFC 3339 time with its zone (``Z`` or an offset), as aware UTC; 400 with the reason."""
    if not isinstance(value, str):
        raise BadRequestError(f"{field} must be an RFC 3339 timestamp string")
    text = value.strip(" ")
    # ASCII only: fromisoformat and int() accept other scripts' digits, which no caller means.
    if len(text) > MAX_TIME_TEXT or not _ISO_TIME_RE.fullmatch(text):
        raise BadRequestError(
            f"{field}={_clip(value)} is not an RFC 3339 timestamp, e.g. 2026-11-27T15:00:00Z"
        )
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequestError(f"{field}={_clip(value)} is not a valid time: {exc}") from None
    if parsed.tzinfo is None:
        raise BadRequestError(f"{field}={_clip(value)} has no time zone (add Z or an offset)")
    try:
        moment = parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        moment = None  # the offset takes it past datetime's range
    if moment is None or not EARLIEST_TIME <= moment < LATEST_TIME:
        span = f"{EARLIEST_TIME.year} to {LATEST_TIME.year - 1}"
        raise BadRequestError(f"{field}={_clip(value)} is out of range ({span})")
    return moment


def query_params(request: Any, allowed: set[str]) -> dict[str, str]:
    """The query string as one value per name: unknown names, repeats, long or control-character
    values are refused (400), so a service sees only what it can act on."""
    args = request.args
    names = list(args.keys())
    unknown = sorted(set(names) - allowed)
    if unknown:
        raise BadRequestError(
            f"unknown parameter(s): {', '.join(_clip(n) for n in unknown)}; allowed: "
            f"{', '.join(sorted(allowed)) or 'none'}"
        )
    params: dict[str, str] = {}
    for name in names:
        values = args.getlist(name)
        if len(values) != 1:
            raise BadRequestError(f"parameter {name} is given {len(values)} times")
        value = values[0]
        if len(value) > MAX_QUERY_VALUE or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise BadRequestError(f"parameter {name} is too long or has control characters")
        params[name] = value
    return params


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

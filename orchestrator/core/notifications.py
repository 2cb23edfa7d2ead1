"""Pure parsing of what arrives on the notification topic (the Pub/Sub wire format's decoding).

Two kinds of message share the topic:

- BigQuery DTS run notifications: attributes ``eventType=TRANSFER_RUN_FINISHED`` and
  ``payloadFormat=JSON_API_V1``; data is the TransferRun as camelCase JSON. Its ``params`` may echo
  ``access_key_id`` (and whatever else the config holds), so only ``data_path`` and
  ``destination_table_name_template`` are kept: what is never parsed cannot leak later.
- Our own events: attributes ``rds2bqEvent=<EventKind>`` and ``runId``; data is the event's own
  JSON (``core.events``: ``{"kind", "runId", "at", "data"}``; ``kind`` is absent from messages
  published before it was added, and then read from the attribute). ``adapters/pubsub.py``
  encodes them.

Anything else is a ``MalformedMessageError`` with a short reason. Parsing raises nothing else, so
the caller can log the reason, acknowledge the message and move on (a retry cannot fix it).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from orchestrator.core import events, jsontext
from orchestrator.core.errors import MalformedMessageError as MalformedMessageError
from orchestrator.core.events import EVENT_ATTRIBUTE, MAX_DATA_BYTES, Event
from orchestrator.core.model import DTS_FINAL_STATES, TableState
from orchestrator.core.redaction import redact
from orchestrator.core.timestamps import parse_wire_time

DTS_EVENT_TYPE = "TRANSFER_RUN_FINISHED"
DTS_PAYLOAD_FORMAT = "JSON_API_V1"

# The only params we keep. Everything else (keys, secrets, future params) is dropped at parse time.
KEPT_PARAMS = ("data_path", "destination_table_name_template")

_RUN_NAME_RE = re.compile(
    r"projects/(?P<project>[^/]+)(?:/locations/(?P<location>[^/]+))?"
    r"/transferConfigs/(?P<config>[^/]+)/runs/(?P<run>[^/]+)"
)
INT32 = 2**31 - 1  # google.rpc.Status.code is an int32
# Params whose values are scrubbed from error text if DTS echoes them there.
_SECRET_PARAM_RE = re.compile(r"key|secret|password|token|credential", re.IGNORECASE)


@dataclass(frozen=True)
class PubsubMessage:
    """A Pub/Sub message as delivered: the raw data, its attributes, id and publish time."""

    data: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)
    message_id: str = ""
    publish_time: datetime | None = None


class DtsRunState(StrEnum):
    """Final TransferRun states a notification is sent for (CANCELLED with two Ls, as DTS)."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def table_state(self) -> TableState:
        return DTS_FINAL_STATES[self]


@dataclass(frozen=True)
class TransferRunFinished:
    """A DTS run-finished notification, reduced to what rds2bq needs. Holds no secret."""

    config_name: str  # projects/P/locations/L/transferConfigs/C
    run_name: str  # config_name + /runs/R
    run_time: datetime  # aware UTC: the requested_run_time of a manual run
    state: DtsRunState
    error_code: int = 0
    error_message: str = ""  # with AWS key ids and echoed key params scrubbed
    start_time: datetime | None = None
    end_time: datetime | None = None
    destination_dataset: str = ""
    data_source_id: str = ""
    data_path: str = ""
    destination_table_name_template: str = ""

    @property
    def project(self) -> str:
        return self._parts()["project"] or ""

    @property
    def location(self) -> str:
        """'' for run names without a location (legacy US names)."""
        return self._parts()["location"] or ""

    @property
    def config_id(self) -> str:
        return self._parts()["config"] or ""

    @property
    def run_id(self) -> str:
        """DTS's own id of the run (the last segment of ``run_name``), not our run id."""
        return self._parts()["run"] or ""

    def _parts(self) -> dict[str, str | None]:
        match = _RUN_NAME_RE.fullmatch(self.run_name)
        return (
            match.groupdict() if match else {"project": "", "location": "", "config": "", "run": ""}
        )


ParsedMessage = TransferRunFinished | Event


def run_name_parts(run_name: str) -> tuple[str, str, str, str] | None:
    """(project, location or '', config id, run id) of a DTS run's name; None if it is none."""
    match = _RUN_NAME_RE.fullmatch(run_name)
    if match is None:
        return None
    project, location, config, run = match.group("project", "location", "config", "run")
    return project, location or "", config, run


# --------------------------------------------------------------------------- entry points


def parse_message(message: PubsubMessage) -> ParsedMessage:
    """Classify and parse one message. Raises only ``MalformedMessageError``."""
    mid = getattr(message, "message_id", "")
    mid = mid if isinstance(mid, str) else ""
    try:
        return _parse(message, mid)
    except MalformedMessageError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        # Belt and braces: the parsers below check types first, but a surprise in input shape must
        # still become "malformed" (acknowledged), never a crash that Pub/Sub would redeliver.
        raise MalformedMessageError(f"unreadable message ({type(exc).__name__})", mid) from None


def message_from_push(body: object) -> PubsubMessage:
    """Decode a Pub/Sub push body or a CloudEvent's data: ``{"message": {"data": base64,
    "attributes", "messageId", "publishTime"}, "subscription"}``. Raises only
    ``MalformedMessageError``."""
    message = body.get("message") if isinstance(body, Mapping) else None
    if not isinstance(message, Mapping):
        raise MalformedMessageError("push body has no 'message' object")
    mid = message.get("messageId", message.get("message_id", ""))
    mid = mid if isinstance(mid, str) else ""
    encoded = message.get("data", "")
    if not isinstance(encoded, str | bytes):
        raise MalformedMessageError("'data' is not base64 text", mid)
    # Base64 is 4/3 of the decoded size: refuse an oversized payload before decoding it.
    if len(encoded) > (MAX_DATA_BYTES * 4) // 3 + 4:
        raise MalformedMessageError(f"data larger than {MAX_DATA_BYTES} bytes", mid)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedMessageError("'data' is not valid base64", mid) from None
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise MalformedMessageError("'attributes' is not a map of strings", mid)
    published = message.get("publishTime", message.get("publish_time"))
    publish_time = None
    if published is not None:
        publish_time = _timestamp(published, "publishTime", mid)
    return PubsubMessage(data, dict(attributes), mid, publish_time)


# --------------------------------------------------------------------------- internals


def _parse(message: PubsubMessage, mid: str) -> ParsedMessage:
    data = message.data
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedMessageError("data is not bytes", mid)
    if len(data) > MAX_DATA_BYTES:  # checked before any decoding: a 5 MB body costs nothing
        raise MalformedMessageError(f"data larger than {MAX_DATA_BYTES} bytes", mid)
    attributes = message.attributes
    if not isinstance(attributes, Mapping):
        raise MalformedMessageError("attributes are not a map", mid)
    if EVENT_ATTRIBUTE in attributes:
        return _parse_event(bytes(data), attributes, mid)
    event_type = attributes.get("eventType")
    if event_type is None:
        raise MalformedMessageError(f"neither an {EVENT_ATTRIBUTE} nor an eventType attribute", mid)
    if event_type != DTS_EVENT_TYPE:
        raise MalformedMessageError(f"unknown event type {_clip(event_type)}", mid)
    payload_format = attributes.get("payloadFormat")
    if payload_format != DTS_PAYLOAD_FORMAT:
        raise MalformedMessageError(f"unsupported payloadFormat {_clip(payload_format)}", mid)
    return _parse_transfer_run(bytes(data), mid)


def _json_object(data: bytes, mid: str) -> dict[str, Any]:
    if not data:
        raise MalformedMessageError("empty data", mid)
    try:
        value = jsontext.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise MalformedMessageError("data is not UTF-8", mid) from None
    except jsontext.JsonSyntaxError:
        raise MalformedMessageError("data is not JSON", mid) from None
    except jsontext.JsonTextError as exc:
        raise MalformedMessageError(f"data is not JSON we accept: {exc}", mid) from None
    if not isinstance(value, dict):
        raise MalformedMessageError("data is not a JSON object", mid)
    return value


def _parse_transfer_run(data: bytes, mid: str) -> TransferRunFinished:
    run = _json_object(data, mid)
    name = _required_str(run, "name", mid)
    match = _RUN_NAME_RE.fullmatch(name)
    if match is None:
        raise MalformedMessageError(
            "'name' is not projects/P/[locations/L/]transferConfigs/C/runs/R", mid
        )
    state_text = _required_str(run, "state", mid)
    try:
        state = DtsRunState(state_text)
    except ValueError:
        raise MalformedMessageError(
            f"state {_clip(state_text)} is not a finished state", mid
        ) from None
    params = run.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise MalformedMessageError("'params' is not an object", mid)
    code, message = _error_status(run.get("errorStatus"), mid)
    return TransferRunFinished(
        config_name=name.rsplit("/runs/", 1)[0],
        run_name=name,
        run_time=_timestamp(_required(run, "runTime", mid), "runTime", mid),
        state=state,
        error_code=code,
        error_message=_scrub(message, params),
        start_time=_optional_timestamp(run, "startTime", mid),
        end_time=_optional_timestamp(run, "endTime", mid),
        destination_dataset=_optional_str(run, "destinationDatasetId", mid),
        data_source_id=_optional_str(run, "dataSourceId", mid),
        data_path=_optional_str(params, "data_path", mid),
        destination_table_name_template=_optional_str(
            params, "destination_table_name_template", mid
        ),
    )


def _error_status(status: object, mid: str) -> tuple[int, str]:
    if status is None:
        return 0, ""
    if not isinstance(status, dict):
        raise MalformedMessageError("'errorStatus' is not an object", mid)
    code = status.get("code", 0)
    if isinstance(code, str) and re.fullmatch(r"-?[0-9]{1,10}", code):
        code = int(code)  # tolerated: int32 may arrive quoted from some JSON writers
    if not isinstance(code, int) or isinstance(code, bool):
        raise MalformedMessageError("'errorStatus.code' is not a number", mid)
    if not -INT32 - 1 <= code <= INT32:
        raise MalformedMessageError("'errorStatus.code' is out of the int32 range", mid)
    message = status.get("message", "")
    if not isinstance(message, str):
        raise MalformedMessageError("'errorStatus.message' is not text", mid)
    return code, message


def _scrub(text: str, params: Mapping[str, Any]) -> str:
    """DTS's error text, redacted where it enters; the config's echoed key params are scrubbed
    too, before the params are dropped."""
    echoed = [
        value
        for key, value in params.items()
        if isinstance(key, str) and _SECRET_PARAM_RE.search(key) and isinstance(value, str)
    ]
    return redact(text, also=echoed)


def _parse_event(data: bytes, attributes: Mapping[str, str], mid: str) -> Event:
    kind = attributes[EVENT_ATTRIBUTE]
    if kind not in events.EVENT_TYPES:
        raise MalformedMessageError(f"unknown {EVENT_ATTRIBUTE} {_clip(kind)}", mid)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessageError("data is not UTF-8", mid) from None
    if not text:
        raise MalformedMessageError("empty data", mid)
    try:
        return events.from_json(text, kind=kind)
    except MalformedMessageError as exc:
        raise MalformedMessageError(exc.reason, mid) from None


def _required(obj: Mapping[str, Any], key: str, mid: str) -> object:
    value = obj.get(key)
    if value is None or value == "":
        raise MalformedMessageError(f"missing '{key}'", mid)
    return value


def _required_str(obj: Mapping[str, Any], key: str, mid: str) -> str:
    value = _required(obj, key, mid)
    if not isinstance(value, str):
        raise MalformedMessageError(f"'{key}' is not text", mid)
    return value


def _optional_str(obj: Mapping[str, Any], key: str, mid: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedMessageError(f"'{key}' is not text", mid)
    return value


def _optional_timestamp(obj: Mapping[str, Any], key: str, mid: str) -> datetime | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    return _timestamp(value, key, mid)


def _timestamp(value: object, key: str, mid: str) -> datetime:
    if not isinstance(value, str):
        raise MalformedMessageError(f"'{key}' is not a timestamp", mid)
    try:
        return parse_wire_time(value)
    except ValueError as exc:
        raise MalformedMessageError(f"'{key}' {exc}", mid) from None


def _clip(value: object, limit: int = 64) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""A local stand-in for the BigQuery Data Transfer Service REST API v1, for tests and the demo.

It speaks the real REST format, as the production adapter (``orchestrator.adapters.dts``) and the
official client with ``transport="rest"`` both do: the documented URLs (``/v1/projects/P/locations/
L/transferConfigs``, ``...:startManualRuns``, ``.../runs/R``), camelCase JSON bodies, RFC 3339
times, ``updateMask`` and the other request fields as query parameters, enums by name (or by
number when asked with ``$alt=json;enum-encoding=int``, as the official client asks), and errors
as ``{"error": {"code", "message", "status"}}`` with the HTTP code of each canonical status. The
service logic works on the client library's own message types; JSON is converted to and from them
with protobuf's JSON mapping, which is what defines the REST format (unknown fields are refused,
as Google does).

What it models, because our correctness depends on it (see docs/platform.md, DTS section):

- the validation the real service applies to the calls we make (parents, required ``amazon_s3``
  params, manual runs: not in the future, a run time for configs without auto-scheduling);
- each run resolves the config's ``data_path`` (runtime template, always UTC) against the S3
  contents by the documented wildcard rules and records the keys it would have loaded;
- a run that matched nothing still ends SUCCEEDED, as the real service does;
- run-finished notifications published to the config's Pub/Sub topic, byte for byte in the
  shape DTS sends (attributes, camelCase TransferRun JSON, ``params`` echoing ``access_key_id``);
- faults: per-call latency, UNAVAILABLE / RESOURCE_EXHAUSTED bursts, calls that succeed but answer
  too late (so the client sees DEADLINE_EXCEEDED for a run that *was* started), and a cut-off after
  N successful StartManualTransferRuns (a fan-out that dies half-way). Faults are named by their
  canonical status (``"UNAVAILABLE"``) and method (``"StartManualTransferRuns"``).

Run it in-process with ``start(...)`` or as ``python -m devstack.dts_standin --port N ...``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from google.cloud.bigquery_datatransfer_v1 import types
from google.protobuf import empty_pb2, field_mask_pb2, json_format
from google.protobuf.descriptor import FieldDescriptor
from google.rpc import status_pb2

log = logging.getLogger("devstack.dts_standin")

# The HTTP code of each canonical status, as Google's REST APIs answer (google/rpc/code.proto).
HTTP_CODES = {
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
}
DATA_SOURCE = "amazon_s3"
REQUIRED_PARAMS = (
    "data_path",
    "destination_table_name_template",
    "access_key_id",
    "secret_access_key",
)
FILE_FORMATS = ("CSV", "JSON", "AVRO", "PARQUET", "ORC")
WRITE_DISPOSITIONS = ("WRITE_APPEND", "WRITE_TRUNCATE")
SECRET_PARAMS = frozenset({"secret_access_key"})  # stored, never echoed (Get/List/runs/Pub/Sub)
CLOCK_SKEW = timedelta(minutes=1)
MAX_PAGE_SIZE = 1000
TERMINAL = frozenset(
    {types.TransferState.SUCCEEDED, types.TransferState.FAILED, types.TransferState.CANCELLED}
)
# Fields a client may not change through UpdateTransferConfig.
_IMMUTABLE = frozenset(
    {
        "name",
        "data_source_id",
        "update_time",
        "next_run_time",
        "state",
        "user_id",
        "dataset_region",
        "owner_info",
        "error",
    }
)

_PARENT_RE = re.compile(r"^projects/[^/]+/locations/[^/]+$")
_CONFIG_RE = re.compile(r"^projects/([^/]+)/(?:locations/([^/]+)/)?transferConfigs/([^/]+)$")
_RUN_RE = re.compile(r"^(projects/[^/]+/(?:locations/[^/]+/)?transferConfigs/[^/]+)/runs/[^/]+$")
_TOPIC_RE = re.compile(r"^projects/[^/]+/topics/[^/]+$")


def _status(name: str) -> str:
    """A canonical status name, checked: a typo in a test must not inject nothing."""
    if name not in HTTP_CODES:
        raise ValueError(f"{name!r} is not a canonical error status ({', '.join(HTTP_CODES)})")
    return name


class RpcFault(Exception):
    """An error status to answer with (what the real service would say)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = _status(code)  # canonical status name, e.g. "NOT_FOUND"
        self.message = message

    @property
    def http_code(self) -> int:
        return HTTP_CODES[self.code]


def _invalid(message: str) -> RpcFault:
    return RpcFault("INVALID_ARGUMENT", message)


# --------------------------------------------------------------------------- runtime templates

_OFFSET_RE = re.compile(r"^([+-])(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")
_TOKEN_RE = re.compile(r"\\([{}])|\{([^{}]*)\}|([{}])")


class TemplateError(ValueError):
    """A ``data_path`` or table template the real service would refuse."""


def _render_parameter(body: str, run_time: datetime) -> str:
    if body == "run_date":
        return run_time.strftime("%Y%m%d")
    head, sep, fmt = body.partition("|")
    if not head.startswith("run_time") or not sep:
        raise TemplateError(
            f"unknown runtime parameter {{{body}}}: use {{run_date}} or "
            '{run_time[+-offset]|"format"}'
        )
    if not (len(fmt) >= 2 and fmt[0] == '"' and fmt[-1] == '"'):
        raise TemplateError(f"{{{body}}}: the time format must be in double quotes")
    offset_text = head[len("run_time") :]
    moment = run_time
    if offset_text:
        match = _OFFSET_RE.match(offset_text)
        if match is None or not any(match.group(i) for i in (2, 3, 4)):
            raise TemplateError(
                f"{{{body}}}: offset {offset_text!r} is not +/- hours (h), "
                "minutes (m), seconds (s), in that order"
            )
        sign = 1 if match.group(1) == "+" else -1
        hours, minutes, seconds = (float(match.group(i) or 0) for i in (2, 3, 4))
        moment = run_time + sign * timedelta(hours=hours, minutes=minutes, seconds=seconds)
    return moment.strftime(fmt[1:-1])


def render_template(template: str, run_time: datetime) -> str:
    """Resolve ``{run_date}`` and ``{run_time[+-offset]|"strftime"}``: always in UTC, as DTS does
    (whatever time zone the schedule was written in)."""
    if run_time.tzinfo is None:
        raise ValueError("run_time must be timezone-aware")
    moment = run_time.astimezone(UTC)
    out: list[str] = []
    position = 0
    for match in _TOKEN_RE.finditer(template):
        out.append(template[position : match.start()])
        escaped, body, stray = match.groups()
        if escaped:
            out.append(escaped)
        elif stray:
            raise TemplateError(f"unbalanced {stray!r} in {template!r} (escape it as \\{stray})")
        else:
            out.append(_render_parameter(body, moment))
        position = match.end()
    out.append(template[position:])
    return "".join(out)


# --------------------------------------------------------------------------- wildcard matching


@dataclass(frozen=True)
class DataPathPattern:
    """A resolved ``s3://`` data path: the bucket, the listing prefix and the key matcher."""

    uri: str
    bucket: str
    prefix: str  # the literal text before the first '*': what S3 is asked to list
    regex: re.Pattern[str] | None  # None: the path can match nothing

    def matches(self, key: str) -> bool:
        return self.regex is not None and self.regex.fullmatch(key) is not None


def compile_data_path(uri: str) -> DataPathPattern:
    """Compile a resolved data path by the documented rules.

    - With zero or one ``*`` the wildcard spans directories (it may match ``/``); with two or more,
      each ``*`` stays inside one path segment.
    - S3 can only list by prefix: everything under the literal text before the first ``*`` is
      listed (and, in the real service, copied) even if the pattern then rejects it.
    - A path whose last segment has no wildcard (a folder such as ``.../db.orders/``, or a plain
      name) loads nothing (docs/platform.md: "a path that does not end in a wildcard loads
      nothing"), read as "the file-name part must be a pattern". Our paths end in ``*.parquet``.
    - Keys ending in ``/`` are folder placeholders, never files.
    """
    if not uri.startswith("s3://"):
        raise TemplateError(f"data_path {uri!r} must start with s3://")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise TemplateError(f"data_path {uri!r} names no bucket")
    prefix = key.split("*", 1)[0]
    last_segment = key.rsplit("/", 1)[-1]
    if "*" not in last_segment:
        return DataPathPattern(uri, bucket, prefix, None)
    star = ".*" if key.count("*") <= 1 else "[^/]*"
    regex = re.compile(star.join(re.escape(part) for part in key.split("*")), re.DOTALL)
    return DataPathPattern(uri, bucket, prefix, regex)


def match_keys(pattern: DataPathPattern, keys: Iterable[str]) -> list[str]:
    return sorted(k for k in keys if not k.endswith("/") and pattern.matches(k))


# --------------------------------------------------------------------------- faults


@dataclass
class CallRecord:
    method: str
    code: str  # canonical status name, "OK" on success
    at: float = field(default_factory=time.monotonic)


class Faults:
    """Fault injection, settable at runtime from tests (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latency = 0.0  # seconds added before every call
        self._failures: deque[tuple[str | None, str, str]] = deque()
        self._slow: deque[tuple[str | None, float]] = deque()
        self._starts_left: int | None = None
        self._starts_code = "UNAVAILABLE"

    def fail_next(
        self,
        n: int = 1,
        code: str = "UNAVAILABLE",
        method: str | None = None,
        message: str = "",
    ) -> None:
        """The next ``n`` calls (of ``method``, or of any method) fail with status ``code`` (a
        canonical name such as ``"UNAVAILABLE"``), with no effect."""
        text = message or f"injected {_status(code)}"
        with self._lock:
            self._failures.extend([(method, code, text)] * n)

    def slow_next(self, n: int = 1, seconds: float = 1.0, method: str | None = None) -> None:
        """The next ``n`` calls take effect, then answer ``seconds`` late: a client deadline
        shorter than that sees DEADLINE_EXCEEDED although the call went through."""
        with self._lock:
            self._slow.extend([(method, seconds)] * n)

    def fail_after_starts(self, n: int, code: str = "UNAVAILABLE") -> None:
        """Allow ``n`` more successful StartManualTransferRuns, then fail every later one."""
        with self._lock:
            self._starts_left = n
            self._starts_code = _status(code)

    def clear(self) -> None:
        with self._lock:
            self.latency = 0.0
            self._failures.clear()
            self._slow.clear()
            self._starts_left = None

    def _take(self, queue: deque[Any], method: str) -> Any:
        for index, entry in enumerate(queue):
            if entry[0] in (None, method):
                del queue[index]
                return entry
        return None

    def take_failure(self, method: str) -> tuple[str, str] | None:
        with self._lock:
            entry = self._take(self._failures, method)
        return None if entry is None else (entry[1], entry[2])

    def take_slow(self, method: str) -> float:
        with self._lock:
            entry = self._take(self._slow, method)
        return 0.0 if entry is None else float(entry[1])

    def claim_start(self) -> None:
        with self._lock:
            if self._starts_left is None:
                return
            if self._starts_left <= 0:
                raise RpcFault(self._starts_code, "injected: no more runs may start")
            self._starts_left -= 1


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Outcome:
    """How runs of matching configs end (instead of the default SUCCEEDED)."""

    state: types.TransferState
    message: str = ""
    code: int = 3  # google.rpc.Code of errorStatus (3 = INVALID_ARGUMENT, as failed loads report)
    # Only a data path's first run ends so (make stack: the day's load fails, a rerun of the
    # same export loads, as if the cause had been fixed); later runs succeed.
    first_run_only: bool = False
    seen: set[str] = field(default_factory=set)  # data paths whose first run this was


@dataclass
class RunRecord:
    """A run and what the stand-in found for it (all guarded by the stand-in's lock)."""

    run: types.TransferRun
    config_name: str
    data_path: str = ""  # resolved, with the run's run_time
    destination_table: str = ""  # resolved
    matched_keys: list[str] = field(default_factory=list)  # what the run would load
    listed_keys: list[str] = field(default_factory=list)  # what S3 listed (copied, maybe unused)
    messages: list[str] = field(default_factory=list)  # what ListTransferLogs returns
    claimed: bool = False  # a finisher is on it

    @property
    def name(self) -> str:
        return str(self.run.name)

    @property
    def state(self) -> types.TransferState:
        return self.run.state


@dataclass
class Notification:
    topic: str
    attributes: dict[str, str]
    payload: dict[str, Any]
    message_id: str = ""
    error: str = ""


def _copy(message: Any) -> Any:
    return type(message).deserialize(type(message).serialize(message))


def _now() -> datetime:
    return datetime.now(UTC)


def _public_params(params: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(params).items() if k not in SECRET_PARAMS}


def _public_config(config: types.TransferConfig) -> types.TransferConfig:
    public = _copy(config)
    public.params = _public_params(config.params)
    return public


def _page(items: list[Any], page_size: int, page_token: str, limit: int) -> tuple[list[Any], str]:
    size = min(page_size or limit, limit)
    if size < 0:
        raise _invalid("page_size must not be negative")
    start = 0
    if page_token:
        try:
            start = int(base64.urlsafe_b64decode(page_token.encode()).decode())
        except ValueError as exc:
            raise _invalid(f"invalid page token {page_token!r}") from exc
    end = start + size
    token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else ""
    return items[start:end], token


# --------------------------------------------------------------------------- Pub/Sub


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


# --------------------------------------------------------------------------- REST plumbing

_PARENT_PATH = r"projects/[^/:]+(?:/locations/[^/:]+)?"
_CONFIG_PATH = _PARENT_PATH + r"/transferConfigs/[^/:]+"
_RUN_PATH = _CONFIG_PATH + r"/runs/[^/:]+"
# System parameters every Google REST API accepts besides the method's own fields.
_SYSTEM_PARAMS = frozenset(
    {"$alt", "alt", "$.xgafv", "prettyPrint", "fields", "key", "quotaUser", "access_token"}
)
_FIELD_MASK = "google.protobuf.FieldMask"


@dataclass(frozen=True)
class Route:
    """One REST method as the service's ``google.api.http`` rules define it: HTTP verb, URL
    template with its one variable, the request message, where the body goes."""

    verb: str
    pattern: re.Pattern[str]
    method: str  # the RPC's name: how calls are recorded and faults are aimed
    handler: str  # the DtsStandin method serving it
    request_type: Any
    path_field: str  # the request field the URL variable binds, e.g. transfer_config.name
    body: str | None = None  # "*": the whole request; a field name; None: no body

    def match(self, verb: str, path: str) -> str | None:
        found = self.pattern.match(path) if verb == self.verb else None
        return found.group("var") if found else None


def _route(
    verb: str,
    variable: str,
    suffix: str,
    method: str,
    handler: str,
    request_type: Any,
    path_field: str,
    body: str | None = None,
) -> Route:
    pattern = re.compile(f"^/v1/(?P<var>{variable}){re.escape(suffix)}$")
    return Route(verb, pattern, method, handler, request_type, path_field, body)


ROUTES = (
    _route(
        "POST",
        _PARENT_PATH,
        "/transferConfigs",
        "CreateTransferConfig",
        "_create_config",
        types.CreateTransferConfigRequest,
        "parent",
        "transfer_config",
    ),
    _route(
        "GET",
        _PARENT_PATH,
        "/transferConfigs",
        "ListTransferConfigs",
        "_list_configs",
        types.ListTransferConfigsRequest,
        "parent",
    ),
    _route(
        "GET",
        _CONFIG_PATH,
        "",
        "GetTransferConfig",
        "_get_config",
        types.GetTransferConfigRequest,
        "name",
    ),
    _route(
        "PATCH",
        _CONFIG_PATH,
        "",
        "UpdateTransferConfig",
        "_update_config",
        types.UpdateTransferConfigRequest,
        "transfer_config.name",
        "transfer_config",
    ),
    _route(
        "DELETE",
        _CONFIG_PATH,
        "",
        "DeleteTransferConfig",
        "_delete_config",
        types.DeleteTransferConfigRequest,
        "name",
    ),
    _route(
        "POST",
        _CONFIG_PATH,
        ":startManualRuns",
        "StartManualTransferRuns",
        "_start_runs",
        types.StartManualTransferRunsRequest,
        "parent",
        "*",
    ),
    _route(
        "GET",
        _CONFIG_PATH,
        "/runs",
        "ListTransferRuns",
        "_list_runs",
        types.ListTransferRunsRequest,
        "parent",
    ),
    _route("GET", _RUN_PATH, "", "GetTransferRun", "_get_run", types.GetTransferRunRequest, "name"),
    _route(
        "GET",
        _RUN_PATH,
        "/transferLogs",
        "ListTransferLogs",
        "_list_logs",
        types.ListTransferLogsRequest,
        "parent",
    ),
)


def _snake_case(path: str) -> str:
    return ".".join(
        re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), part) for part in path.split(".")
    )


def _field_mask(text: str) -> field_mask_pb2.FieldMask:
    """``updateMask`` as a query parameter: comma-separated paths, camelCase as FieldMask's JSON
    form and Google's clients spell them, or snake_case as Google also accepts."""
    return field_mask_pb2.FieldMask(
        paths=[_snake_case(p.strip()) for p in text.split(",") if p.strip()]
    )


def parse_request(route: Route, variable: str, query: str, body: bytes) -> tuple[Any, bool]:
    """The request message of one REST call (gRPC transcoding: the URL variable, the query
    parameters and the body, each bound to its field), and whether the caller asked for enums as
    numbers. What Google would refuse is refused: INVALID_ARGUMENT."""
    descriptor = route.request_type.pb().DESCRIPTOR
    message: dict[str, Any] = {}
    if route.body is not None:
        try:
            payload = json.loads(body or b"{}")
        except ValueError as exc:
            raise _invalid(f"Invalid JSON payload received. {exc}") from exc
        if not isinstance(payload, dict):
            raise _invalid("Invalid JSON payload received. Expected an object.")
        if route.body == "*":
            message.update(payload)
        else:
            message[descriptor.fields_by_name[route.body].json_name] = payload
    values: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        values.setdefault(key, []).append(value)
    int_enums = False
    masks: dict[str, field_mask_pb2.FieldMask] = {}
    for key, given in values.items():
        if key in _SYSTEM_PARAMS:
            int_enums = int_enums or (key in ("$alt", "alt") and "enum-encoding=int" in given[-1])
            continue
        found = descriptor.fields_by_name.get(key) or descriptor.fields_by_camelcase_name.get(key)
        if found is None:
            raise _invalid(
                f'Invalid JSON payload received. Unknown name "{key}": Cannot bind query '
                f"parameter. Field '{key}' could not be found in request message."
            )
        if found.message_type is not None and found.message_type.full_name == _FIELD_MASK:
            masks[found.name] = _field_mask(given[-1])
            continue
        if found.message_type is not None:
            raise _invalid(f'Invalid JSON payload received. Cannot bind query parameter "{key}".')
        if found.type == FieldDescriptor.TYPE_BOOL:
            given = [v.lower() == "true" for v in given]  # type: ignore[misc]
        message[found.json_name] = given if found.is_repeated else given[-1]
    head, _, tail = route.path_field.partition(".")
    head_json = descriptor.fields_by_name[head].json_name
    if tail:
        inner = message.setdefault(head_json, {})
        if not isinstance(inner, dict):
            raise _invalid(f"Invalid JSON payload received. {head_json} must be an object.")
        inner[tail] = variable
    else:
        message[head_json] = variable
    try:
        request = route.request_type.from_json(json.dumps(message), ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise _invalid(f"Invalid JSON payload received. {exc}") from exc
    for name, mask in masks.items():
        setattr(request, name, mask)
    return request, int_enums


def encode_response(message: Any, int_enums: bool = False) -> bytes:
    """A response message as the REST API answers: camelCase JSON, RFC 3339 times, fields at
    their default left out, enums by name unless asked for numbers."""
    if isinstance(message, empty_pb2.Empty):
        return b"{}"
    return str(
        type(message).to_json(
            message,
            use_integers_for_enums=int_enums,
            indent=None,
            always_print_fields_with_no_presence=False,
        )
    ).encode()


def encode_error(fault: RpcFault) -> bytes:
    """Google's JSON error body."""
    error = {"code": fault.http_code, "message": fault.message, "status": fault.code}
    return json.dumps({"error": error}).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many clients connecting at once must not see refusals

    def __init__(self, address: tuple[str, int], standin: DtsStandin) -> None:
        super().__init__(address, _Handler)
        self.standin = standin
        self.connections: set[Any] = set()
        self.connections_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("DTS stand-in: connection from %s ended abruptly", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: pooled clients reuse their connections
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle and the client's delayed
    # ACK add ~40 ms to every answer.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):  # the client is gone
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("DTS stand-in: " + format, *args)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload = self.server.standin.dispatch(self.command, self.path, body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client stopped waiting (a slow answer): as the real service, done
            self.close_connection = True

    do_GET = do_POST = do_PATCH = do_DELETE = _serve


# --------------------------------------------------------------------------- the service


class DtsStandin:
    """Configs and runs in memory, the HTTP server serving them, and the test-facing controls."""

    def __init__(
        self,
        *,
        s3_endpoint: str | None = None,
        pubsub_host: str | None = None,
        finish_delay: float | None = 0.0,
        s3_region: str = "us-east-1",
        max_workers: int = 32,
    ) -> None:
        self.s3_endpoint = s3_endpoint
        self.s3_region = s3_region
        # None: runs stay PENDING until finish_pending(); a number: each run finishes on its own
        # that many seconds after it started.
        self.finish_delay = finish_delay
        self.faults = Faults()
        self.max_page_size = MAX_PAGE_SIZE  # lower it to force pagination
        self.calls: list[CallRecord] = []
        self.notifications: list[Notification] = []
        self._lock = threading.RLock()
        self._configs: dict[str, types.TransferConfig] = {}  # by name, with secrets
        self._runs: dict[str, RunRecord] = {}  # by run name, in start order
        self._outcomes: dict[str, Outcome] = {}
        self._s3_clients: dict[tuple[str, str], Any] = {}
        self._notifier = _Notifier(pubsub_host or os.environ.get("PUBSUB_EMULATOR_HOST"))
        self._finishers = futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="dts-finish")
        self._pending_finishes: set[futures.Future[Any]] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # At most this many calls are served at once; more wait their turn, as with a server's
        # worker pool.
        self._gate = threading.BoundedSemaphore(max_workers)
        self.host = "127.0.0.1"
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def endpoint(self) -> str:
        """``http://host:port``: what ``RDS2BQ_DTS_ENDPOINT`` and the official client's
        ``api_endpoint`` take."""
        return f"http://{self.host}:{self.port}"

    @property
    def target(self) -> str:
        """The stand-in's address as ``RDS2BQ_DTS_ENDPOINT`` takes it (the endpoint)."""
        return self.endpoint

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> DtsStandin:
        server = _Server((host, port), self)
        self.host, self.port = host, int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="dts-http",
            daemon=True,
        )
        self._thread.start()
        self._server = server
        return self

    def stop(self, grace: float = 0.5) -> None:
        """Stop serving: no new connections, and open keep-alive ones are closed so that no
        pooled client talks to a stopped stand-in."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            with server.connections_lock:
                open_connections = list(server.connections)
            for connection in open_connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            if self._thread is not None:
                self._thread.join(grace + 1)
        self._finishers.shutdown(wait=False, cancel_futures=True)
        self._notifier.close()

    # ------------------------------------------------------------------ test controls

    def set_outcome(
        self,
        match: str,
        state: str | types.TransferState = "FAILED",
        message: str = "injected failure",
        code: int = 3,
        first_run_only: bool = False,
    ) -> None:
        """Runs end in ``state`` when ``match`` is their config's name or display name, or their
        resolved destination table (with ``first_run_only``: only the first run per export)."""
        with self._lock:
            self._outcomes[match] = Outcome(
                types.TransferState[str(state)] if isinstance(state, str) else state,
                message,
                code,
                first_run_only,
            )

    def clear_outcomes(self) -> None:
        with self._lock:
            self._outcomes.clear()

    def configs(self) -> list[types.TransferConfig]:
        """Copies of the stored configs, as clients see them (no secrets)."""
        with self._lock:
            return [_public_config(c) for c in self._configs.values()]

    def stored_params(self, config_name: str) -> dict[str, Any]:
        """Every stored param, secret included: for tests that check a key rotation landed."""
        with self._lock:
            return dict(self._configs[config_name].params)

    def runs(self, config_name: str | None = None) -> list[RunRecord]:
        with self._lock:
            return [
                r
                for r in self._runs.values()
                if config_name is None or r.config_name == config_name
            ]

    def run(self, name: str) -> RunRecord:
        with self._lock:
            return self._runs[name]

    def calls_of(self, method: str) -> list[CallRecord]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def finish_pending(self) -> list[RunRecord]:
        """Finish, now and in this thread, every run not yet finished; return them."""
        with self._lock:
            names = [r.name for r in self._runs.values() if r.state not in TERMINAL]
        finished = [self._finish(name) for name in names]
        return [r for r in finished if r is not None]

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until every run scheduled to finish on its own has finished (and notified)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = set(self._pending_finishes)
            if not pending:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(pending)} runs still finishing after {timeout}s")
            futures.wait(pending, timeout=left)

    # ------------------------------------------------------------------ REST plumbing

    def dispatch(self, verb: str, raw_path: str, body: bytes) -> tuple[int, bytes]:
        """Serve one HTTP request: its status code and JSON body."""
        url = urlsplit(raw_path)
        path = unquote(url.path)
        for route in ROUTES:
            variable = route.match(verb, path)
            if variable is not None:
                break
        else:
            unknown = RpcFault("NOT_FOUND", f"{verb} {url.path}: no such DTS method (DTS stand-in)")
            return unknown.http_code, encode_error(unknown)
        with self._gate:
            try:
                response, int_enums = self._call(route, variable, url.query, body)
            except RpcFault as fault:
                return fault.http_code, encode_error(fault)
            except Exception as exc:  # a stand-in bug: say so, as a 500 would
                log.exception("DTS stand-in: %s failed", route.method)
                bug = RpcFault("INTERNAL", f"DTS stand-in: {type(exc).__name__}: {exc}")
                return bug.http_code, encode_error(bug)
        return 200, encode_response(response, int_enums)

    def _record(self, method: str, code: str) -> None:
        with self._lock:
            self.calls.append(CallRecord(method, code))

    def _call(self, route: Route, variable: str, query: str, body: bytes) -> tuple[Any, bool]:
        method = route.method
        if self.faults.latency:
            time.sleep(self.faults.latency)
        injected = self.faults.take_failure(method)
        if injected is not None:
            self._record(method, injected[0])
            raise RpcFault(*injected)
        try:
            request, int_enums = parse_request(route, variable, query, body)
            response = getattr(self, route.handler)(request)
        except RpcFault as fault:
            self._record(method, fault.code)
            raise
        late = self.faults.take_slow(method)
        if late:
            time.sleep(late)
        self._record(method, "OK")
        return response, int_enums

    # ------------------------------------------------------------------ configs

    def _config(self, name: str) -> types.TransferConfig:
        match = _CONFIG_RE.match(name)
        if match is None:
            raise _invalid(
                f"{name!r} is not a transfer config name "
                "(projects/P/locations/L/transferConfigs/ID)"
            )
        config = self._configs.get(name)
        if config is None:  # projects/P/transferConfigs/ID names the same config
            config = next(
                (
                    c
                    for n, c in self._configs.items()
                    if n.endswith(f"/transferConfigs/{match.group(3)}")
                    and n.startswith(f"projects/{match.group(1)}/")
                ),
                None,
            )
        if config is None:
            raise RpcFault("NOT_FOUND", f"Transfer config {name} not found")
        return config

    @staticmethod
    def _validate(config: types.TransferConfig) -> None:
        if config.data_source_id != DATA_SOURCE:
            raise _invalid(
                f"data_source_id {config.data_source_id!r} is not supported by the "
                f"stand-in (only {DATA_SOURCE})"
            )
        if not config.destination_dataset_id:
            raise _invalid("destination_dataset_id is required")
        params = dict(config.params)
        missing = [p for p in REQUIRED_PARAMS if not str(params.get(p, "")).strip()]
        if missing:
            raise _invalid("missing required parameter(s): " + ", ".join(missing))
        # The real service defaults file_format to CSV. The stand-in refuses a missing one:
        # loading our Parquet exports as CSV is always wrong, and tests should catch it here.
        file_format = str(params.get("file_format", ""))
        if file_format not in FILE_FORMATS:
            raise _invalid(
                f"file_format {file_format!r} must be one of {', '.join(FILE_FORMATS)}"
                " (the stand-in requires it; DTS would silently assume CSV)"
            )
        disposition = str(params.get("write_disposition", "WRITE_APPEND"))
        if disposition not in WRITE_DISPOSITIONS:
            raise _invalid(
                f"write_disposition {disposition!r} must be one of " + ", ".join(WRITE_DISPOSITIONS)
            )
        sample = datetime(2024, 1, 1, tzinfo=UTC)
        try:
            compile_data_path(render_template(str(params["data_path"]), sample))
            render_template(str(params["destination_table_name_template"]), sample)
        except TemplateError as exc:
            raise _invalid(str(exc)) from exc
        topic = config.notification_pubsub_topic
        if topic and not _TOPIC_RE.match(topic):
            raise _invalid(f"notification_pubsub_topic {topic!r} is not projects/P/topics/T")

    def _create_config(self, request: types.CreateTransferConfigRequest) -> types.TransferConfig:
        if not _PARENT_RE.match(request.parent):
            raise _invalid(f"parent {request.parent!r} must be projects/P/locations/L")
        config = _copy(request.transfer_config)
        self._validate(config)
        location = request.parent.rsplit("/", 1)[-1]
        config.name = f"{request.parent}/transferConfigs/{uuid.uuid4()}"
        config.update_time = _now()
        config.dataset_region = location
        if request.service_account_name:  # the config runs as this account from now on
            config.owner_info.email = request.service_account_name
        with self._lock:
            self._configs[config.name] = config
        return _public_config(config)

    def _update_config(self, request: types.UpdateTransferConfigRequest) -> types.TransferConfig:
        # ``service_account_name`` is a request field, not a config field: DTS changes the
        # account a config runs as only when the mask names it (as Terraform's provider does).
        paths = list(request.update_mask.paths)
        run_as = "service_account_name" in paths
        if run_as and not request.service_account_name:
            raise _invalid("update_mask names service_account_name, but none is given")
        mask = field_mask_pb2.FieldMask(paths=[p for p in paths if p != "service_account_name"])
        if not mask.paths and not run_as:
            raise _invalid("update_mask is required")
        descriptor = types.TransferConfig.pb().DESCRIPTOR
        if not mask.IsValidForDescriptor(descriptor):
            raise _invalid(f"update_mask {list(mask.paths)} names unknown fields")
        frozen = sorted({p.split(".", 1)[0] for p in mask.paths} & _IMMUTABLE)
        if frozen:
            raise _invalid(f"update_mask names immutable fields: {', '.join(frozen)}")
        with self._lock:
            stored = self._config(request.transfer_config.name)
            merged = _copy(stored)
            # Struct params are replaced whole: the caller sends every param, secret included
            # (the stand-in has no way to keep a secret the caller left out, so it refuses).
            mask.MergeMessage(
                types.TransferConfig.pb(request.transfer_config),
                types.TransferConfig.pb(merged),
                replace_message_field=True,
                replace_repeated_field=True,
            )
            if run_as:
                merged.owner_info.email = request.service_account_name
            self._validate(merged)
            merged.update_time = _now()
            self._configs[merged.name] = merged
            return _public_config(merged)

    def _delete_config(self, request: types.DeleteTransferConfigRequest) -> empty_pb2.Empty:
        with self._lock:
            config = self._config(request.name)
            del self._configs[config.name]
            for name in [n for n, r in self._runs.items() if r.config_name == config.name]:
                del self._runs[name]
        return empty_pb2.Empty()

    def _get_config(self, request: types.GetTransferConfigRequest) -> types.TransferConfig:
        with self._lock:
            return _public_config(self._config(request.name))

    def _list_configs(
        self, request: types.ListTransferConfigsRequest
    ) -> types.ListTransferConfigsResponse:
        if not _PARENT_RE.match(request.parent):
            raise _invalid(f"parent {request.parent!r} must be projects/P/locations/L")
        wanted = set(request.data_source_ids)
        with self._lock:
            configs = [
                _public_config(c)
                for n, c in self._configs.items()
                if n.startswith(request.parent + "/") and (not wanted or c.data_source_id in wanted)
            ]
        page, token = _page(configs, request.page_size, request.page_token, self.max_page_size)
        return types.ListTransferConfigsResponse(transfer_configs=page, next_page_token=token)

    # ------------------------------------------------------------------ runs

    def _start_runs(
        self, request: types.StartManualTransferRunsRequest
    ) -> types.StartManualTransferRunsResponse:
        if not _CONFIG_RE.match(request.parent):
            raise _invalid(f"parent {request.parent!r} must be a transfer config name")
        # requested_run_time and requested_time_range are one protobuf oneof: a body with both is
        # refused when it is parsed, so only "neither" is left to refuse here.
        which = types.StartManualTransferRunsRequest.pb(request).WhichOneof("time")
        now = _now()
        with self._lock:
            config = self._config(request.parent)
            if config.disabled:
                raise RpcFault("FAILED_PRECONDITION", f"Transfer config {config.name} is disabled")
            if which is None:
                raise _invalid("either requested_run_time or requested_time_range is required")
            if which == "requested_time_range":
                run_times = self._range_run_times(config, request, now)
            else:
                run_time = request.requested_run_time
                if run_time > now + CLOCK_SKEW:
                    raise _invalid(f"requested_run_time {run_time.isoformat()} is in the future")
                run_times = [run_time]
            self.faults.claim_start()
            created = [self._new_run(config, t, now) for t in run_times]
            response = types.StartManualTransferRunsResponse(runs=[_copy(r.run) for r in created])
        if self.finish_delay is not None:
            for record in created:
                self._schedule_finish(record.name, self.finish_delay)
        return response

    @staticmethod
    def _range_run_times(
        config: types.TransferConfig, request: types.StartManualTransferRunsRequest, now: datetime
    ) -> list[datetime]:
        if config.schedule_options.disable_auto_scheduling:
            raise _invalid(
                "a transfer config with auto-scheduling disabled accepts only "
                "requested_run_time, not requested_time_range"
            )
        start = request.requested_time_range.start_time
        end = request.requested_time_range.end_time
        if not start < end:
            raise _invalid("requested_time_range: start_time must be before end_time")
        if end > now + CLOCK_SKEW:
            raise _invalid("requested_time_range must not reach into the future")
        # The stand-in models the default schedule only: one run a day from start_time.
        times: list[datetime] = []
        moment = start
        while moment < end and len(times) < 100:
            times.append(moment)
            moment += timedelta(days=1)
        return times

    def _new_run(
        self, config: types.TransferConfig, run_time: datetime, now: datetime
    ) -> RunRecord:
        run = types.TransferRun(
            name=f"{config.name}/runs/{uuid.uuid4()}",
            schedule_time=now,
            run_time=run_time,
            update_time=now,
            params=_public_params(config.params),  # DTS echoes params, access_key_id included
            destination_dataset_id=config.destination_dataset_id,
            data_source_id=config.data_source_id,
            state=types.TransferState.PENDING,
            notification_pubsub_topic=config.notification_pubsub_topic,
        )
        record = RunRecord(run=run, config_name=config.name)
        self._runs[run.name] = record
        return record

    def _run(self, name: str) -> RunRecord:
        if not _RUN_RE.match(name):
            raise _invalid(f"{name!r} is not a transfer run name")
        record = self._runs.get(name)
        if record is None:
            raise RpcFault("NOT_FOUND", f"Transfer run {name} not found")
        return record

    def _get_run(self, request: types.GetTransferRunRequest) -> types.TransferRun:
        with self._lock:
            return _copy(self._run(request.name).run)

    def _list_runs(self, request: types.ListTransferRunsRequest) -> types.ListTransferRunsResponse:
        states = set(request.states)
        with self._lock:
            config = self._config(request.parent)
            runs = [
                _copy(r.run)
                for r in reversed(self._runs.values())  # newest first
                if r.config_name == config.name and (not states or r.run.state in states)
            ]
        page, token = _page(runs, request.page_size, request.page_token, self.max_page_size)
        return types.ListTransferRunsResponse(transfer_runs=page, next_page_token=token)

    def _list_logs(self, request: types.ListTransferLogsRequest) -> types.ListTransferLogsResponse:
        with self._lock:
            record = self._run(request.parent)
            messages = [
                types.TransferMessage(
                    message_time=record.run.update_time,
                    message_text=text,
                    severity=types.TransferMessage.MessageSeverity.INFO,
                )
                for text in record.messages
            ]
        page, token = _page(messages, request.page_size, request.page_token, self.max_page_size)
        return types.ListTransferLogsResponse(transfer_messages=page, next_page_token=token)

    # ------------------------------------------------------------------ finishing runs

    def _schedule_finish(self, name: str, delay: float) -> None:
        def work() -> None:
            if delay:
                time.sleep(delay)
            self._finish(name)

        future = self._finishers.submit(work)
        with self._lock:
            self._pending_finishes.add(future)

        def done(f: futures.Future[Any]) -> None:
            with self._lock:
                self._pending_finishes.discard(f)

        future.add_done_callback(done)

    def _s3(self, access_key_id: str, secret: str) -> Any:
        import boto3
        from botocore.config import Config

        key = (access_key_id, secret)
        with self._lock:
            client = self._s3_clients.get(key)
            if client is None:
                client = boto3.client(
                    "s3",
                    endpoint_url=self.s3_endpoint,
                    region_name=self.s3_region,
                    aws_access_key_id=access_key_id,
                    aws_secret_access_key=secret,
                    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
                )
                self._s3_clients[key] = client
            return client

    def _list(self, pattern: DataPathPattern, access_key_id: str, secret: str) -> list[str]:
        if not self.s3_endpoint:
            raise RuntimeError("the DTS stand-in was started without an S3 endpoint")
        paginator = self._s3(access_key_id, secret).get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=pattern.bucket, Prefix=pattern.prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def _outcome_for(
        self, config: types.TransferConfig, table: str, data_path: str = ""
    ) -> Outcome | None:
        for match in (config.name, config.display_name, table):
            if match in self._outcomes:
                outcome = self._outcomes[match]
                if outcome.first_run_only:
                    if data_path in outcome.seen:
                        return None
                    outcome.seen.add(data_path)
                return outcome
        return None

    def _finish(self, name: str) -> RunRecord | None:
        with self._lock:
            record = self._runs.get(name)
            if record is None or record.claimed or record.state in TERMINAL:
                return None
            record.claimed = True
            config = self._configs.get(record.config_name)
            if config is None:  # deleted meanwhile: nothing left to finish
                return None
            params = dict(config.params)
            record.run.state = types.TransferState.RUNNING
            record.run.start_time = _now()
        run_time = record.run.run_time
        state = types.TransferState.SUCCEEDED
        error: status_pb2.Status | None = None
        messages: list[str] = []
        matched: list[str] = []
        listed: list[str] = []
        data_path = render_template(str(params["data_path"]), run_time)
        table = render_template(str(params["destination_table_name_template"]), run_time)
        try:
            pattern = compile_data_path(data_path)
            listed = self._list(
                pattern, str(params["access_key_id"]), str(params["secret_access_key"])
            )
            matched = match_keys(pattern, listed)
        except Exception as exc:  # any S3 problem fails the run, as a real transfer would
            state = types.TransferState.FAILED
            error = status_pb2.Status(
                code=3, message=f"Failed to list files in {data_path}: {type(exc).__name__}: {exc}"
            )
        with self._lock:
            outcome = self._outcome_for(config, table, data_path)
        if error is None and outcome is not None:
            state = outcome.state
            if outcome.state is not types.TransferState.SUCCEEDED:
                error = status_pb2.Status(code=outcome.code, message=outcome.message)
        if error is None and not matched:
            messages.append(f"No new files found matching: {data_path}")
        elif error is None:
            messages.append(f"Loading {len(matched)} files from {data_path} into {table}")
        with self._lock:
            record.data_path = data_path
            record.destination_table = table
            record.matched_keys = matched
            record.listed_keys = sorted(listed)
            record.messages.extend(messages if error is None else [error.message])
            record.run.state = state
            record.run.error_status = error or status_pb2.Status()
            record.run.end_time = _now()
            record.run.update_time = record.run.end_time
            topic = config.notification_pubsub_topic
            snapshot = _copy(record.run)
        if topic:
            self._notify(topic, snapshot)
        return record

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


def start(
    port: int = 0,
    s3_endpoint: str | None = None,
    pubsub_host: str | None = None,
    *,
    finish_delay: float | None = 0.0,
    s3_region: str = "us-east-1",
) -> DtsStandin:
    """Serve a stand-in on 127.0.0.1:``port`` (0: a free port); ``.port``, ``.stop()``."""
    return DtsStandin(
        s3_endpoint=s3_endpoint,
        pubsub_host=pubsub_host,
        finish_delay=finish_delay,
        s3_region=s3_region,
    ).serve(port)


def _endpoint(target: str) -> str:
    return target if "://" in target else f"http://{target}"


def client_for(target: str) -> Any:
    """The official ``DataTransferServiceClient`` (REST transport, anonymous credentials) talking
    to a stand-in at ``target`` (``http://host:port`` or ``host:port``)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery_datatransfer_v1 as dts

    return dts.DataTransferServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": _endpoint(target)},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.dts_standin",
        description="Local BigQuery DTS stand-in (REST API v1).",
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--s3-endpoint", default=None, help="moto server URL")
    parser.add_argument("--s3-region", default="us-east-1")
    parser.add_argument("--pubsub-host", default=None, help="Pub/Sub emulator host:port")
    parser.add_argument(
        "--finish-delay", default="2", help="seconds before a run finishes on its own, or 'manual'"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every call")
    parser.add_argument(
        "--bigquery-port",
        type=int,
        default=None,
        help="also serve the BigQuery REST stand-in on this port",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    delay = None if args.finish_delay == "manual" else float(args.finish_delay)
    standin = start(
        args.port, args.s3_endpoint, args.pubsub_host, finish_delay=delay, s3_region=args.s3_region
    )
    standin.faults.latency = args.latency
    bigquery = None
    if args.bigquery_port is not None:
        from devstack.bigquery_standin import start_bigquery

        bigquery = start_bigquery(args.bigquery_port)
        print(f"BigQuery stand-in listening on {bigquery.endpoint}", flush=True)
    print(f"DTS stand-in listening on {standin.target}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    standin.stop()
    if bigquery is not None:
        bigquery.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A local stand-in for the BigQuery Data Transfer Service (gRPC), for tests and the demo.

It speaks the real wire protocol: every request is decoded with the client library's own
``types.*Request.deserialize`` and every reply encoded with ``types.*.serialize``, so the
production adapter talks to it through an unmodified ``DataTransferServiceClient``.

What it models, because our correctness depends on it (see FACTS.md, DTS section):

- the validation the real service applies to the calls we make (parents, required ``amazon_s3``
  params, manual runs: not in the future, a run time for configs without auto-scheduling);
- each run resolves the config's ``data_path`` (runtime template, always UTC) against the S3
  contents by the documented wildcard rules and records the keys it would have loaded;
- a run that matched nothing still ends SUCCEEDED, as the real service does;
- run-finished notifications published to the config's Pub/Sub topic, byte for byte in the
  shape DTS sends (attributes, camelCase TransferRun JSON, ``params`` echoing ``access_key_id``);
- faults: per-call latency, UNAVAILABLE / RESOURCE_EXHAUSTED bursts, calls that succeed but answer
  too late (so the client sees DEADLINE_EXCEEDED for a run that *was* started), and a cut-off after
  N successful StartManualTransferRuns (a fan-out that dies half-way).

Run it in-process with ``start(...)`` or as ``python -m devstack.dts_standin --port N ...``.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import re
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.cloud.bigquery_datatransfer_v1 import types
from google.protobuf import empty_pb2
from google.rpc import status_pb2

log = logging.getLogger("devstack.dts_standin")

SERVICE = "google.cloud.bigquery.datatransfer.v1.DataTransferService"
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


class RpcFault(Exception):
    """An error status to answer with (what the real service would say)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> RpcFault:
    return RpcFault(grpc.StatusCode.INVALID_ARGUMENT, message)


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
      name) loads nothing: FACTS.md's "a path that does not end in a wildcard loads nothing", read
      as "the file-name part must be a pattern". Our data paths always end in ``*.parquet``.
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
    code: str  # grpc status name, "OK" on success
    at: float = field(default_factory=time.monotonic)


class Faults:
    """Fault injection, settable at runtime from tests (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latency = 0.0  # seconds added before every call
        self._failures: deque[tuple[str | None, grpc.StatusCode, str]] = deque()
        self._slow: deque[tuple[str | None, float]] = deque()
        self._starts_left: int | None = None
        self._starts_code = grpc.StatusCode.UNAVAILABLE

    def fail_next(
        self,
        n: int = 1,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        method: str | None = None,
        message: str = "",
    ) -> None:
        """The next ``n`` calls (of ``method``, or of any method) fail with ``code``, no effect."""
        text = message or f"injected {code.name}"
        with self._lock:
            self._failures.extend([(method, code, text)] * n)

    def slow_next(self, n: int = 1, seconds: float = 1.0, method: str | None = None) -> None:
        """The next ``n`` calls take effect, then answer ``seconds`` late: a client deadline
        shorter than that sees DEADLINE_EXCEEDED although the call went through."""
        with self._lock:
            self._slow.extend([(method, seconds)] * n)

    def fail_after_starts(
        self, n: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    ) -> None:
        """Allow ``n`` more successful StartManualTransferRuns, then fail every later one."""
        with self._lock:
            self._starts_left = n
            self._starts_code = code

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

    def take_failure(self, method: str) -> tuple[grpc.StatusCode, str] | None:
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


# --------------------------------------------------------------------------- the service


class DtsStandin:
    """Configs and runs in memory, the gRPC server serving them, and the test-facing controls."""

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
        self._server: grpc.Server | None = None
        self._max_workers = max_workers
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> DtsStandin:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="dts-rpc")
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, self._handlers()),)
        )
        self.port = server.add_insecure_port(f"{host}:{port}")
        if not self.port:
            raise RuntimeError(f"could not bind {host}:{port}")
        server.start()
        self._server = server
        return self

    def stop(self, grace: float = 0.5) -> None:
        if self._server is not None:
            self._server.stop(grace).wait(grace + 1)
            self._server = None
        self._finishers.shutdown(wait=False, cancel_futures=True)
        self._notifier.close()

    # ------------------------------------------------------------------ test controls

    def set_outcome(
        self,
        match: str,
        state: str | types.TransferState = "FAILED",
        message: str = "injected failure",
        code: int = 3,
    ) -> None:
        """Runs end in ``state`` when ``match`` is their config's name or display name, or their
        resolved destination table."""
        with self._lock:
            self._outcomes[match] = Outcome(
                types.TransferState[str(state)] if isinstance(state, str) else state, message, code
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

    # ------------------------------------------------------------------ gRPC plumbing

    def _handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        def unary(
            method: str,
            fn: Callable[[Any], Any],
            request_type: Any,
            serialize: Callable[[Any], bytes],
        ) -> grpc.RpcMethodHandler:
            def handler(request: Any, context: grpc.ServicerContext) -> Any:
                return self._call(method, fn, request, context)

            return grpc.unary_unary_rpc_method_handler(
                handler,
                request_deserializer=request_type.deserialize,
                response_serializer=serialize,
            )

        return {
            "CreateTransferConfig": unary(
                "CreateTransferConfig",
                self._create_config,
                types.CreateTransferConfigRequest,
                types.TransferConfig.serialize,
            ),
            "UpdateTransferConfig": unary(
                "UpdateTransferConfig",
                self._update_config,
                types.UpdateTransferConfigRequest,
                types.TransferConfig.serialize,
            ),
            "DeleteTransferConfig": unary(
                "DeleteTransferConfig",
                self._delete_config,
                types.DeleteTransferConfigRequest,
                empty_pb2.Empty.SerializeToString,
            ),
            "GetTransferConfig": unary(
                "GetTransferConfig",
                self._get_config,
                types.GetTransferConfigRequest,
                types.TransferConfig.serialize,
            ),
            "ListTransferConfigs": unary(
                "ListTransferConfigs",
                self._list_configs,
                types.ListTransferConfigsRequest,
                types.ListTransferConfigsResponse.serialize,
            ),
            "StartManualTransferRuns": unary(
                "StartManualTransferRuns",
                self._start_runs,
                types.StartManualTransferRunsRequest,
                types.StartManualTransferRunsResponse.serialize,
            ),
            "GetTransferRun": unary(
                "GetTransferRun",
                self._get_run,
                types.GetTransferRunRequest,
                types.TransferRun.serialize,
            ),
            "ListTransferRuns": unary(
                "ListTransferRuns",
                self._list_runs,
                types.ListTransferRunsRequest,
                types.ListTransferRunsResponse.serialize,
            ),
            "ListTransferLogs": unary(
                "ListTransferLogs",
                self._list_logs,
                types.ListTransferLogsRequest,
                types.ListTransferLogsResponse.serialize,
            ),
        }

    def _record(self, method: str, code: str) -> None:
        with self._lock:
            self.calls.append(CallRecord(method, code))

    def _call(
        self, method: str, fn: Callable[[Any], Any], request: Any, context: grpc.ServicerContext
    ) -> Any:
        if self.faults.latency:
            time.sleep(self.faults.latency)
        injected = self.faults.take_failure(method)
        if injected is not None:
            self._record(method, injected[0].name)
            context.abort(injected[0], injected[1])
        try:
            response = fn(request)
        except RpcFault as fault:
            self._record(method, fault.code.name)
            context.abort(fault.code, fault.message)
        late = self.faults.take_slow(method)
        if late:
            time.sleep(late)
        self._record(method, "OK")
        return response

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
            raise RpcFault(grpc.StatusCode.NOT_FOUND, f"Transfer config {name} not found")
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
        with self._lock:
            self._configs[config.name] = config
        return _public_config(config)

    def _update_config(self, request: types.UpdateTransferConfigRequest) -> types.TransferConfig:
        mask = request.update_mask
        if not mask.paths:
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
        # requested_run_time and requested_time_range are one protobuf oneof: "both" cannot be
        # encoded (the last one on the wire wins), so only "neither" can be refused here.
        which = types.StartManualTransferRunsRequest.pb(request).WhichOneof("time")
        now = _now()
        with self._lock:
            config = self._config(request.parent)
            if config.disabled:
                raise RpcFault(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"Transfer config {config.name} is disabled",
                )
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
            raise RpcFault(grpc.StatusCode.NOT_FOUND, f"Transfer run {name} not found")
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

    def _outcome_for(self, config: types.TransferConfig, table: str) -> Outcome | None:
        for match in (config.name, config.display_name, table):
            if match in self._outcomes:
                return self._outcomes[match]
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
            outcome = self._outcome_for(config, table)
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


def client_for(target: str) -> Any:
    """A real ``DataTransferServiceClient`` talking to a stand-in at ``host:port``."""
    from google.cloud import bigquery_datatransfer_v1 as dts
    from google.cloud.bigquery_datatransfer_v1.services.data_transfer_service.transports import (
        DataTransferServiceGrpcTransport,
    )

    channel = grpc.insecure_channel(target)
    return dts.DataTransferServiceClient(
        transport=DataTransferServiceGrpcTransport(channel=channel)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.dts_standin", description="Local BigQuery DTS stand-in (gRPC)."
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

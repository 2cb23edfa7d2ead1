"""Manual runs: started as DTS starts them, finished by resolving the config's ``data_path`` against
the S3 contents, ended by the outcome policy (SUCCEEDED unless a test set an outcome), with their
transfer logs; a SUCCEEDED run loads its files into the BigQuery stand-in when there is one
(``loads``)."""

from __future__ import annotations

import re
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from google.cloud.bigquery_datatransfer_v1 import types
from google.rpc import status_pb2

from devstack.dts.configs import _CONFIG_RE, _copy, _now, _public_params
from devstack.dts.errors import RpcFault, _invalid
from devstack.dts.faults import Faults
from devstack.dts.loads import LoadFailed, load, read_files
from devstack.dts.paths import DataPathPattern, compile_data_path, match_keys, render_template
from devstack.dts.rest import _page

CLOCK_SKEW = timedelta(minutes=1)
_SEVERITY = types.TransferMessage.MessageSeverity
TERMINAL = frozenset(
    {types.TransferState.SUCCEEDED, types.TransferState.FAILED, types.TransferState.CANCELLED}
)
_RUN_RE = re.compile(r"^(projects/[^/]+/(?:locations/[^/]+/)?transferConfigs/[^/]+)/runs/[^/]+$")


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
    # What ListTransferLogs returns: (severity, text), as DTS logs a run.
    messages: list[tuple[_SEVERITY, str]] = field(default_factory=list)
    claimed: bool = False  # a finisher is on it

    @property
    def name(self) -> str:
        return str(self.run.name)

    @property
    def state(self) -> types.TransferState:
        return self.run.state


class RunsMixin:
    """DtsStandin's runs: the StartManualTransferRuns/Get/List/ListTransferLogs handlers, finishing
    runs, and the test-facing controls."""

    s3_endpoint: str | None
    s3_region: str
    bigquery: Any  # a devstack.bigquery_standin.BigQueryStandin, or None: no loads modelled
    finish_delay: float | None
    faults: Faults
    max_page_size: int
    _lock: threading.RLock
    _configs: dict[str, types.TransferConfig]
    _runs: dict[str, RunRecord]
    _outcomes: dict[str, Outcome]
    _s3_clients: dict[tuple[str, str], Any]
    _finishers: futures.ThreadPoolExecutor
    _pending_finishes: set[futures.Future[Any]]

    if TYPE_CHECKING:

        def _config(self, name: str) -> types.TransferConfig: ...  # ConfigsMixin

        def _notify(self, topic: str, run: types.TransferRun) -> None: ...  # NotificationsMixin

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
                    severity=severity,
                )
                for severity, text in record.messages
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

    def _load(
        self,
        config: types.TransferConfig,
        params: dict[str, Any],
        bucket: str,
        keys: list[str],
        table: str,
    ) -> str:
        """Load these files into the config's destination table: the log line of the job."""
        config_name = _CONFIG_RE.match(config.name)
        project = config_name[1] if config_name else ""
        s3 = self._s3(str(params["access_key_id"]), str(params["secret_access_key"]))
        files = read_files(s3, bucket, keys)
        return load(self.bigquery, project, config.destination_dataset_id, table, files)

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
        messages: list[tuple[_SEVERITY, str]] = []
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
        loaded = ""
        if error is None and matched and self.bigquery is not None:
            try:
                loaded = self._load(config, params, pattern.bucket, matched, table)
            except LoadFailed as exc:
                state = types.TransferState.FAILED
                error = status_pb2.Status(code=3, message=str(exc))
        if error is not None:
            messages.append((_SEVERITY.ERROR, str(error.message)))
        elif not matched:  # DTS's words for it: the run still ends SUCCEEDED
            messages.append((_SEVERITY.INFO, f"No new files found matching {data_path}"))
        else:
            loading = f"Loading {len(matched)} files from {data_path} into {table}"
            messages.append((_SEVERITY.INFO, loading))
            if loaded:
                messages.append((_SEVERITY.INFO, loaded))
        with self._lock:
            record.data_path = data_path
            record.destination_table = table
            record.matched_keys = matched
            record.listed_keys = sorted(listed)
            record.messages.extend(messages)
            record.run.state = state
            record.run.error_status = error or status_pb2.Status()
            record.run.end_time = _now()
            record.run.update_time = record.run.end_time
            topic = config.notification_pubsub_topic
            snapshot = _copy(record.run)
        if topic:
            self._notify(topic, snapshot)
        return record

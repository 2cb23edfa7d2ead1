"""BigQuery Data Transfer Service: our ``amazon_s3`` transfer configs and their manual runs.

Implements ``ports.TransferRunner`` (the fan-out) and ``sync.ConfigStore`` (``sync``) with the
official ``DataTransferServiceClient`` on its REST transport (the wire the local stand-in checks
is the wire deployed). The client is injected (built once in the wiring module). Every call passes
``retry=None`` and an explicit ``timeout``: retries are the caller's (``orchestrator.core.retry``),
and a hidden library retry would double them and blur the adoption in ``start_run``.

Our configs are those named ``rds2bq-{env}:{table_key}``; no call here changes any other config.
"""

from __future__ import annotations

import logging
import re
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import bigquery_datatransfer_v1 as dts
from google.protobuf import field_mask_pb2

from orchestrator.adapters.google_errors import (
    is_cause,
    local_client_options,
    outcome_unknown,
    translated,
)
from orchestrator.app.ports import AccessKeys, RunOutcome, Secrets, TransferConfig, primary_config
from orchestrator.config import Settings
from orchestrator.core.errors import PermanentError, TransientError
from orchestrator.core.keys import display_name_for, table_key_of
from orchestrator.core.redaction import redact
from orchestrator.core.timestamps import utc

log = logging.getLogger(__name__)

DATA_SOURCE = "amazon_s3"
TIMEOUT = 30.0
PAGE_SIZE = 1000
# What DTS assumes when a param is absent: a config without them is drift, not a match.
DTS_DEFAULT_FILE_FORMAT = "CSV"
DTS_DEFAULT_WRITE_DISPOSITION = "WRITE_APPEND"
DTS_DEFAULT_DECIMAL_TARGET_TYPES: tuple[str, ...] = ()  # unset: a DECIMAL loads only as NUMERIC
# Every field we own. An update rewrites all of them at once: ``params`` is one Struct anyway
# (any param change resends all params, secret included), and a full rewrite cannot leave a
# half-repaired config behind.
MANAGED_FIELDS = (
    "display_name",
    "destination_dataset_id",
    "params",
    "schedule_options",
    "notification_pubsub_topic",
)
# What a run's transfer logs say when it loaded nothing, as DTS writes it: "No new files found
# matching s3://..." (with or without a colon), or load jobs that all report zero records.
_NO_FILES = re.compile(r"No (?:new )?files found matching", re.IGNORECASE)
_RECORDS = re.compile(r"Number of records: (\d+)", re.IGNORECASE)
# The generated transports log whole request payloads at DEBUG, and a create/update request
# carries the secret access key. Pin their level so no logging setup (GOOGLE_SDK_PYTHON_LOGGING_
# SCOPE, a DEBUG root) can ever emit one.
_PAYLOAD_LOGGER = "google.cloud.bigquery_datatransfer_v1.services.data_transfer_service.transports"


def _translated(what: str) -> AbstractContextManager[None]:
    return translated("DTS", what)


class DtsTransfers:
    """``TransferRunner`` and ``ConfigStore`` over one project and location."""

    def __init__(
        self,
        client: dts.DataTransferServiceClient,
        *,
        parent: str,
        env: str,
        dataset: str,
        timeout: float = TIMEOUT,
        page_size: int = PAGE_SIZE,
        service_account: str = "",
    ) -> None:
        logging.getLogger(_PAYLOAD_LOGGER).setLevel(logging.INFO)
        self._client = client
        self.parent = parent  # projects/P/locations/L
        self.env = env
        self.dataset = dataset
        self.timeout = timeout
        self.page_size = page_size
        # Configs run as their creator unless a service account is named: set it in production
        # so the transfers do not stop when the person who ran sync leaves.
        self.service_account = service_account

    # ------------------------------------------------------------------ TransferRunner

    def configs_by_table(self) -> dict[str, TransferConfig]:
        grouped: dict[str, list[TransferConfig]] = {}
        for config in self.list_configs():
            if config.table_key:
                grouped.setdefault(config.table_key, []).append(config)
        return {key: primary_config(found) for key, found in grouped.items()}

    def start_run(self, config_name: str, run_time: datetime) -> str:
        request = dts.StartManualTransferRunsRequest(
            parent=config_name, requested_run_time=utc(run_time)
        )
        try:
            with _translated(f"start a run of {config_name}"):
                response = self._client.start_manual_transfer_runs(
                    request=request, retry=None, timeout=self.timeout
                )
        except TransientError as exc:
            # No answer says nothing about whether DTS started the run. Look before the caller
            # retries, so that a slow answer never becomes a second run of the same table.
            if outcome_unknown(exc):
                adopted = self._adopt(config_name, run_time)
                if adopted:
                    return adopted
            raise
        if not response.runs:
            raise PermanentError(f"DTS started no run of {config_name}")
        return str(response.runs[0].name)

    def find_run(self, config_name: str, run_time: datetime) -> str | None:
        wanted = utc(run_time)
        request = dts.ListTransferRunsRequest(parent=config_name, page_size=self.page_size)
        matches: list[Any] = []
        with _translated(f"list the runs of {config_name}"):
            for run in self._client.list_transfer_runs(
                request=request, retry=None, timeout=self.timeout
            ):
                if run.run_time and utc(run.run_time) == wanted:
                    matches.append(run)
        if not matches:
            return None
        # Several runs for one run time only if a start was retried blind: the latest is the one
        # whose notification is still to come.
        return str(max(matches, key=lambda r: r.schedule_time).name)

    def run_outcome(self, run_name: str) -> RunOutcome:
        with _translated(f"get transfer run {run_name}"):
            run = self._client.get_transfer_run(
                request=dts.GetTransferRunRequest(name=run_name), retry=None, timeout=self.timeout
            )
        return RunOutcome(
            state=dts.TransferState(run.state).name,
            error_code=int(run.error_status.code),
            error_message=redact(str(run.error_status.message)),
            started_at=utc(run.start_time) if run.start_time else None,
            finished_at=utc(run.end_time) if run.end_time else None,
        )

    def empty_load(self, run_name: str) -> str:
        request = dts.ListTransferLogsRequest(parent=run_name, page_size=self.page_size)
        zero_jobs: list[str] = []
        with _translated(f"list the transfer logs of {run_name}"):
            for message in self._client.list_transfer_logs(
                request=request, retry=None, timeout=self.timeout
            ):
                text = str(message.message_text)
                if _NO_FILES.search(text):
                    return redact(text)
                records = _RECORDS.search(text)
                if records and int(records.group(1)) > 0:
                    return ""  # some job loaded rows
                if records:
                    zero_jobs.append(text)
        return redact(zero_jobs[0]) if zero_jobs else ""

    def _adopt(self, config_name: str, run_time: datetime) -> str | None:
        try:
            return self.find_run(config_name, run_time)
        except TransientError:
            return None

    # ------------------------------------------------------------------ ConfigStore

    def list_configs(self) -> list[TransferConfig]:
        request = dts.ListTransferConfigsRequest(
            parent=self.parent, data_source_ids=[DATA_SOURCE], page_size=self.page_size
        )
        with _translated(f"list transfer configs in {self.parent}"):
            return [
                self._to_record(c)
                for c in self._client.list_transfer_configs(
                    request=request, retry=None, timeout=self.timeout
                )
            ]

    def create_config(self, config: TransferConfig, keys: AccessKeys) -> TransferConfig:
        self._require_ours(config)
        request = dts.CreateTransferConfigRequest(
            parent=self.parent,
            transfer_config=self._to_proto(config, keys),
            service_account_name=self.service_account,
        )
        with _translated(f"create the transfer config of {config.table_key}"):
            created = self._client.create_transfer_config(
                request=request, retry=None, timeout=self.timeout
            )
        return self._to_record(created)

    def update_config(self, name: str, config: TransferConfig, keys: AccessKeys) -> TransferConfig:
        self._require_ours(config)
        proto = self._to_proto(config, keys)
        proto.name = name
        paths: tuple[str, ...] = MANAGED_FIELDS
        if self.service_account:
            # The account a config runs as changes only when the mask names it: without this, a
            # config created by a person keeps running as that person after every sync.
            paths += ("service_account_name",)
        request = dts.UpdateTransferConfigRequest(
            transfer_config=proto,
            update_mask=field_mask_pb2.FieldMask(paths=paths),
            service_account_name=self.service_account,
        )
        with _translated(f"update the transfer config of {config.table_key}"):
            updated = self._client.update_transfer_config(
                request=request, retry=None, timeout=self.timeout
            )
        return self._to_record(updated)

    def delete_config(self, config: TransferConfig) -> None:
        self._require_ours(config)
        request = dts.DeleteTransferConfigRequest(name=config.name)
        try:
            with _translated(f"delete {config.name}"):
                self._client.delete_transfer_config(
                    request=request, retry=None, timeout=self.timeout
                )
        except PermanentError as exc:
            if not is_cause(exc, gexc.NotFound):
                raise
            # already gone: the goal of a delete is reached

    # ------------------------------------------------------------------ conversions

    def _require_ours(self, config: TransferConfig) -> None:
        if table_key_of(config.display_name, self.env) is None:
            raise PermanentError(
                f"refusing to change {config.name or config.display_name!r}: "
                f"it is not an rds2bq-{self.env} config"
            )

    def _to_proto(self, config: TransferConfig, keys: AccessKeys) -> dts.TransferConfig:
        return dts.TransferConfig(
            display_name=display_name_for(self.env, config.table_key),
            data_source_id=DATA_SOURCE,
            destination_dataset_id=self.dataset,
            params={
                "data_path": config.data_path,
                "destination_table_name_template": config.destination_table,
                "file_format": config.file_format,
                "write_disposition": config.write_disposition,
                # A list of strings, as BigQuery's decimalTargetTypes (docs/platform.md)
                "decimal_target_types": list(config.decimal_target_types),
                "access_key_id": keys.access_key_id,
                "secret_access_key": keys.secret_access_key,
            },
            schedule_options=dts.ScheduleOptions(
                disable_auto_scheduling=config.auto_scheduling_disabled
            ),
            notification_pubsub_topic=config.notification_topic,
        )

    def _to_record(self, proto: dts.TransferConfig) -> TransferConfig:
        params = dict(proto.params)
        return TransferConfig(
            name=str(proto.name),
            display_name=str(proto.display_name),
            table_key=table_key_of(proto.display_name, self.env) or "",
            destination_table=str(params.get("destination_table_name_template", "")),
            data_path=str(params.get("data_path", "")),
            notification_topic=str(proto.notification_pubsub_topic),
            file_format=str(params.get("file_format", DTS_DEFAULT_FILE_FORMAT)),
            write_disposition=str(params.get("write_disposition", DTS_DEFAULT_WRITE_DISPOSITION)),
            decimal_target_types=_decimal_target_types(params.get("decimal_target_types")),
            auto_scheduling_disabled=bool(proto.schedule_options.disable_auto_scheduling),
            access_key_id=str(params.get("access_key_id", "")),
        )


def _decimal_target_types(value: Any) -> tuple[str, ...]:
    """The param as we set it (a list), or as a comma-separated string (set by hand or by a
    console that writes it so), in order; absent: DTS's default."""
    if value is None:
        return DTS_DEFAULT_DECIMAL_TARGET_TYPES
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return tuple(t.strip().upper() for t in items if t.strip())


def build_client(settings: Settings) -> dts.DataTransferServiceClient:
    """The client on the REST transport: production's endpoint and default credentials, or
    (``RDS2BQ_DTS_ENDPOINT``, local stack only) the stand-in, anonymously."""
    return dts.DataTransferServiceClient(
        transport="rest", **local_client_options(_local_endpoint(settings.dts_endpoint))
    )


def _local_endpoint(setting: str) -> str:
    """``host:port``, ``http://host:port`` or that with the API's ``/v1/`` (all seen in
    operators' settings) as the client's ``api_endpoint``, which takes no path."""
    endpoint = setting.strip().rstrip("/")
    return endpoint.removesuffix("/v1")


def build_transfer_runner(
    settings: Settings,
    secrets: Secrets | None = None,
    client: dts.DataTransferServiceClient | None = None,
) -> DtsTransfers:
    """The adapter for these settings. ``secrets`` is unused (``sync`` passes the keys per call);
    it is accepted so that callers need not know that."""
    del secrets
    return DtsTransfers(
        client or build_client(settings),
        parent=settings.dts_parent,
        env=settings.env,
        dataset=settings.bq_dataset,
        service_account=settings.dts_service_account,
    )

"""BigQuery Data Transfer Service: our ``amazon_s3`` transfer configs and their manual runs.

Implements ``ports.TransferRunner`` (the fan-out) and ``sync.ConfigStore`` (``sync``) over the DTS
REST API v1 (``google_http``; see there for why not the SDK). Every call has an explicit
``timeout`` and no retry of its own: retries are the caller's (``orchestrator.retry``), and a
hidden retry would double them and blur the DEADLINE_EXCEEDED adoption in ``start_run``.

Create and update requests carry the secret access key in their body: nothing here logs a body,
and ``GoogleHttp`` logs nothing (urllib3 logs at most the URL, which holds no secret).

Our configs are those named ``rds2bq-{env}:{table_key}``; no call here changes any other config.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from orchestrator.adapters.google_http import GoogleHttp, cause_status, google_api, translated
from orchestrator.config import Settings
from orchestrator.errors import PermanentError, TransientError
from orchestrator.model import utc
from orchestrator.notifications import format_timestamp, parse_timestamp
from orchestrator.ports import RunOutcome, Secrets, TransferConfig
from orchestrator.sync import AccessKeys, display_name_for, primary_config, table_key_of

ENDPOINT = "https://bigquerydatatransfer.googleapis.com/v1/"
DATA_SOURCE = "amazon_s3"
TIMEOUT = 30.0
PAGE_SIZE = 1000
MAX_PAGES = 10_000  # a server that keeps sending page tokens must not keep us listing forever
# What DTS assumes when a param is absent: a config without them is drift, not a match.
DTS_DEFAULT_FILE_FORMAT = "CSV"
DTS_DEFAULT_WRITE_DISPOSITION = "WRITE_APPEND"
# Every field we own, as ``updateMask`` paths (FieldMask's JSON form is camelCase, as the REST
# reference's example and Google's own REST clients spell it). An update rewrites all of them at
# once: ``params`` is one Struct anyway (any param change resends all params, secret included),
# and a full rewrite cannot leave a half-repaired config behind.
MANAGED_FIELDS = (
    "displayName",
    "destinationDatasetId",
    "params",
    "scheduleOptions",
    "notificationPubsubTopic",
)
# TransferState numbers, should a server answer with integer enums.
_STATES = {
    0: "TRANSFER_STATE_UNSPECIFIED",
    2: "PENDING",
    3: "RUNNING",
    4: "SUCCEEDED",
    5: "FAILED",
    6: "CANCELLED",
}
_NEVER = datetime.min.replace(tzinfo=UTC)


def _translated(what: str) -> AbstractContextManager[None]:
    return translated("DTS", what)


def rfc3339(moment: datetime) -> str:
    """An aware datetime as the REST API writes times: UTC, ``Z``, microseconds if any."""
    return format_timestamp(utc(moment))


def parse_rfc3339(text: Any) -> datetime | None:
    """A time as the REST API answers it (up to nanoseconds; kept to microseconds), or None when
    absent. Anything else is not DTS speaking: PermanentError."""
    if text in (None, ""):
        return None
    try:
        return parse_timestamp(str(text))
    except ValueError as exc:
        raise PermanentError(f"DTS answered an unreadable time {text!r}") from exc


def _path(name: str) -> str:
    """A resource name as a URL path (its slashes are the path's)."""
    return quote(name, safe="/")


class DtsTransfers:
    """``TransferRunner`` and ``ConfigStore`` over one project and location."""

    def __init__(
        self,
        http: GoogleHttp,
        *,
        parent: str,
        env: str,
        dataset: str,
        timeout: float = TIMEOUT,
        page_size: int = PAGE_SIZE,
        service_account: str = "",
    ) -> None:
        self._http = http
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
        try:
            with _translated(f"start a run of {config_name}"):
                answer = self._http.call(
                    "POST",
                    f"{_path(config_name)}:startManualRuns",
                    {"requestedRunTime": rfc3339(run_time)},
                    timeout=self.timeout,
                )
        except TransientError as exc:
            # A deadline says nothing about whether DTS started the run. Look before the caller
            # retries, so that a slow answer never becomes a second run of the same table.
            if cause_status(exc) == "DEADLINE_EXCEEDED":
                adopted = self._adopt(config_name, run_time)
                if adopted:
                    return adopted
            raise
        runs = answer.get("runs") if isinstance(answer, Mapping) else None
        if not runs or not isinstance(runs[0], Mapping) or not runs[0].get("name"):
            raise PermanentError(f"DTS started no run of {config_name}")
        return str(runs[0]["name"])

    def find_run(self, config_name: str, run_time: datetime) -> str | None:
        wanted = utc(run_time)
        matches: list[tuple[datetime, str]] = []
        runs = self._list(
            f"{_path(config_name)}/runs", "transferRuns", {}, f"list the runs of {config_name}"
        )
        for run in runs:
            if parse_rfc3339(run.get("runTime")) == wanted:
                scheduled = parse_rfc3339(run.get("scheduleTime")) or _NEVER
                matches.append((scheduled, str(run.get("name", ""))))
        if not matches:
            return None
        # Several runs for one run time only if a start was retried blind: the latest is the one
        # whose notification is still to come.
        return max(matches)[1]

    def run_outcome(self, run_name: str) -> RunOutcome:
        with _translated(f"get transfer run {run_name}"):
            run = self._http.call("GET", _path(run_name), timeout=self.timeout)
        state = run.get("state", 0)
        error = run.get("errorStatus") or {}
        return RunOutcome(
            state=_STATES.get(state, str(state)) if isinstance(state, int) else str(state),
            error_code=int(error.get("code", 0) or 0),
            error_message=str(error.get("message", "")),
            started_at=parse_rfc3339(run.get("startTime")),
            finished_at=parse_rfc3339(run.get("endTime")),
        )

    def _adopt(self, config_name: str, run_time: datetime) -> str | None:
        try:
            return self.find_run(config_name, run_time)
        except TransientError:
            return None

    # ------------------------------------------------------------------ ConfigStore

    def list_configs(self) -> list[TransferConfig]:
        found = self._list(
            f"{_path(self.parent)}/transferConfigs",
            "transferConfigs",
            {"dataSourceIds": [DATA_SOURCE]},
            f"list transfer configs in {self.parent}",
        )
        return [self._to_record(c) for c in found]

    def create_config(self, config: TransferConfig, keys: AccessKeys) -> TransferConfig:
        self._require_ours(config)
        with _translated(f"create the transfer config of {config.table_key}"):
            created = self._http.call(
                "POST",
                f"{_path(self.parent)}/transferConfigs",
                self._to_resource(config, keys),
                params=self._account_param(),
                timeout=self.timeout,
            )
        return self._to_record(created)

    def update_config(self, name: str, config: TransferConfig, keys: AccessKeys) -> TransferConfig:
        self._require_ours(config)
        mask: tuple[str, ...] = MANAGED_FIELDS
        if self.service_account:
            # The account a config runs as changes only when the mask names it: without this, a
            # config created by a person keeps running as that person after every sync.
            mask += ("serviceAccountName",)
        params: dict[str, str] = {"updateMask": ",".join(mask), **self._account_param()}
        with _translated(f"update the transfer config of {config.table_key}"):
            updated = self._http.call(
                "PATCH",
                _path(name),
                self._to_resource(config, keys),
                params=params,
                timeout=self.timeout,
            )
        return self._to_record(updated)

    def delete_config(self, config: TransferConfig) -> None:
        self._require_ours(config)
        try:
            with _translated(f"delete {config.name}"):
                self._http.call("DELETE", _path(config.name), timeout=self.timeout)
        except PermanentError as exc:
            if cause_status(exc) != "NOT_FOUND":
                raise
            # already gone: the goal of a delete is reached

    # ------------------------------------------------------------------ plumbing

    def _list(
        self, path: str, key: str, query: Mapping[str, str | list[str]], what: str
    ) -> list[Mapping[str, Any]]:
        """Every item of a paginated list, one call per page (each bounded by the timeout)."""
        items: list[Mapping[str, Any]] = []
        token = ""
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            params: dict[str, str | int | list[str]] = {**query, "pageSize": self.page_size}
            if token:
                params["pageToken"] = token
            with _translated(what):
                answer = self._http.call("GET", path, params=params, timeout=self.timeout)
            items.extend(i for i in answer.get(key, ()) if isinstance(i, Mapping))
            token = str(answer.get("nextPageToken", "") or "")
            if not token:
                return items
            if token in seen:
                raise PermanentError(f"DTS {what}: the page token {token!r} came back twice")
            seen.add(token)
        raise PermanentError(f"DTS {what}: more than {MAX_PAGES} pages")

    def _account_param(self) -> dict[str, str]:
        return {"serviceAccountName": self.service_account} if self.service_account else {}

    def _require_ours(self, config: TransferConfig) -> None:
        if table_key_of(config.display_name, self.env) is None:
            raise PermanentError(
                f"refusing to change {config.name or config.display_name!r}: "
                f"it is not an rds2bq-{self.env} config"
            )

    def _to_resource(self, config: TransferConfig, keys: AccessKeys) -> dict[str, Any]:
        """The TransferConfig resource as the REST API takes it (camelCase JSON)."""
        return {
            "displayName": display_name_for(self.env, config.table_key),
            "dataSourceId": DATA_SOURCE,
            "destinationDatasetId": self.dataset,
            "params": {
                "data_path": config.data_path,
                "destination_table_name_template": config.destination_table,
                "file_format": config.file_format,
                "write_disposition": config.write_disposition,
                "access_key_id": keys.access_key_id,
                "secret_access_key": keys.secret_access_key,
            },
            "scheduleOptions": {"disableAutoScheduling": config.auto_scheduling_disabled},
            "notificationPubsubTopic": config.notification_topic,
        }

    def _to_record(self, resource: Mapping[str, Any]) -> TransferConfig:
        params = resource.get("params") or {}
        schedule = resource.get("scheduleOptions") or {}
        display_name = str(resource.get("displayName", ""))
        return TransferConfig(
            name=str(resource.get("name", "")),
            display_name=display_name,
            table_key=table_key_of(display_name, self.env) or "",
            destination_table=str(params.get("destination_table_name_template", "")),
            data_path=str(params.get("data_path", "")),
            notification_topic=str(resource.get("notificationPubsubTopic", "")),
            file_format=str(params.get("file_format", DTS_DEFAULT_FILE_FORMAT)),
            write_disposition=str(params.get("write_disposition", DTS_DEFAULT_WRITE_DISPOSITION)),
            auto_scheduling_disabled=bool(schedule.get("disableAutoScheduling", False)),
            access_key_id=str(params.get("access_key_id", "")),
        )


def dts_http(settings: Settings) -> GoogleHttp:
    """The production endpoint with the default credentials, or (``RDS2BQ_DTS_ENDPOINT``, local
    stack only: ``host:port`` or ``http://host:port``) the stand-in, without a token."""
    return google_api(ENDPOINT, settings.dts_endpoint.strip().rstrip("/"), "v1/")


def build_transfer_runner(
    settings: Settings,
    secrets: Secrets | None = None,
    http: GoogleHttp | None = None,
) -> DtsTransfers:
    """The adapter for these settings. ``secrets`` is unused (``sync`` passes the keys per call);
    it is accepted so that callers need not know that."""
    del secrets
    return DtsTransfers(
        http or dts_http(settings),
        parent=settings.dts_parent,
        env=settings.env,
        dataset=settings.bq_dataset,
        service_account=settings.dts_service_account,
    )

"""Transfer configs: stored in memory with their secrets, validated as DTS validates them, and
served to clients without the secrets."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.cloud.bigquery_datatransfer_v1 import types
from google.protobuf import empty_pb2, field_mask_pb2

from devstack.dts.errors import RpcFault, _invalid
from devstack.dts.paths import TemplateError, compile_data_path, render_template
from devstack.dts.rest import _page

if TYPE_CHECKING:
    from devstack.dts.runs import RunRecord

DATA_SOURCE = "amazon_s3"
REQUIRED_PARAMS = (
    "data_path",
    "destination_table_name_template",
    "access_key_id",
    "secret_access_key",
)
FILE_FORMATS = ("CSV", "JSON", "AVRO", "PARQUET", "ORC")
WRITE_DISPOSITIONS = ("WRITE_APPEND", "WRITE_TRUNCATE")
DECIMAL_TARGET_TYPES = ("NUMERIC", "BIGNUMERIC", "STRING")  # BigQuery's DecimalTargetType
SECRET_PARAMS = frozenset({"secret_access_key"})  # stored, never echoed (Get/List/runs/Pub/Sub)
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
_TOPIC_RE = re.compile(r"^projects/[^/]+/topics/[^/]+$")


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


def _validate_decimal_target_types(value: Any) -> None:
    """Optional; a list of strings (or one comma-separated string), each a DecimalTargetType
    at most once, as BigQuery's load jobs take it."""
    if value is None:
        return
    items = value.split(",") if isinstance(value, str) else list(value)
    if not items or not all(isinstance(t, str) for t in items):
        raise _invalid("decimal_target_types must be a non-empty list of strings")
    names = [t.strip() for t in items]
    unknown = [t for t in names if t not in DECIMAL_TARGET_TYPES]
    if unknown or len(set(names)) != len(names):
        raise _invalid(
            f"decimal_target_types {names} must name each of {', '.join(DECIMAL_TARGET_TYPES)} "
            "at most once"
        )


class ConfigsMixin:
    """DtsStandin's transfer configs: the Create/Get/List/Update/Delete handlers and the
    test-facing views."""

    max_page_size: int
    _lock: threading.RLock
    _configs: dict[str, types.TransferConfig]
    _runs: dict[str, RunRecord]

    # ------------------------------------------------------------------ test controls

    def configs(self) -> list[types.TransferConfig]:
        """Copies of the stored configs, as clients see them (no secrets)."""
        with self._lock:
            return [_public_config(c) for c in self._configs.values()]

    def stored_params(self, config_name: str) -> dict[str, Any]:
        """Every stored param, secret included: for tests that check a key rotation landed."""
        with self._lock:
            return dict(self._configs[config_name].params)

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
        _validate_decimal_target_types(params.get("decimal_target_types"))
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

"""The REST format: the routes (``google.api.http`` rules), requests parsed into the client
library's own message types (gRPC transcoding), responses and errors encoded as Google answers,
and list pagination."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from google.cloud.bigquery_datatransfer_v1 import types
from google.protobuf import empty_pb2, field_mask_pb2, json_format
from google.protobuf.descriptor import FieldDescriptor

from devstack.dts.errors import RpcFault, _invalid

MAX_PAGE_SIZE = 1000
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

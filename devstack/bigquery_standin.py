"""A minimal BigQuery REST stand-in: the dataset and table calls ``sync``, the preflight and the
load checks make.

``orchestrator.adapters.bigquery`` talks to it with ``RDS2BQ_BQ_ENDPOINT=standin.endpoint``, as
would the official ``google-cloud-bigquery`` client with ``client_options={"api_endpoint": ...}``.
It serves ``datasets.get/insert`` and ``tables.get/insert/list/delete/patch/update`` under
``/bigquery/v2/projects/P/...`` with BigQuery's own error body (``{"error": {"code", "message",
"errors": [{"reason"}], "status"}}``, the status as Google's canonical name).

Tables keep what BigQuery's API shows of them: ``schema.fields``, ``numRows`` (a string, as the
API writes int64), and an ``etag`` that changes with every change; a patch or update sent with
``If-Match`` (the SDK's ``update_table`` sends the etag it read) fails 412 when the table changed
since. A schema change may only add NULLABLE (or REPEATED) fields or relax REQUIRED to NULLABLE,
as BigQuery's: a removed or retyped field is refused 400 ("Provided Schema does not match Table").
``load_table`` is how the DTS stand-in loads a table (``devstack.dts.loads``): a truncating load
replaces the rows and the schema. Everything is kept in memory; ``fail_next`` answers the next
calls with an HTTP error (503 by default).
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from devstack.keepalive import KeepAliveHandler, KeepAliveServer

_DATASETS = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/?$")
_DATASET = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)$")
_TABLES = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/?$")
_TABLE = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)$")
_STATUSES = {
    400: "INVALID_ARGUMENT",
    412: "FAILED_PRECONDITION",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_REASONS = {
    404: "notFound",
    409: "duplicate",
    400: "invalid",
    412: "conditionNotMet",
    503: "backendError",
    500: "internalError",
    429: "rateLimitExceeded",
    403: "accessDenied",
}


# Field types as the API takes them (legacy and standard SQL names alike), by their legacy name,
# which is what BigQuery's API answers with.
_TYPES = {
    **{t: t for t in ("STRING", "BYTES", "INTEGER", "FLOAT", "BOOLEAN", "TIMESTAMP", "DATE")},
    **{t: t for t in ("TIME", "DATETIME", "NUMERIC", "BIGNUMERIC", "GEOGRAPHY", "JSON", "RECORD")},
    "INT64": "INTEGER",
    "FLOAT64": "FLOAT",
    "BOOL": "BOOLEAN",
    "BIGDECIMAL": "BIGNUMERIC",
    "DECIMAL": "NUMERIC",
    "STRUCT": "RECORD",
}


def _millis() -> str:
    return str(int(datetime.now(UTC).timestamp() * 1000))


def _fields(schema: Any) -> list[dict[str, Any]]:
    fields = schema.get("fields") if isinstance(schema, dict) else None
    return [f for f in fields or [] if isinstance(f, dict)]


def _schema_problem(table_id: str, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> str:
    """Why BigQuery would refuse to change a table's schema from ``old`` to ``new`` ('' if not)."""
    refused = f"Provided Schema does not match Table {table_id}."
    by_name = {str(f.get("name", "")).lower(): f for f in new}
    for column in new:
        if _type(column) not in _TYPES:
            return f"Invalid value for type: {column.get('type')} is not a valid value"
    for column in old:
        name = str(column.get("name", ""))
        after = by_name.pop(name.lower(), None)
        if after is None:
            return f"{refused} Field {name} is missing in new schema"
        before_type, after_type = _TYPES[_type(column)], _TYPES[_type(after)]
        if before_type != after_type:
            return f"{refused} Field {name} has changed type from {before_type} to {after_type}"
        before_mode, after_mode = _mode(column), _mode(after)
        if before_mode != after_mode and (before_mode, after_mode) != ("REQUIRED", "NULLABLE"):
            return f"{refused} Field {name} has changed mode from {before_mode} to {after_mode}"
    for column in by_name.values():  # the added ones
        if _mode(column) == "REQUIRED":
            return f"{refused} Cannot add required field {column.get('name')} to an existing schema"
    return ""


def _type(column: dict[str, Any]) -> str:
    return str(column.get("type", "")).upper()


def _mode(column: dict[str, Any]) -> str:
    return str(column.get("mode") or "NULLABLE").upper()


def _answer_fields(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fields as the API answers with them: legacy type names, a mode on each."""
    return [{**f, "type": _TYPES[_type(f)], "mode": _mode(f)} for f in fields]


@dataclass
class BigQueryState:
    datasets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    tables: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    failures: deque[int] = field(default_factory=deque)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    lock: threading.Lock = field(default_factory=threading.Lock)
    versions: int = 0  # a counter the etags are made from

    def changed(self, table: dict[str, Any]) -> None:
        """A table resource changed (under the lock): a new etag and modification time."""
        self.versions += 1
        table["etag"] = f"stand-in-{self.versions}"
        table["lastModifiedTime"] = _millis()


class _Server(KeepAliveServer):
    pass


class _Handler(KeepAliveHandler):
    state: BigQueryState  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests read state, not access logs

    # ------------------------------------------------------------------ helpers

    def _send(self, status: int, body: dict[str, Any] | None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        reason = _REASONS.get(status, "invalid")
        self._send(
            status,
            {
                "error": {
                    "code": status,
                    "message": message,
                    "errors": [{"message": message, "domain": "global", "reason": reason}],
                    "status": _STATUSES.get(status, "UNKNOWN"),
                }
            },
        )

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        value = json.loads(raw or b"{}")
        return value if isinstance(value, dict) else {}

    def _begin(self) -> str | None:
        path = urlsplit(self.path).path
        with self.state.lock:
            self.state.requests.append((self.command, path))
            status = self.state.failures.popleft() if self.state.failures else None
        if status is not None:
            self._error(status, f"injected HTTP {status}")
            return None
        return path

    # ------------------------------------------------------------------ verbs

    def do_GET(self) -> None:
        path = self._begin()
        if path is None:
            return
        s = self.state
        if m := _DATASET.match(path):
            with s.lock:
                dataset = s.datasets.get((m[1], m[2]))
            if dataset is None:
                return self._error(404, f"Not found: Dataset {m[1]}:{m[2]}")
            return self._send(200, dataset)
        if m := _TABLE.match(path):
            with s.lock:
                table = s.tables.get((m[1], m[2], m[3]))
            if table is None:
                return self._error(404, f"Not found: Table {m[1]}:{m[2]}.{m[3]}")
            return self._send(200, table)
        if m := _TABLES.match(path):
            with s.lock:
                if (m[1], m[2]) not in s.datasets:
                    return self._error(404, f"Not found: Dataset {m[1]}:{m[2]}")
                tables = [t for k, t in sorted(s.tables.items()) if k[:2] == (m[1], m[2])]
            return self._send(
                200, {"kind": "bigquery#tableList", "tables": tables, "totalItems": len(tables)}
            )
        return self._error(404, f"stand-in does not serve GET {path}")

    def do_POST(self) -> None:
        path = self._begin()
        if path is None:
            return
        s = self.state
        body = self._body()
        if m := _DATASETS.match(path):
            ref = body.get("datasetReference") or {}
            key = (ref.get("projectId") or m[1], ref.get("datasetId", ""))
            if not key[1]:
                return self._error(400, "datasetReference.datasetId is required")
            with s.lock:
                if key in s.datasets:
                    return self._error(409, f"Already Exists: Dataset {key[0]}:{key[1]}")
                s.datasets[key] = _dataset_resource(*key, body.get("location") or "US")
                return self._send(200, s.datasets[key])
        if m := _TABLES.match(path):
            ref = body.get("tableReference") or {}
            table_id = ref.get("tableId", "")
            if not table_id:
                return self._error(400, "tableReference.tableId is required")
            key = (m[1], m[2], table_id)
            with s.lock:
                dataset = s.datasets.get((m[1], m[2]))
                if dataset is None:
                    return self._error(404, f"Not found: Dataset {m[1]}:{m[2]}")
                if key in s.tables:
                    return self._error(409, f"Already Exists: Table {m[1]}:{m[2]}.{table_id}")
                fields = _fields(body.get("schema"))
                problem = _schema_problem(f"{m[1]}:{m[2]}.{table_id}", [], fields)
                if problem:
                    return self._error(400, problem)
                resource = _with_schema(dict(body), fields)
                resource.update(
                    {
                        "kind": "bigquery#table",
                        "id": f"{m[1]}:{m[2]}.{table_id}",
                        "tableReference": {
                            "projectId": m[1],
                            "datasetId": m[2],
                            "tableId": table_id,
                        },
                        "type": "TABLE",
                        "creationTime": _millis(),
                        "location": dataset["location"],
                        "numRows": "0",
                        "numBytes": "0",
                    }
                )
                s.changed(resource)
                s.tables[key] = resource
                return self._send(200, resource)
        return self._error(404, f"stand-in does not serve POST {path}")

    def do_PATCH(self) -> None:
        self._update(replace=False)

    def do_PUT(self) -> None:
        self._update(replace=True)

    def _update(self, replace: bool) -> None:
        """tables.patch (the fields sent change) and tables.update (the resource is replaced)."""
        path = self._begin()
        if path is None:
            return
        s = self.state
        body = self._body()
        m = _TABLE.match(path)
        if m is None:
            return self._error(404, f"stand-in does not serve {self.command} {path}")
        table_id = f"{m[1]}:{m[2]}.{m[3]}"
        with s.lock:
            table = s.tables.get((m[1], m[2], m[3]))
            if table is None:
                return self._error(404, f"Not found: Table {table_id}")
            expected = self.headers.get("If-Match")
            if expected and expected != table["etag"]:
                return self._error(412, "Precondition check failed.")
            if "schema" in body or replace:
                fields = _fields(body.get("schema"))
                problem = _schema_problem(table_id, _fields(table.get("schema")), fields)
                if problem:
                    return self._error(400, problem)
                body = _with_schema(body, fields)
            kept = {k: table[k] for k in _SERVER_FIELDS if k in table}
            updated = {**({} if replace else table), **body, **kept}
            s.changed(updated)
            s.tables[(m[1], m[2], m[3])] = updated
            return self._send(200, updated)

    def do_DELETE(self) -> None:
        path = self._begin()
        if path is None:
            return
        s = self.state
        if m := _TABLE.match(path):
            with s.lock:
                if s.tables.pop((m[1], m[2], m[3]), None) is None:
                    return self._error(404, f"Not found: Table {m[1]}:{m[2]}.{m[3]}")
            return self._send(204, None)
        return self._error(404, f"stand-in does not serve DELETE {path}")


def _with_schema(resource: dict[str, Any], fields: list[dict[str, Any]]) -> dict[str, Any]:
    """The resource with these fields as its schema (none: no ``schema``, as BigQuery answers
    for a table created without one)."""
    resource = {k: v for k, v in resource.items() if k != "schema"}
    if fields:
        resource["schema"] = {"fields": _answer_fields(fields)}
    return resource


# What a patch or an update cannot change: BigQuery keeps its own.
_SERVER_FIELDS = (
    "kind",
    "id",
    "tableReference",
    "type",
    "creationTime",
    "location",
    "numRows",
    "numBytes",
)


def _dataset_resource(project: str, dataset: str, location: str) -> dict[str, Any]:
    return {
        "kind": "bigquery#dataset",
        "id": f"{project}:{dataset}",
        "datasetReference": {"projectId": project, "datasetId": dataset},
        "location": location,
        "creationTime": _millis(),
        "etag": "stand-in",
    }


class BigQueryStandin:
    def __init__(self, server: _Server, state: BigQueryState) -> None:
        self._server = server
        self.state = state
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="bigquery-standin", daemon=True
        )
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_dataset(self, project: str, dataset: str, location: str = "asia-northeast1") -> None:
        with self.state.lock:
            self.state.datasets[(project, dataset)] = _dataset_resource(project, dataset, location)

    def table(self, project: str, dataset: str, table: str) -> dict[str, Any] | None:
        with self.state.lock:
            return self.state.tables.get((project, dataset, table))

    def table_ids(self, project: str, dataset: str) -> list[str]:
        with self.state.lock:
            return sorted(k[2] for k in self.state.tables if k[:2] == (project, dataset))

    def load_table(
        self, project: str, dataset: str, table: str, rows: int, fields: list[dict[str, Any]]
    ) -> None:
        """A truncating load's effect, as DTS's load job leaves a non-partitioned table: ``rows``
        rows, and the files' schema in place of the table's (``fields`` as the API writes them:
        ``{"name", "type", "mode"}``). Raises LookupError, in BigQuery's words, if it is absent."""
        with self.state.lock:
            key = (project, dataset, table)
            if key not in self.state.tables:
                raise LookupError(f"Not found: Table {project}:{dataset}.{table}")
            loaded = _with_schema(self.state.tables[key], fields)
            loaded["numRows"] = str(rows)
            self.state.changed(loaded)
            self.state.tables[key] = loaded

    def drop_table(self, project: str, dataset: str, table: str) -> None:
        with self.state.lock:
            self.state.tables.pop((project, dataset, table), None)

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        with self.state.lock:
            self.state.failures.extend([status] * n)

    def stop(self) -> None:
        """Stop serving; open keep-alive connections are closed too, so that no pooled client
        talks to a stopped stand-in."""
        self._server.stop()


def start_bigquery(port: int = 0) -> BigQueryStandin:
    """Serve the stand-in on 127.0.0.1:``port`` (0: a free port) in a daemon thread."""
    state = BigQueryState()
    handler = type("BigQueryHandler", (_Handler,), {"state": state})
    server = _Server(("127.0.0.1", port), handler)
    return BigQueryStandin(server, state)

"""A minimal BigQuery REST stand-in: the dataset and table calls ``sync`` makes.

``orchestrator.adapters.bigquery`` talks to it with ``RDS2BQ_BQ_ENDPOINT=standin.endpoint``, as
would the official ``google-cloud-bigquery`` client with ``client_options={"api_endpoint": ...}``.
It serves ``datasets.get/insert`` and ``tables.get/insert/list/delete`` under
``/bigquery/v2/projects/P/...`` with BigQuery's own error body (``{"error": {"code", "message",
"errors": [{"reason"}], "status"}}``, the status as Google's canonical name). Everything is kept in
memory; ``fail_next`` answers the next calls with an HTTP error (503 by default).
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_DATASETS = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/?$")
_DATASET = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)$")
_TABLES = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/?$")
_TABLE = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)$")
_STATUSES = {
    400: "INVALID_ARGUMENT",
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
    503: "backendError",
    500: "internalError",
    429: "rateLimitExceeded",
    403: "accessDenied",
}


def _millis() -> str:
    return str(int(datetime.now(UTC).timestamp() * 1000))


@dataclass
class BigQueryState:
    datasets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    tables: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    failures: deque[int] = field(default_factory=deque)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
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
                resource = dict(body)
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
                        "etag": "stand-in",
                    }
                )
                s.tables[key] = resource
                return self._send(200, resource)
        return self._error(404, f"stand-in does not serve POST {path}")

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
    def __init__(self, server: ThreadingHTTPServer, state: BigQueryState) -> None:
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

    def drop_table(self, project: str, dataset: str, table: str) -> None:
        with self.state.lock:
            self.state.tables.pop((project, dataset, table), None)

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        with self.state.lock:
            self.state.failures.extend([status] * n)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def start_bigquery(port: int = 0) -> BigQueryStandin:
    """Serve the stand-in on 127.0.0.1:``port`` (0: a free port) in a daemon thread."""
    state = BigQueryState()
    handler = type("BigQueryHandler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return BigQueryStandin(server, state)

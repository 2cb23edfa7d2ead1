"""Firestore's REST API v1, just the methods the run ledger uses, over ``GoogleHttp``.

Why not ``google-cloud-firestore``: cold start (issue 7, see ``google_http``). Production serves
this API at ``https://firestore.googleapis.com/v1/`` and the official emulator at
``http://$FIRESTORE_EMULATOR_HOST/v1/``; both speak the same JSON.

Every write goes through ``commit``, as the SDK's ``create``/``set``/``update``/``delete`` do: a
commit is atomic, so when one create of a batch finds its document already there the whole commit
fails with ``ALREADY_EXISTS`` and nothing of it is written. Errors are ``ApiError`` with Google's
status; the caller decides what a status means (``translated`` at the adapter boundary).

Retries: the SDK retried transient faults inside each call (up to 60 s), and a poll relied on it to
ride out a Firestore blip (the e2e drill restarts the emulator between polls). Here too, bounded:
reads on any transient status; a commit only when it cannot have been applied (the connection was
refused, or the request was throttled), because a create retried after an unknown outcome would
find its own document and report it as someone else's.

Values: Python <-> Firestore ``Value`` JSON. ``None``, ``bool``, ``int`` (a string in JSON: int64),
``float``, ``str`` (``StrEnum`` included), ``bytes``, ``datetime`` (a timestamp; naive means UTC,
as in the SDK; read back as an aware UTC datetime, nanoseconds truncated to microseconds), lists
and tuples (arrays; read back as lists), and dicts with ``str`` keys (maps).
"""

from __future__ import annotations

import base64
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.adapters.google_http import (
    ApiError,
    FixedToken,
    GoogleHttp,
    google_api,
    quote_path,
)
from orchestrator.notifications import format_timestamp, parse_timestamp
from orchestrator.retry import Backoff

PRODUCTION_URL = "https://firestore.googleapis.com/v1/"
DEFAULT_DATABASE = "(default)"

Json = dict[str, Any]
Filter = tuple[str, str, Any]  # (field, operator, value), e.g. ("state", "IN", ["PENDING"])

OPERATORS = frozenset(
    {
        "LESS_THAN",
        "LESS_THAN_OR_EQUAL",
        "GREATER_THAN",
        "GREATER_THAN_OR_EQUAL",
        "EQUAL",
        "NOT_EQUAL",
        "ARRAY_CONTAINS",
        "IN",
        "ARRAY_CONTAINS_ANY",
        "NOT_IN",
    }
)
DIRECTIONS = frozenset({"ASCENDING", "DESCENDING"})
# About 8 s of sleep expected, 30 s at most: well inside a function's timeout.
BACKOFF = Backoff(attempts=8, base_seconds=0.2, cap_seconds=5.0, budget_seconds=30.0)
_READ_RETRY = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "RESOURCE_EXHAUSTED"})
_INT64 = range(-(2**63), 2**63)
_SIMPLE_FIELD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


def firestore_http(emulator_host: str = "", environ: Mapping[str, str] | None = None) -> GoogleHttp:
    """Firestore with the default credentials, or the emulator at ``emulator_host``
    (``FIRESTORE_EMULATOR_HOST``) as its admin, ``owner``: full access, rules bypassed."""
    return google_api(PRODUCTION_URL, emulator_host, "v1/", FixedToken("owner"), environ)


# --------------------------------------------------------------------------- values


def encode_value(value: Any) -> Json:
    """One Python value as a Firestore ``Value``."""
    if value is None:
        return {"nullValue": None}
    if isinstance(value, bool):  # before int: a bool is an int
        return {"booleanValue": value}
    if isinstance(value, int):
        if value not in _INT64:
            raise ValueError(f"{value} does not fit Firestore's 64-bit integers")
        return {"integerValue": str(value)}
    if isinstance(value, float):
        if math.isfinite(value):
            return {"doubleValue": value}
        return {
            "doubleValue": "NaN"
            if math.isnan(value)
            else ("Infinity" if value > 0 else "-Infinity")
        }
    if isinstance(value, str):
        return {"stringValue": str(value)}  # str(): a StrEnum is stored as its value
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # naive: UTC
        return {"timestampValue": format_timestamp(aware)}
    if isinstance(value, list | tuple):
        values = [encode_value(v) for v in value]
        return {"arrayValue": {"values": values} if values else {}}
    if isinstance(value, Mapping):
        return {"mapValue": {"fields": encode_fields(value)} if value else {}}
    raise TypeError(f"cannot store a {type(value).__name__} in Firestore")


def encode_fields(fields: Mapping[str, Any]) -> Json:
    encoded: Json = {}
    for name, value in fields.items():
        if not isinstance(name, str):
            raise TypeError(f"Firestore field names are strings, not {type(name).__name__}")
        encoded[name] = encode_value(value)
    return encoded


def decode_value(value: Mapping[str, Any]) -> Any:
    """One Firestore ``Value`` as a Python value."""
    if "nullValue" in value:
        return None
    if "booleanValue" in value:
        return bool(value["booleanValue"])
    if "integerValue" in value:
        return int(value["integerValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])  # float() reads "NaN" and "Infinity" too
    if "timestampValue" in value:
        return parse_timestamp(value["timestampValue"])
    if "stringValue" in value:
        return str(value["stringValue"])
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    if "referenceValue" in value:
        return str(value["referenceValue"])
    if "geoPointValue" in value:
        return dict(value["geoPointValue"])
    if "arrayValue" in value:
        return [decode_value(v) for v in value["arrayValue"].get("values", [])]
    if "mapValue" in value:
        return decode_fields(value["mapValue"].get("fields", {}))
    raise ValueError(f"unknown Firestore value {sorted(value)}")


def decode_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {name: decode_value(v) for name, v in fields.items()}


def field_path(name: str) -> str:
    """A top-level field name as a field path (backquoted unless a plain identifier)."""
    if _SIMPLE_FIELD.fullmatch(name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


# --------------------------------------------------------------------------- queries


def structured_query(
    collection: str,
    where: Sequence[Filter] = (),
    order_by: Sequence[tuple[str, str]] = (),
    limit: int | None = None,
) -> Json:
    """A ``StructuredQuery`` on one collection (under the parent given to ``run_query``): every
    filter must hold (AND); ``order_by`` is ``(field, "ASCENDING" | "DESCENDING")``."""
    query: Json = {"from": [{"collectionId": collection}]}
    filters: list[Json] = []
    for name, op, value in where:
        if op not in OPERATORS:
            raise ValueError(f"unknown Firestore operator {op!r}")
        filters.append(
            {
                "fieldFilter": {
                    "field": {"fieldPath": field_path(name)},
                    "op": op,
                    "value": encode_value(value),
                }
            }
        )
    if len(filters) == 1:
        query["where"] = filters[0]
    elif filters:
        query["where"] = {"compositeFilter": {"op": "AND", "filters": filters}}
    if order_by:
        for _, direction in order_by:
            if direction not in DIRECTIONS:
                raise ValueError(f"unknown sort direction {direction!r}")
        query["orderBy"] = [
            {"field": {"fieldPath": field_path(name)}, "direction": direction}
            for name, direction in order_by
        ]
    if limit is not None:
        query["limit"] = limit
    return query


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class Document:
    name: str  # the full resource name, projects/.../documents/COLLECTION/ID
    fields: dict[str, Any]
    update_time: str  # verbatim from the server (nanoseconds), for an ``updateTime`` precondition

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Document:
        return cls(
            str(doc.get("name", "")),
            decode_fields(doc.get("fields", {})),
            str(doc.get("updateTime", "")),
        )


class FirestoreApi:
    """One Firestore database. Paths are relative to its documents root and name documents
    (``runs/202611271500``) or, for queries, their parent (``""`` for the root)."""

    def __init__(
        self,
        http: GoogleHttp,
        project: str,
        database: str = DEFAULT_DATABASE,
        *,
        backoff: Backoff = BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.http = http
        self.project = project
        self.database = database
        self.root = f"projects/{project}/databases/{database}/documents"
        self._backoff = backoff
        self._sleep = sleep

    def name(self, path: str) -> str:
        return f"{self.root}/{path}" if path else self.root

    def _url(self, path: str) -> str:
        return "/".join(quote_path(segment) for segment in self.name(path).split("/"))

    # ---------------------------------------------------------------- reads

    def get(self, path: str, timeout: float | None = None) -> Document | None:
        try:
            reply = self._call("GET", self._url(path), None, timeout, write=False)
        except ApiError as exc:
            if exc.status == "NOT_FOUND":
                return None
            raise
        return Document.from_json(reply)

    def run_query(self, parent: str, query: Json, timeout: float | None = None) -> list[Document]:
        body = {"structuredQuery": query}
        reply = self._call("POST", self._url(parent) + ":runQuery", body, timeout, write=False)
        return [
            Document.from_json(item["document"]) for item in _items(reply) if "document" in item
        ]

    def count(self, parent: str, query: Json, timeout: float | None = None) -> int:
        """A COUNT aggregation: the server counts index entries, no document is read."""
        body = {
            "structuredAggregationQuery": {
                "structuredQuery": query,
                "aggregations": [{"alias": "count", "count": {}}],
            }
        }
        url = self._url(parent) + ":runAggregationQuery"
        reply = self._call("POST", url, body, timeout, write=False)
        total = 0
        for item in _items(reply):
            fields = item.get("result", {}).get("aggregateFields", {})
            if "count" in fields:
                total += int(decode_value(fields["count"]))
        return total

    # ---------------------------------------------------------------- writes

    def commit(self, writes: Sequence[Json], timeout: float | None = None) -> None:
        """Apply ``writes`` atomically: all or none."""
        self._call("POST", self._url("") + ":commit", {"writes": list(writes)}, timeout, write=True)

    def create_write(self, path: str, fields: Mapping[str, Any]) -> Json:
        """Fails (``ALREADY_EXISTS``) if the document exists."""
        return {"update": self._doc(path, fields), "currentDocument": {"exists": False}}

    def set_write(self, path: str, fields: Mapping[str, Any]) -> Json:
        """Creates the document or replaces all of its fields."""
        return {"update": self._doc(path, fields)}

    def update_write(
        self, path: str, fields: Mapping[str, Any], update_time: str | None = None
    ) -> Json:
        """Replaces the given fields only, others kept. The document must exist (``NOT_FOUND``)
        and, with ``update_time``, not have changed since (``FAILED_PRECONDITION``)."""
        precondition = {"updateTime": update_time} if update_time else {"exists": True}
        return {
            "update": self._doc(path, fields),
            "updateMask": {"fieldPaths": [field_path(name) for name in fields]},
            "currentDocument": precondition,
        }

    def delete_write(self, path: str) -> Json:
        """Succeeds whether or not the document exists."""
        return {"delete": self.name(path)}

    def create(self, path: str, fields: Mapping[str, Any], timeout: float | None = None) -> None:
        self.commit([self.create_write(path, fields)], timeout)

    def set(self, path: str, fields: Mapping[str, Any], timeout: float | None = None) -> None:
        self.commit([self.set_write(path, fields)], timeout)

    def update(
        self,
        path: str,
        fields: Mapping[str, Any],
        update_time: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self.commit([self.update_write(path, fields, update_time)], timeout)

    def delete(self, path: str, timeout: float | None = None) -> None:
        self.commit([self.delete_write(path)], timeout)

    def _call(
        self, method: str, url: str, body: Json | None, timeout: float | None, *, write: bool
    ) -> Any:
        slept = 0.0
        for attempt in range(self._backoff.attempts):
            try:
                return self.http.call(method, url, body, timeout=timeout)
            except ApiError as exc:
                pause = self._backoff.delay(attempt)
                if not _retryable(exc, write) or attempt + 1 >= self._backoff.attempts:
                    raise
                if slept + pause > self._backoff.budget_seconds:
                    raise
            self._sleep(pause)
            slept += pause
        raise AssertionError("unreachable")  # pragma: no cover

    def _doc(self, path: str, fields: Mapping[str, Any]) -> Json:
        return {"name": self.name(path), "fields": encode_fields(fields)}


def _retryable(exc: ApiError, write: bool) -> bool:
    if not write:
        return exc.status in _READ_RETRY
    never_sent = exc.code == 0 and exc.status == "UNAVAILABLE"  # connection refused or timed out
    return never_sent or exc.status == "RESOURCE_EXHAUSTED"


def _items(reply: Any) -> list[Json]:
    """The responses of a streaming method (a JSON array; a lone object is one response)."""
    if isinstance(reply, dict):
        return [reply]
    return [item for item in reply or [] if isinstance(item, dict)]

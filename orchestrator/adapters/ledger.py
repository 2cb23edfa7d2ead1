"""The run ledger in Firestore (Native mode): ``COLLECTION/RUN_ID`` and ``.../tables/TABLE_KEY``.

A run document holds the run's fields plus ``open`` (one equality query finds every open run) and
the list of its table keys; each table has its own document, so a run of 2,000 tables stays far
from the 1 MiB document limit and per-table updates never contend on the run document. Times are
stored as Firestore timestamps (UTC). No secret is ever part of a Run or TableRun.

Spoken over Firestore's REST API (``firestore_rest``), not the SDK: see issue 7 (cold start).
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator.adapters.firestore_rest import (
    FirestoreApi,
    firestore_http,
    structured_query,
)
from orchestrator.adapters.google_http import ApiError, translated
from orchestrator.errors import NotFoundError, TransientError
from orchestrator.model import Run, RunState, TableRun, TableState, Transition

if TYPE_CHECKING:
    from orchestrator.config import Settings

T = TypeVar("T")
R = TypeVar("R")
_BATCH = 400  # under Firestore's 500 writes per commit
TIMEOUT = 30.0
DEDUPE_RETENTION = timedelta(days=8)  # longer than Pub/Sub's 7-day retry window
CLAIM_LEASE = timedelta(minutes=10)  # longer than notify's timeout: a live handler keeps it
# A conditional write that lost a race: the document changed (or vanished, or appeared) since it
# was read. Read again and retry.
_LOST_RACE = frozenset({"FAILED_PRECONDITION", "NOT_FOUND", "ABORTED", "ALREADY_EXISTS"})


def _translated(what: str) -> AbstractContextManager[None]:
    return translated("Firestore", what)


def _to_doc(record: Run | TableRun) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if isinstance(value, StrEnum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        doc[f.name] = value
    return doc


def _from_doc(cls: type[T], doc: Mapping[str, Any] | None) -> T:
    doc = doc or {}
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for name, value in doc.items():
        if name not in known:
            continue
        if isinstance(value, list):
            value = tuple(value)
        values[name] = value  # timestamps come back as aware UTC datetimes
    if cls is Run:
        values["state"] = RunState(values["state"])
    elif cls is TableRun:
        values["state"] = TableState(values["state"])
    return cls(**values)


def _run_doc(run: Run) -> dict[str, Any]:
    return {**_to_doc(run), "open": run.needs_attention}


def build_ledger(settings: Settings, environ: Mapping[str, str] | None = None) -> FirestoreLedger:
    """The ledger of ``settings``: on the emulator when ``FIRESTORE_EMULATOR_HOST`` is set (as the
    SDK did), else on Firestore with the default credentials."""
    env = os.environ if environ is None else environ
    http = firestore_http(env.get("FIRESTORE_EMULATOR_HOST", ""), env)
    api = FirestoreApi(http, settings.gcp_project, settings.firestore_database)
    return FirestoreLedger(api, settings.ledger_collection)


class FirestoreLedger:
    def __init__(
        self, api: FirestoreApi, collection: str = "rds2bq_runs", max_attempts: int = 25
    ) -> None:
        self._api = api
        self._runs = collection
        self._dedupe = f"{collection}_dedupe"
        self._max_attempts = max_attempts

    def _run(self, run_id: str) -> str:
        return f"{self._runs}/{run_id}"

    def _table(self, run_id: str, key: str) -> str:
        return f"{self._runs}/{run_id}/tables/{key}"

    def _claim(self, key: str) -> str:
        return f"{self._dedupe}/{key}"

    def _create(self, path: str, doc: Mapping[str, Any]) -> bool:
        """Create the document; False (and nothing written) if it already exists."""
        try:
            self._api.create(path, doc, timeout=TIMEOUT)
        except ApiError as exc:
            if exc.status != "ALREADY_EXISTS":
                raise
            return False
        return True

    def create_run(self, run: Run) -> tuple[Run, bool]:
        with _translated("create run"):
            if self._create(self._run(run.run_id), _run_doc(run)):
                return run, True
            existing = self.get_run(run.run_id)
        if existing is None:  # pragma: no cover - deleted between the two calls
            raise TransientError(f"run {run.run_id} vanished while being created")
        return existing, False

    def get_run(self, run_id: str) -> Run | None:
        with _translated("get run"):
            doc = self._api.get(self._run(run_id), timeout=TIMEOUT)
        return _from_doc(Run, doc.fields) if doc is not None else None

    def open_runs(self) -> list[Run]:
        query = structured_query(self._runs, where=[("open", "EQUAL", True)])
        with _translated("query open runs"):
            docs = self._api.run_query("", query, timeout=TIMEOUT)
        return sorted((_from_doc(Run, d.fields) for d in docs), key=lambda r: r.run_id)

    def recent_runs(self, limit: int) -> list[Run]:
        query = structured_query(self._runs, order_by=[("run_time", "DESCENDING")], limit=limit)
        with _translated("query recent runs"):
            docs = self._api.run_query("", query, timeout=TIMEOUT)
        return [_from_doc(Run, d.fields) for d in docs]

    def transition(self, run_id: str, mutate: Callable[[Run], Transition]) -> Transition:
        def apply(doc: dict[str, Any] | None) -> tuple[Transition, dict[str, Any] | None]:
            if doc is None:
                raise NotFoundError(f"run {run_id} is not in the ledger")
            result = mutate(_from_doc(Run, doc))
            return result, (None if result.run is None else _run_doc(result.run))

        return self._compare_and_set(self._run(run_id), apply, "transition")

    def add_tables(self, run_id: str, tables: Iterable[TableRun]) -> None:
        items = list(tables)
        for start in range(0, len(items), _BATCH):
            chunk = items[start : start + _BATCH]
            writes = [self._api.create_write(self._table(run_id, t.key), _to_doc(t)) for t in chunk]
            with _translated("add tables"):
                try:
                    self._api.commit(writes, timeout=TIMEOUT)
                except ApiError as exc:
                    if exc.status != "ALREADY_EXISTS":
                        raise
                    # A commit is atomic: one existing document (a concurrent or earlier poll
                    # wrote it) failed the whole chunk. Create the others one by one and leave
                    # the existing ones untouched.
                    for table in chunk:
                        self._create(self._table(run_id, table.key), _to_doc(table))

    def tables(self, run_id: str) -> list[TableRun]:
        with _translated("read tables"):
            query = structured_query("tables")
            docs = self._api.run_query(self._run(run_id), query, timeout=TIMEOUT)
        return sorted((_from_doc(TableRun, d.fields) for d in docs), key=lambda t: t.key)

    def put_tables(self, run_id: str, tables: Iterable[TableRun]) -> None:
        items = list(tables)
        with _translated("write tables"):
            for start in range(0, len(items), _BATCH):
                writes = [
                    self._api.set_write(self._table(run_id, t.key), _to_doc(t))
                    for t in items[start : start + _BATCH]
                ]
                self._api.commit(writes, timeout=TIMEOUT)

    def update_table(
        self, run_id: str, key: str, mutate: Callable[[TableRun], TableRun | None]
    ) -> TableRun | None:
        def apply(doc: dict[str, Any] | None) -> tuple[TableRun | None, dict[str, Any] | None]:
            if doc is None:
                return None, None
            changed = mutate(_from_doc(TableRun, doc))
            return changed, (None if changed is None else _to_doc(changed))

        return self._compare_and_set(self._table(run_id, key), apply, "update table")

    def count_unfinished(self, run_id: str) -> int:
        unfinished = [s.value for s in TableState if not s.is_final]
        query = structured_query("tables", where=[("state", "IN", unfinished)])
        with _translated("count tables"):
            return self._api.count(self._run(run_id), query, timeout=TIMEOUT)

    def find_table(self, run_id: str, dts_config: str) -> TableRun | None:
        query = structured_query("tables", where=[("dts_config", "EQUAL", dts_config)], limit=1)
        with _translated("find table"):
            docs = self._api.run_query(self._run(run_id), query, timeout=TIMEOUT)
        return _from_doc(TableRun, docs[0].fields) if docs else None

    def claim_once(self, key: str, now: datetime) -> bool:
        # ``expire_at`` lets a Firestore TTL policy clean these up after the retry window.
        path = self._claim(key)
        doc = {"claimed_at": now, "done": False, "expire_at": now + DEDUPE_RETENTION}
        with _translated("claim message"):
            if self._create(path, doc):
                return True

        def take_over(current: dict[str, Any] | None) -> tuple[bool, dict[str, Any] | None]:
            # A claim never marked done within the lease belongs to a handler that died.
            if current is None or current.get("done", True):
                return False, None
            claimed = current.get("claimed_at")
            if isinstance(claimed, datetime) and now - claimed < CLAIM_LEASE:
                return False, None
            return True, doc

        return self._compare_and_set(path, take_over, "claim message")

    def mark_done(self, key: str) -> None:
        with _translated("mark message done"):
            self._api.update(self._claim(key), {"done": True}, timeout=TIMEOUT)

    def forget(self, key: str) -> None:
        with _translated("forget message"):
            self._api.delete(self._claim(key), timeout=TIMEOUT)

    def remember(self, key: str, value: str, now: datetime) -> tuple[str, bool]:
        # Same collection (and TTL) as ``claim_once``: an idempotency key lives as long as a
        # message id does.
        path = self._claim(key)
        doc = {"value": value, "claimed_at": now, "expire_at": now + DEDUPE_RETENTION}
        with _translated("remember request"):
            if self._create(path, doc):
                return value, True
            stored = self._api.get(path, timeout=TIMEOUT)
        return str((stored.fields if stored else {}).get("value", "")), False

    def _compare_and_set(
        self,
        path: str,
        apply: Callable[[dict[str, Any] | None], tuple[R, dict[str, Any] | None]],
        what: str,
    ) -> R:
        """Optimistic read-modify-write: the write succeeds only if the document was not updated
        since it was read (``updateTime`` precondition); otherwise read again and retry.

        Why not a Firestore transaction: concurrent read-write transactions on one document take
        locks, and the emulator resolves the resulting upgrade deadlock only by a lock timeout of
        seconds per attempt. A conditional write never blocks and means the same thing here.
        """
        for attempt in range(self._max_attempts):
            with _translated(what):
                current = self._api.get(path, timeout=TIMEOUT)
                result, doc = apply(None if current is None else current.fields)
                if doc is None:
                    return result
                if current is None:  # nothing to compare with: it must still be absent
                    write = self._api.create_write(path, doc)
                else:
                    write = self._api.update_write(path, doc, current.update_time)
                try:
                    self._api.commit([write], timeout=TIMEOUT)
                    return result
                except ApiError as exc:
                    if exc.status not in _LOST_RACE:
                        raise
                time.sleep(random.uniform(0, min(0.2, 0.01 * 2**attempt)))
        raise TransientError(f"Firestore {what}: still contended after {self._max_attempts} tries")

"""The run ledger in Firestore (Native mode): ``COLLECTION/RUN_ID`` and ``.../tables/TABLE_KEY``.

A run document holds the run's fields plus ``open`` (one equality query finds every open run) and
the list of its table keys; each table has its own document, so a run of 2,000 tables stays far
from the 1 MiB document limit and per-table updates never contend on the run document. Times are
stored as Firestore timestamps (UTC). No secret is ever part of a Run or TableRun.

Retries (docs/platform.md, "Firestore"): reads retry transient faults for up to 30 s. Writes
are creates (a second one fails ALREADY_EXISTS) or conditional on the document's update time (a
second one fails its precondition), so none of them can apply twice; they are retried only on
UNAVAILABLE, and a write that timed out is never re-sent blind: it surfaces as TransientError and
the next invocation reads before it writes again.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from google.api_core import exceptions as gexc
from google.api_core import retry as retries
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from orchestrator.adapters.google_errors import translated
from orchestrator.core.errors import NotFoundError, TransientError
from orchestrator.core.model import Run, RunState, TableRun, TableState, Transition
from orchestrator.core.retry import Backoff

if TYPE_CHECKING:
    from orchestrator.config import Settings

T = TypeVar("T")
R = TypeVar("R")
_BATCH = 400  # under Firestore's 500 writes per commit
TIMEOUT = 30.0
DEDUPE_RETENTION = timedelta(days=8)  # longer than Pub/Sub's 7-day retry window
CLAIM_LEASE = timedelta(minutes=10)  # longer than notify's timeout: a live handler keeps it
READ_RETRY = retries.Retry(
    predicate=retries.if_transient_error, initial=0.1, maximum=2.0, timeout=TIMEOUT
)
WRITE_RETRY = retries.Retry(
    predicate=retries.if_exception_type(gexc.ServiceUnavailable),
    initial=0.1,
    maximum=1.0,
    timeout=10.0,
)
# A conditional write that lost a race: the document changed (or vanished, or appeared) since it
# was read. Read again and retry.
_LOST_RACE = (gexc.FailedPrecondition, gexc.NotFound, gexc.Aborted, gexc.Conflict)
# The pause after a lost race: full jitter up to 10 ms, 20 ms, ... 200 ms (``core.retry``).
_LOST_RACE_PAUSE = Backoff(base_seconds=0.01, cap_seconds=0.2)


def _translated(what: str) -> AbstractContextManager[None]:
    return translated("Firestore", what)


def _plain_time(value: Any) -> datetime:
    """Firestore's DatetimeWithNanoseconds as a plain aware UTC datetime."""
    return datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=UTC,
    )


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
        if isinstance(value, datetime):
            value = _plain_time(value)
        elif isinstance(value, list):
            value = tuple(value)
        values[name] = value
    if cls is Run:
        values["state"] = RunState(values["state"])
    elif cls is TableRun:
        values["state"] = TableState(values["state"])
    return cls(**values)


def _run_doc(run: Run) -> dict[str, Any]:
    return {**_to_doc(run), "open": run.needs_attention}


def build_ledger(settings: Settings, client: firestore.Client | None = None) -> FirestoreLedger:
    """The ledger of ``settings``. The client goes to the emulator when ``FIRESTORE_EMULATOR_HOST``
    is set (the SDK's own rule), else to Firestore with the default credentials."""
    if client is None:
        client = firestore.Client(
            project=settings.gcp_project, database=settings.firestore_database
        )
    return FirestoreLedger(client, settings.ledger_collection)


_FOUND_KEPT = 1024  # snapshots kept for the next update of their table, at most


class FirestoreLedger:
    def __init__(
        self, client: firestore.Client, collection: str = "rds2bq_runs", max_attempts: int = 25
    ) -> None:
        self._client = client
        self._runs = client.collection(collection)
        self._dedupe = client.collection(f"{collection}_dedupe")
        self._max_attempts = max_attempts
        # The table snapshots ``find_table`` just read, by document path: the next
        # ``update_table`` of that table conditions its first write on it instead of reading it
        # again (notify's one read of the table; a stale one fails the precondition and is read
        # afresh). Each is used once.
        self._found: dict[str, Any] = {}
        self._found_lock = threading.Lock()

    def _tables(self, run_id: str) -> Any:
        return self._runs.document(run_id).collection("tables")

    def _create(self, ref: Any, doc: Mapping[str, Any]) -> bool:
        """Create the document; False (and nothing written) if it already exists."""
        try:
            ref.create(doc, retry=WRITE_RETRY, timeout=TIMEOUT)
        except gexc.Conflict:
            return False
        return True

    def create_run(self, run: Run) -> tuple[Run, bool]:
        with _translated("create run"):
            if self._create(self._runs.document(run.run_id), _run_doc(run)):
                return run, True
            existing = self.get_run(run.run_id)
        if existing is None:  # pragma: no cover - deleted between the two calls
            raise TransientError(f"run {run.run_id} vanished while being created")
        return existing, False

    def get_run(self, run_id: str) -> Run | None:
        with _translated("get run"):
            snap = self._runs.document(run_id).get(retry=READ_RETRY, timeout=TIMEOUT)
        return _from_doc(Run, snap.to_dict()) if snap.exists else None

    def open_runs(self) -> list[Run]:
        query = self._runs.where(filter=FieldFilter("open", "==", True))
        with _translated("query open runs"):
            docs = list(query.stream(retry=READ_RETRY, timeout=TIMEOUT))
        return sorted((_from_doc(Run, d.to_dict()) for d in docs), key=lambda r: r.run_id)

    def recent_runs(self, limit: int) -> list[Run]:
        query = self._runs.order_by("run_time", direction=firestore.Query.DESCENDING).limit(limit)
        with _translated("query recent runs"):
            docs = list(query.stream(retry=READ_RETRY, timeout=TIMEOUT))
        return [_from_doc(Run, d.to_dict()) for d in docs]

    def transition(self, run_id: str, mutate: Callable[[Run], Transition]) -> Transition:
        def apply(doc: dict[str, Any] | None) -> tuple[Transition, dict[str, Any] | None]:
            if doc is None:
                raise NotFoundError(f"run {run_id} is not in the ledger")
            result = mutate(_from_doc(Run, doc))
            return result, (None if result.run is None else _run_doc(result.run))

        return self._compare_and_set(self._runs.document(run_id), apply, "transition")

    def add_tables(self, run_id: str, tables: Iterable[TableRun]) -> None:
        col = self._tables(run_id)
        items = list(tables)
        for start in range(0, len(items), _BATCH):
            chunk = items[start : start + _BATCH]
            batch = self._client.batch()
            for table in chunk:
                batch.create(col.document(table.key), _to_doc(table))
            with _translated("add tables"):
                try:
                    batch.commit(retry=WRITE_RETRY, timeout=TIMEOUT)
                except gexc.Conflict:
                    # A commit is atomic: one existing document (a concurrent or earlier poll
                    # wrote it) failed the whole chunk. Create the others one by one and leave
                    # the existing ones untouched.
                    for table in chunk:
                        self._create(col.document(table.key), _to_doc(table))

    def tables(self, run_id: str) -> list[TableRun]:
        with _translated("read tables"):
            docs = list(self._tables(run_id).stream(retry=READ_RETRY, timeout=TIMEOUT))
        return sorted((_from_doc(TableRun, d.to_dict()) for d in docs), key=lambda t: t.key)

    def put_tables(self, run_id: str, tables: Iterable[TableRun]) -> None:
        col = self._tables(run_id)
        items = list(tables)
        with _translated("write tables"):
            for start in range(0, len(items), _BATCH):
                batch = self._client.batch()
                for table in items[start : start + _BATCH]:
                    batch.set(col.document(table.key), _to_doc(table))
                batch.commit(retry=WRITE_RETRY, timeout=TIMEOUT)

    def update_table(
        self, run_id: str, key: str, mutate: Callable[[TableRun], TableRun | None]
    ) -> TableRun | None:
        def apply(doc: dict[str, Any] | None) -> tuple[TableRun | None, dict[str, Any] | None]:
            if doc is None:
                return None, None
            changed = mutate(_from_doc(TableRun, doc))
            return changed, (None if changed is None else _to_doc(changed))

        ref = self._tables(run_id).document(key)
        with self._found_lock:
            known = self._found.pop(ref.path, None)
        return self._compare_and_set(ref, apply, "update table", known)

    def count_unfinished(self, run_id: str) -> int:
        unfinished = [s.value for s in TableState if not s.is_final]
        query = self._tables(run_id).where(filter=FieldFilter("state", "in", unfinished))
        with _translated("count tables"):
            result = query.count().get(retry=READ_RETRY, timeout=TIMEOUT)
        return int(result[0][0].value)

    def get_table(self, run_id: str, key: str) -> TableRun | None:
        with _translated("get table"):
            snap = self._tables(run_id).document(key).get(retry=READ_RETRY, timeout=TIMEOUT)
        return _from_doc(TableRun, snap.to_dict()) if snap.exists else None

    def get_tables(self, run_id: str, keys: Sequence[str]) -> dict[str, TableRun]:
        if not keys:
            return {}
        col = self._tables(run_id)
        with _translated("get tables"):
            snaps = list(
                self._client.get_all(
                    [col.document(k) for k in keys], retry=READ_RETRY, timeout=TIMEOUT
                )
            )
        found = (_from_doc(TableRun, s.to_dict()) for s in snaps if s.exists)
        return {t.key: t for t in found}

    def find_table(self, run_id: str, dts_config: str) -> TableRun | None:
        query = self._tables(run_id).where(filter=FieldFilter("dts_config", "==", dts_config))
        with _translated("find table"):
            docs = list(query.limit(1).stream(retry=READ_RETRY, timeout=TIMEOUT))
        if not docs:
            return None
        with self._found_lock:
            if len(self._found) >= _FOUND_KEPT:
                self._found.clear()  # never claimed by an update: nothing is lost but a read
            self._found[docs[0].reference.path] = docs[0]
        return _from_doc(TableRun, docs[0].to_dict())

    def claim_once(self, key: str, now: datetime) -> bool:
        # ``expire_at`` lets a Firestore TTL policy clean these up after the retry window.
        ref = self._dedupe.document(key)
        doc = {"claimed_at": now, "done": False, "expire_at": now + DEDUPE_RETENTION}
        with _translated("claim message"):
            if self._create(ref, doc):
                return True

        def take_over(current: dict[str, Any] | None) -> tuple[bool, dict[str, Any] | None]:
            # A claim never marked done within the lease belongs to a handler that died.
            if current is None or current.get("done", True):
                return False, None
            claimed = current.get("claimed_at")
            if isinstance(claimed, datetime) and now - _plain_time(claimed) < CLAIM_LEASE:
                return False, None
            return True, doc

        return self._compare_and_set(ref, take_over, "claim message")

    def mark_done(self, key: str) -> None:
        with _translated("mark message done"):
            self._dedupe.document(key).update({"done": True}, retry=WRITE_RETRY, timeout=TIMEOUT)

    def forget(self, key: str) -> None:
        with _translated("forget message"):
            self._dedupe.document(key).delete(retry=WRITE_RETRY, timeout=TIMEOUT)

    def remember(self, key: str, value: str, now: datetime) -> tuple[str, bool]:
        # Same collection (and TTL) as ``claim_once``: an idempotency key lives as long as a
        # message id does.
        ref = self._dedupe.document(key)
        doc = {"value": value, "claimed_at": now, "expire_at": now + DEDUPE_RETENTION}
        with _translated("remember request"):
            if self._create(ref, doc):
                return value, True
            stored = ref.get(retry=READ_RETRY, timeout=TIMEOUT).to_dict() or {}
        return str(stored.get("value", "")), False

    def _compare_and_set(
        self,
        ref: Any,
        apply: Callable[[dict[str, Any] | None], tuple[R, dict[str, Any] | None]],
        what: str,
        known: Any = None,
    ) -> R:
        """Optimistic read-modify-write: the write succeeds only if the document was not updated
        since it was read (``last_update_time`` precondition); otherwise read again and retry.

        Why not a Firestore transaction: concurrent read-write transactions on one document take
        locks, and the emulator resolves the resulting upgrade deadlock only by a lock timeout of
        seconds per attempt. A conditional write never blocks and means the same thing here.
        ``known``: a snapshot of the document just read elsewhere, used for the first attempt.
        """
        for attempt in range(self._max_attempts):
            with _translated(what):
                if known is not None:
                    snap, known = known, None
                else:
                    snap = ref.get(retry=READ_RETRY, timeout=TIMEOUT)
                result, doc = apply(snap.to_dict() if snap.exists else None)
                if doc is None:
                    return result
                with suppress(*_LOST_RACE):
                    if not snap.exists:  # nothing to compare with: it must still be absent
                        ref.create(doc, retry=WRITE_RETRY, timeout=TIMEOUT)
                    else:
                        option = self._client.write_option(last_update_time=snap.update_time)
                        ref.update(doc, option=option, retry=WRITE_RETRY, timeout=TIMEOUT)
                    return result
            time.sleep(_LOST_RACE_PAUSE.delay(attempt))
        raise TransientError(f"Firestore {what}: still contended after {self._max_attempts} tries")

"""Figure 4 (issue 7): API calls per daily run, by service, and "an idle poll makes no AWS call".

One warm instance of the production wiring (``orchestrator.wiring.Wiring``) plays a whole day:
idle poll, ``start_export``, a poll while the export runs, the poll that sees it COMPLETE, a poll
inside the visibility margin, the hand-off poll, ``notify`` for every DTS run-finished message and
for each of our own events, and an idle poll after the run closed. Every adapter is the real one,
talking to a local peer; each call is counted where it leaves the process:

- AWS (RDS, S3, STS): every botocore API call (``BaseClient._make_api_call``), against moto. AWS
  auth is web identity as in production, with a made-up Google ID token (moto accepts any), so the
  STS exchange is real and counted.
- Firestore: every RPC of the generated client, against the emulator, and the documents they bill
  (reads: each document a query or a get returns, at least 1 per query; writes: each write in a
  commit).
- DTS: every RPC the stand-in served (its call log).
- Pub/Sub: every message given to the publisher client (a counting stand-in for
  ``PublisherClient``, under the real ``PubsubEventBus``). They are then delivered to ``notify``,
  as the push subscription would.
- Slack: every payload the webhook stand-in accepted (through the real webhook notifier).
- Secret Manager: every ``AccessSecretVersion`` (a counting stand-in client under the real
  ``SecretManagerSecrets``, with its cache).

Counts are for one warm instance per function: a cold instance adds one STS exchange and one
secret read per credential or cache lifetime.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from types import SimpleNamespace
from typing import Any

from bench.common import BASE_ENV, FixedOffsetClock, load, table_keys, write_tables_file
from bench.peers import complete_export, create_configs

POLLS_PER_DAY = 24 * 60 // 5  # the default poll_schedule, */5 * * * *
EXPORTING_POLLS = 12  # assumed: an export that takes an hour
FAKE_ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJl"
SERVICES = (
    "AWS RDS",
    "AWS S3",
    "AWS STS",
    "DTS",
    "Firestore RPCs",
    "Firestore doc reads",
    "Firestore doc writes",
    "Pub/Sub publishes",
    "Slack posts",
    "Secret Manager reads",
)
PHASES = (
    "idle poll",
    "start_export",
    "poll, export running",
    "poll, export COMPLETE",
    "poll, within the margin",
    "poll, hand-off",
    "notify, DTS run finished",
    "notify, our events",
    "idle poll after close",
)


# --------------------------------------------------------------------------- instruments


class Instruments:
    """Counters fed by patches on the vendor clients; counting only inside ``counting()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.enabled = False
        self.counts: Counter[tuple[str, str]] = Counter()

    def add(self, service: str, item: str, n: int = 1) -> None:
        if self.enabled and n:
            with self._lock:
                self.counts[(service, item)] += n

    def take(self) -> Counter[tuple[str, str]]:
        with self._lock:
            taken, self.counts = self.counts, Counter()
        return taken


INSTRUMENTS = Instruments()
_installed = False


def install() -> None:
    """Patch botocore's and Firestore's clients to count (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    from botocore.client import BaseClient

    original_call = BaseClient._make_api_call

    def counted_call(self: Any, operation_name: str, api_params: Any) -> Any:
        service = self.meta.service_model.service_name.upper()
        INSTRUMENTS.add(f"AWS {service}", operation_name)
        return original_call(self, operation_name, api_params)

    BaseClient._make_api_call = counted_call

    from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

    def request_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return kwargs.get("request", args[0] if args else None)

    def writes_in(request: Any) -> int:
        if isinstance(request, dict):
            return len(request.get("writes") or [])
        return len(getattr(request, "writes", None) or [])

    def reads_of(
        stream: Iterator[Any], per_item: Callable[[Any], int], minimum: int
    ) -> Iterator[Any]:
        seen = 0
        try:
            for item in stream:
                docs = per_item(item)
                seen += docs
                INSTRUMENTS.add("Firestore doc reads", "documents", docs)
                yield item
        finally:
            if seen < minimum:
                INSTRUMENTS.add("Firestore doc reads", "documents", minimum - seen)

    def query_docs(response: Any) -> int:
        return 1 if type(response).pb(response).HasField("document") else 0

    def wrap(name: str) -> None:
        original = getattr(FirestoreClient, name)

        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            INSTRUMENTS.add("Firestore RPCs", name)
            if name in ("commit", "batch_write"):
                writes = writes_in(request_of(args, kwargs))
                INSTRUMENTS.add("Firestore doc writes", "documents", writes)
            result = original(self, *args, **kwargs)
            if name == "batch_get_documents":
                return reads_of(result, lambda _: 1, 0)
            if name == "run_query":
                return reads_of(result, query_docs, 1)  # a query bills at least one read
            if name == "get_document":
                INSTRUMENTS.add("Firestore doc reads", "documents")
            return result

        setattr(FirestoreClient, name, counted)

    for name in (
        "get_document",
        "list_documents",
        "create_document",
        "update_document",
        "delete_document",
        "begin_transaction",
        "commit",
        "rollback",
        "batch_write",
        "batch_get_documents",
        "run_query",
        "run_aggregation_query",
    ):
        wrap(name)


@dataclass
class CountingPublisher:
    """Stands in for ``pubsub_v1.PublisherClient`` under the real ``PubsubEventBus``."""

    messages: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    delivered: int = 0

    def publish(self, topic: str, data: bytes, **kwargs: Any) -> Future[str]:
        INSTRUMENTS.add("Pub/Sub publishes", "publish")
        attributes = {k: v for k, v in kwargs.items() if k not in ("timeout", "retry")}
        self.messages.append((data, attributes))
        future: Future[str] = Future()
        future.set_result(uuid.uuid4().hex)
        return future

    def undelivered(self) -> list[tuple[bytes, dict[str, str]]]:
        pending = self.messages[self.delivered :]
        self.delivered = len(self.messages)
        return pending


class CountingSecretClient:
    """Stands in for ``SecretManagerServiceClient`` under the real ``SecretManagerSecrets``."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def access_secret_version(self, request: dict[str, str], timeout: float = 0) -> Any:
        INSTRUMENTS.add("Secret Manager reads", "AccessSecretVersion")
        name = request["name"].split("/secrets/", 1)[1].split("/versions/")[0]
        return SimpleNamespace(payload=SimpleNamespace(data=self.values[name].encode()))


# --------------------------------------------------------------------------- the day


@dataclass
class Day:
    tables: int
    phases: dict[str, Counter[str]] = field(default_factory=dict)  # service -> calls, all calls
    invocations: Counter[str] = field(default_factory=Counter)
    detail: dict[str, Counter[str]] = field(default_factory=dict)  # phase -> "service op" -> n

    def record(self, phase: str, counts: Counter[tuple[str, str]]) -> None:
        per_service = self.phases.setdefault(phase, Counter())
        detail = self.detail.setdefault(phase, Counter())
        for (service, item), n in counts.items():
            per_service[service] += n
            detail[f"{service} {item}"] += n
        self.invocations[phase] += 1

    def per_invocation(self, phase: str, service: str) -> float:
        n = self.invocations.get(phase, 0)
        return self.phases.get(phase, Counter())[service] / n if n else 0.0

    def day_total(self, service: str) -> float:
        """Calls in one day: the measured run, plus the day's other polls (every 5 minutes)."""
        total = 0.0
        for phase in PHASES:
            calls = self.phases.get(phase, Counter())[service]
            if phase == "idle poll":
                busy = EXPORTING_POLLS + 3  # COMPLETE, within the margin, hand-off
                total += self.per_invocation(phase, service) * (POLLS_PER_DAY - busy)
            elif phase == "idle poll after close":
                continue  # counted in the idle polls above
            elif phase == "poll, export running":
                total += self.per_invocation(phase, service) * EXPORTING_POLLS
            else:
                total += calls
        return total


def play_day(peers: Any, slack: Any, n: int, run_times: Any, log: Any = print) -> Day:
    """One day of ``n`` tables (one skipped by the export, one whose DTS run fails)."""
    from orchestrator import wiring
    from orchestrator.adapters.aws_session import build_session
    from orchestrator.adapters.pubsub import PubsubEventBus
    from orchestrator.adapters.secrets import SecretManagerSecrets
    from orchestrator.notifications import PubsubMessage

    install()
    dts = peers.start_dts(s3=True)
    keys = table_keys(n)
    tables_file = write_tables_file(peers.work_dir, keys, f"calls-{n}")
    env = {
        **BASE_ENV,
        **peers.aws_env(),
        **peers.emulator_env(),
        "RDS2BQ_ENV": f"calls{n}",
        "RDS2BQ_TABLES_FILE": str(tables_file),
        "RDS2BQ_BQ_LOCATION": f"calls-{n}",
        "RDS2BQ_DTS_ENDPOINT": dts.target,
        "RDS2BQ_LEDGER_COLLECTION": f"bench-calls-{n}-{uuid.uuid4().hex[:6]}",
        "RDS2BQ_AWS_AUTH": "web-identity",
        "RDS2BQ_SECRETS_BACKEND": "secret-manager",
    }
    settings = load(env)
    create_configs(settings, dts.target)
    failing = settings.tables[0]
    skipped = settings.tables[-1]
    dts.set_outcome(
        f"rds2bq-{settings.env}:{failing.key}",
        "FAILED",
        "Error while reading data, error message: Parquet column 'price' has type DOUBLE which "
        "does not match the target cpp_type INT64",
    )
    w = wiring.Wiring(settings)
    publisher = CountingPublisher()
    w.__dict__["events"] = PubsubEventBus(publisher, settings.topic_path)
    w.__dict__["secrets"] = SecretManagerSecrets(
        CountingSecretClient({settings.slack_webhook_secret: slack.url}), settings.gcp_project
    )

    def session() -> Any:  # production's web-identity session, with a made-up Google ID token
        return build_session(
            "web-identity",
            settings.aws_region,
            role_arn=settings.aws_role_arn,
            endpoint_url=settings.aws_endpoint_url,
            token_loader=lambda: FAKE_ID_TOKEN,
        )

    w.aws_session = session  # type: ignore[method-assign]
    clock = FixedOffsetClock()
    service = w.service
    service.clock = clock
    notify = w.notify_service
    notify.clock = clock
    day = Day(n)

    def phase(name: str, action: Callable[[], Any]) -> Any:
        dts_before, slack_before = len(dts.calls), len(slack.payloads)
        INSTRUMENTS.take()
        INSTRUMENTS.enabled = True
        try:
            return action()
        finally:
            INSTRUMENTS.enabled = False
            counts = INSTRUMENTS.take()
            for call in dts.calls[dts_before:]:
                counts[("DTS", call.method)] += 1
            accepted = len(slack.payloads) - slack_before
            if accepted:
                counts[("Slack posts", "post")] += accepted
            day.record(name, counts)

    def handle(data: bytes, attributes: dict[str, str]) -> Any:
        return notify.handle(PubsubMessage(data, attributes, uuid.uuid4().hex, datetime.now(UTC)))

    def deliver_our_events() -> None:
        while pending := publisher.undelivered():
            for data, attributes in pending:
                phase("notify, our events", partial(handle, data, attributes))

    log(f"API calls: a day of {n} tables")
    phase("idle poll", service.poll)
    slot = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    run = phase("start_export", lambda: service.start_export(slot))
    deliver_our_events()
    peers.control.progress(run.export_task_id, 50, 1.0)
    phase("poll, export running", service.poll)
    deliver_our_events()
    complete_export(
        peers.control, run.export_task_id, settings.tables, {skipped.key: "The table is empty"}
    )
    phase("poll, export COMPLETE", service.poll)
    deliver_our_events()
    phase("poll, within the margin", service.poll)
    clock.offset = timedelta(minutes=settings.visibility_margin_minutes + 1)
    phase("poll, hand-off", service.poll)
    deliver_our_events()
    before = len(dts.notifications)
    dts.finish_pending()  # the stand-in lists S3 with boto3: not counted (not ours)
    notes = dts.notifications[before:]
    if len(notes) != n - 1:
        raise RuntimeError(f"calls: {len(notes)} DTS runs finished, expected {n - 1}")
    for note in notes:
        data = json.dumps(note.payload).encode()
        phase("notify, DTS run finished", partial(handle, data, note.attributes))
        deliver_our_events()
    phase("idle poll after close", service.poll)
    final = w.ledger.get_run(run.run_id)
    if final is None or final.is_open:
        raise RuntimeError(f"calls: the run did not close: {final}")
    day.detail["final state"] = Counter({final.state.value: 1})
    return day


def fit_quadratic(points: dict[int, float], x: int) -> float:
    """The value at ``x`` of the parabola through three (n, value) points (Lagrange)."""
    (x0, y0), (x1, y1), (x2, y2) = sorted(points.items())
    return (
        y0 * (x - x1) * (x - x2) / ((x0 - x1) * (x0 - x2))
        + y1 * (x - x0) * (x - x2) / ((x1 - x0) * (x1 - x2))
        + y2 * (x - x0) * (x - x1) / ((x2 - x0) * (x2 - x1))
    )


def measure(
    peers: Any,
    run_times: Any,
    *,
    sizes: tuple[int, ...] = (10, 50, 100),
    detail_size: int = 100,
    extrapolate_to: int = 2000,
    log: Any = print,
) -> dict[str, Any]:
    slack = peers.start_slack()
    days = {n: play_day(peers, slack, n, run_times, log) for n in sizes}
    totals = {n: {s: days[n].day_total(s) for s in SERVICES} for n in sizes}
    extrapolated = {}
    if len(sizes) == 3:
        extrapolated = {
            s: max(0.0, fit_quadratic({n: totals[n][s] for n in sizes}, extrapolate_to))
            for s in SERVICES
        }
    detail = days[detail_size]
    return {
        "sizes": list(sizes),
        "detail_size": detail_size,
        "extrapolate_to": extrapolate_to,
        "per_invocation": {p: {s: detail.per_invocation(p, s) for s in SERVICES} for p in PHASES},
        "invocations": dict(detail.invocations),
        "totals": totals,
        "extrapolated": extrapolated,
        "detail": {p: dict(c) for p, c in detail.detail.items()},
        "idle_aws_calls": sum(
            days[n].per_invocation(p, s)
            for n in sizes
            for p in ("idle poll", "idle poll after close")
            for s in ("AWS RDS", "AWS S3", "AWS STS")
        ),
        "final_states": {n: dict(days[n].detail["final state"]) for n in sizes},
        "assumptions": {
            "polls_per_day": POLLS_PER_DAY,
            "exporting_polls": EXPORTING_POLLS,
        },
    }

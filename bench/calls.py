"""Figure 4 (issue 7): API calls per daily run, by service, and "an idle poll makes no AWS call".

One warm instance of the production wiring (``orchestrator.wiring.Wiring``) plays a whole day:
idle poll, ``start_export``, a poll while the export runs, the poll that sees it COMPLETE, a poll
inside the visibility margin, the hand-off poll, ``notify`` for every DTS run-finished message and
for each of our own events, and an idle poll after the run closed. Every adapter is the real one,
talking to a local peer; each call is counted where it leaves the process:

- AWS (RDS, S3, STS): every botocore API call (``BaseClient._make_api_call``), against moto. AWS
  auth is web identity as in production, with a made-up Google ID token (moto accepts any), so the
  STS exchange is real and counted.
- Firestore: every RPC the ledger's ``google.cloud.firestore`` client sends, counted on the SDK's
  generated client (``FirestoreClient.commit``, ``.run_query``, ``.batch_get_documents``, ...: each
  call of those is one RPC on the wire), against the emulator; and the documents a successful RPC
  bills, read off its request and its responses (reads: each document a query returns, at least 1
  per query; each document a get asks for, found or not; a COUNT 1 per up to 1,000 index entries;
  writes: each write in a commit).
- DTS: every RPC the stand-in served (its call log).
- Pub/Sub: every message of every ``Publish`` RPC the real ``PublisherClient`` sends (counted on
  its ``_gapic_publish``, the one place its batches leave), to the emulator, under the real
  ``PubsubEventBus``. The messages are then delivered to ``notify``, as the push subscription
  would.
- Slack: every payload the webhook stand-in accepted (through the real webhook notifier).
- Secret Manager: every ``versions.access`` the stand-in served
  (``devstack.google_standins.SecretManagerStandIn``, over the real client's REST transport, under
  the real ``SecretManagerSecrets`` with its cache).

Counts are for one warm instance per function: a cold instance adds one STS exchange and one
secret read per credential or cache lifetime.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from bench.common import BASE_ENV, FixedOffsetClock, load, table_keys, write_tables_file
from bench.peers import complete_export, create_configs, create_destinations

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
    "Pub/Sub RPCs",
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
PUBLISHED: list[tuple[bytes, dict[str, str]]] = []  # every message published, for delivery
_installed = False
# The Firestore RPCs the SDK can send (its generated client's methods), by the stream they answer.
_FIRESTORE_UNARY = (
    "commit",
    "batch_write",
    "begin_transaction",
    "rollback",
    "get_document",
    "create_document",
    "update_document",
    "delete_document",
    "list_documents",
    "list_collection_ids",
)
_FIRESTORE_STREAMS = ("run_query", "run_aggregation_query", "batch_get_documents")


def _pb(message: Any) -> Any:
    """The raw protobuf of a proto-plus message (or the message itself)."""
    return getattr(message, "_pb", message)


def _field(request: Any, name: str) -> Any:
    return request.get(name) if isinstance(request, dict) else getattr(request, name, None)


def streamed_reads(rpc: str, item: Any) -> int:
    """Billed document reads in one streamed response of ``rpc``."""
    pb = _pb(item)
    if rpc == "run_query":
        return 1 if pb.HasField("document") else 0
    if rpc == "batch_get_documents":  # a document asked for is a read, found or missing
        return 1 if pb.WhichOneof("result") in ("found", "missing") else 0
    if rpc == "run_aggregation_query" and pb.HasField("result"):
        counted = [v.integer_value for v in pb.result.aggregate_fields.values()]
        return sum(max(1, -(-c // 1000)) for c in counted)
    return 0


def install() -> None:
    """Count on botocore's client and on the Google SDKs' clients (once per process)."""
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

    def unary(rpc: str) -> Callable[..., Any]:
        original = getattr(FirestoreClient, rpc)

        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            INSTRUMENTS.add("Firestore RPCs", rpc)
            reply = original(self, *args, **kwargs)
            request = kwargs.get("request", args[0] if args else None)
            if rpc in ("commit", "batch_write"):
                writes = len(_field(request, "writes") or [])
                INSTRUMENTS.add("Firestore doc writes", "documents", writes)
            elif rpc in ("create_document", "update_document", "delete_document"):
                INSTRUMENTS.add("Firestore doc writes", "documents")
            elif rpc == "get_document":
                INSTRUMENTS.add("Firestore doc reads", "documents")
            return reply

        return counted

    def stream(rpc: str) -> Callable[..., Any]:
        original = getattr(FirestoreClient, rpc)

        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            INSTRUMENTS.add("Firestore RPCs", rpc)
            responses = original(self, *args, **kwargs)

            def counting() -> Any:
                reads = 0
                for item in responses:
                    n = streamed_reads(rpc, item)
                    reads += n
                    INSTRUMENTS.add("Firestore doc reads", "documents", n)
                    yield item
                if rpc != "batch_get_documents" and not reads:
                    INSTRUMENTS.add("Firestore doc reads", "documents")  # at least 1 per query

            return counting()

        return counted

    for rpc in _FIRESTORE_UNARY:
        setattr(FirestoreClient, rpc, unary(rpc))
    for rpc in _FIRESTORE_STREAMS:
        setattr(FirestoreClient, rpc, stream(rpc))

    from google.cloud.pubsub_v1 import PublisherClient

    original_publish = PublisherClient._gapic_publish

    from orchestrator.core.events import EVENT_ATTRIBUTE

    def counted_publish(self: Any, *args: Any, **kwargs: Any) -> Any:
        reply = original_publish(self, *args, **kwargs)
        messages = [_pb(m) for m in kwargs.get("messages") or []]
        # ours only: the DTS stand-in, in this process too, publishes its run-finished messages
        messages = [m for m in messages if EVENT_ATTRIBUTE in m.attributes]
        if not messages:
            return reply
        INSTRUMENTS.add("Pub/Sub RPCs", "Publish")
        INSTRUMENTS.add("Pub/Sub publishes", "message", len(messages))
        with INSTRUMENTS._lock:
            PUBLISHED.extend((bytes(m.data), dict(m.attributes)) for m in messages)
        return reply

    PublisherClient._gapic_publish = counted_publish


# --------------------------------------------------------------------------- the day


@dataclass
class Day:
    tables: int
    phases: dict[str, Counter[str]] = field(default_factory=dict)  # service -> calls, all calls
    invocations: Counter[str] = field(default_factory=Counter)
    detail: dict[str, Counter[str]] = field(default_factory=dict)  # phase -> "service op" -> n
    # phase -> Firestore RPCs of one invocation -> invocations that made that many
    firestore_per_call: dict[str, Counter[int]] = field(default_factory=dict)
    # notify's messages, by kind (a DTS run finished, or our event's kind) -> the same
    firestore_per_message: dict[str, Counter[int]] = field(default_factory=dict)

    def record(self, phase: str, counts: Counter[tuple[str, str]], message_kind: str = "") -> None:
        per_service = self.phases.setdefault(phase, Counter())
        detail = self.detail.setdefault(phase, Counter())
        for (service, item), n in counts.items():
            per_service[service] += n
            detail[f"{service} {item}"] += n
        self.invocations[phase] += 1
        rpcs = sum(n for (service, _), n in counts.items() if service == "Firestore RPCs")
        self.firestore_per_call.setdefault(phase, Counter())[rpcs] += 1
        if message_kind:
            self.firestore_per_message.setdefault(message_kind, Counter())[rpcs] += 1

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


def play_day(peers: Any, slack: Any, secrets: Any, n: int, run_times: Any, log: Any = print) -> Day:
    """One day of ``n`` tables (one skipped by the export, one whose DTS run fails)."""
    from orchestrator import wiring
    from orchestrator.adapters.aws_session import build_session
    from orchestrator.core.notifications import EVENT_ATTRIBUTE, PubsubMessage

    install()
    bigquery = peers.start_bigquery()
    dts = peers.start_dts(s3=True, bigquery=bigquery)
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
        "RDS2BQ_BQ_ENDPOINT": bigquery.endpoint,
        "RDS2BQ_LEDGER_COLLECTION": f"bench-calls-{n}-{uuid.uuid4().hex[:6]}",
        "RDS2BQ_AWS_AUTH": "web-identity",
        "RDS2BQ_SECRETS_BACKEND": "secret-manager",
        "RDS2BQ_SECRETS_ENDPOINT": f"http://{secrets.host}",
    }
    settings = load(env)
    create_configs(settings, dts.target)
    create_destinations(settings, bigquery.endpoint)
    peers.create_topic(settings.topic_path)
    secrets.secrets[settings.slack_webhook_secret] = slack.url
    failing = settings.tables[0]
    skipped = settings.tables[-1]
    dts.set_outcome(
        f"rds2bq-{settings.env}:{failing.key}",
        "FAILED",
        "Error while reading data, error message: Parquet column 'price' has type DOUBLE which "
        "does not match the target cpp_type INT64",
    )
    # Every adapter as the wiring builds it: the ledger on the Firestore emulator, the event bus
    # on the Pub/Sub emulator, secrets from the Secret Manager stand-in, DTS on its stand-in.
    w = wiring.Wiring(settings)

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

    def secret_reads() -> int:
        return sum(secrets.calls.values())

    def phase(name: str, action: Callable[[], Any], message_kind: str = "") -> Any:
        dts_before, slack_before = len(dts.calls), len(slack.payloads)
        secrets_before = secret_reads()
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
            read = secret_reads() - secrets_before
            if read:
                counts[("Secret Manager reads", "AccessSecretVersion")] += read
            day.record(name, counts, message_kind)

    def handle(data: bytes, attributes: dict[str, str]) -> Any:
        return notify.handle(PubsubMessage(data, attributes, uuid.uuid4().hex, datetime.now(UTC)))

    delivered = len(PUBLISHED)

    def deliver_our_events() -> None:
        nonlocal delivered
        while len(PUBLISHED) > delivered:
            pending, delivered = PUBLISHED[delivered:], len(PUBLISHED)
            for data, attributes in pending:
                kind = attributes.get(EVENT_ATTRIBUTE, "our event")
                phase("notify, our events", partial(handle, data, attributes), kind)

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
        phase(
            "notify, DTS run finished", partial(handle, data, note.attributes), "DTS run finished"
        )
        deliver_our_events()
    phase("idle poll after close", service.poll)
    final = w.ledger.get_run(run.run_id)
    if final is None or final.is_open:
        raise RuntimeError(f"calls: the run did not close: {final}")
    day.detail["final state"] = Counter({final.state.value: 1})
    return day


def extrapolate(points: dict[int, float], x: int) -> float:
    """The day's calls at ``x`` tables: the larger of the parabola through the three sizes (a cost
    that grows faster than the tables shows in it) and the line through the two largest (a
    concave parabola, such as S3's calls once the export is listed whole, would fall below what
    the largest day made, even to 0)."""
    (x1, y1), (x2, y2) = sorted(points.items())[-2:]
    line = y2 + (y2 - y1) * (x - x2) / (x2 - x1)
    return max(0.0, line, fit_quadratic(points, x))


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
    secrets = peers.start_secret_manager({})
    days = {n: play_day(peers, slack, secrets, n, run_times, log) for n in sizes}
    totals = {n: {s: days[n].day_total(s) for s in SERVICES} for n in sizes}
    extrapolated = {}
    if len(sizes) == 3:
        extrapolated = {
            s: extrapolate({n: totals[n][s] for n in sizes}, extrapolate_to) for s in SERVICES
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
        # "an idle poll makes 1 ledger query": every idle poll's Firestore RPCs, by name
        "idle_firestore": sorted(
            {
                ", ".join(
                    f"{k.removeprefix('Firestore RPCs ')} x{v}"
                    for k, v in sorted(days[n].detail[p].items())
                    if k.startswith("Firestore RPCs ")
                )
                or "none"
                for n in sizes
                for p in ("idle poll", "idle poll after close")
            }
        ),
        "idle_firestore_rpcs": sorted(
            {
                days[n].per_invocation(p, "Firestore RPCs")
                for n in sizes
                for p in ("idle poll", "idle poll after close")
            }
        ),
        "final_states": {n: dict(days[n].detail["final state"]) for n in sizes},
        # notify, per message of each kind: Firestore RPCs -> messages (every size)
        "notify_firestore_per_message": {
            n: {
                kind: dict(sorted(spread.items()))
                for kind, spread in sorted(days[n].firestore_per_message.items())
            }
            for n in sizes
        },
        "assumptions": {
            "polls_per_day": POLLS_PER_DAY,
            "exporting_polls": EXPORTING_POLLS,
        },
    }

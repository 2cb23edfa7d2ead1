"""Figure 4 (issue 7): API calls per daily run, by service, and "an idle poll makes no AWS call".

One warm instance of the production wiring (``orchestrator.wiring.Wiring``) plays a whole day:
idle poll, ``start_export``, a poll while the export runs, the poll that sees it COMPLETE, a poll
inside the visibility margin, the hand-off poll, ``notify`` for every DTS run-finished message and
for each of our own events, and an idle poll after the run closed. Every adapter is the real one,
talking to a local peer; each call is counted where it leaves the process:

- AWS (RDS, S3, STS): every botocore API call (``BaseClient._make_api_call``), against moto. AWS
  auth is web identity as in production, with a made-up Google ID token (moto accepts any), so the
  STS exchange is real and counted.
- Firestore: every REST call of the ledger (``GoogleHttp.call`` to a ``.../databases/...`` path),
  against the emulator, named as the SDK's RPCs, and the documents a successful call bills (reads:
  each document a query or a get returns, at least 1 per query, a COUNT 1 per up to 1,000 index
  entries; writes: each write in a commit).
- DTS: every RPC the stand-in served (its call log).
- Pub/Sub: every message of a ``topics.publish`` call (a counting stand-in for its REST call,
  under the real ``PubsubEventBus``). They are then delivered to ``notify``, as the push
  subscription would.
- Slack: every payload the webhook stand-in accepted (through the real webhook notifier).
- Secret Manager: every ``versions.access`` (a counting stand-in for its REST call, under the
  real ``SecretManagerSecrets``, with its cache).

Counts are for one warm instance per function: a cold instance adds one STS exchange and one
secret read per credential or cache lifetime.
"""

from __future__ import annotations

import base64
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
    """Patch botocore's client and the Google REST client to count (once per process)."""
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

    from orchestrator.adapters.google_http import ApiError, GoogleHttp

    original_http = GoogleHttp.call

    def counted_http(self: Any, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        rpc = firestore_rpc(method, path)
        if rpc is None:
            return original_http(self, method, path, *args, **kwargs)
        INSTRUMENTS.add("Firestore RPCs", rpc)
        body = kwargs.get("body", args[0] if args else None)
        try:
            reply = original_http(self, method, path, *args, **kwargs)
        except ApiError as exc:
            if rpc == "get_document" and exc.status == "NOT_FOUND":
                INSTRUMENTS.add("Firestore doc reads", "documents")  # a miss is billed too
            raise
        writes, reads = billed(rpc, body, reply)
        INSTRUMENTS.add("Firestore doc writes", "documents", writes)
        INSTRUMENTS.add("Firestore doc reads", "documents", reads)
        return reply

    GoogleHttp.call = counted_http


# Firestore REST methods by their URL (``.../documents/PATH:verb``), named as the SDK's RPCs were.
_VERBS = {
    "commit": "commit",
    "batchWrite": "batch_write",
    "batchGet": "batch_get_documents",
    "runQuery": "run_query",
    "runAggregationQuery": "run_aggregation_query",
    "beginTransaction": "begin_transaction",
    "rollback": "rollback",
    "listDocuments": "list_documents",
}
_PLAIN = {
    "GET": "get_document",
    "POST": "create_document",
    "PATCH": "update_document",
    "DELETE": "delete_document",
}


def firestore_rpc(method: str, path: str) -> str | None:
    """The Firestore RPC a REST call is, or None for another Google API."""
    if not path.lstrip("/").startswith("projects/") or "/databases/" not in path:
        return None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        return _VERBS.get(last.rsplit(":", 1)[1], last.rsplit(":", 1)[1])
    return _PLAIN.get(method.upper(), method.lower())


def billed(rpc: str, body: Any, reply: Any) -> tuple[int, int]:
    """(document writes, document reads) Firestore bills for one successful call: each write of
    a commit; each document a get or query returns, at least 1 per query; a COUNT 1 read per
    up to 1,000 index entries counted (at least 1)."""
    items = reply if isinstance(reply, list) else [reply]
    items = [i for i in items if isinstance(i, dict)]
    if rpc in ("commit", "batch_write"):
        return len((body or {}).get("writes") or []), 0
    if rpc in ("create_document", "update_document", "delete_document"):
        return 1, 0
    if rpc == "get_document":
        return 0, 1
    if rpc == "batch_get_documents":
        return 0, sum(1 for i in items if "found" in i)
    if rpc == "run_query":
        return 0, max(1, sum(1 for i in items if "document" in i))
    if rpc == "run_aggregation_query":
        reads = 0
        for item in items:
            for value in item.get("result", {}).get("aggregateFields", {}).values():
                counted = int(value.get("integerValue", 0))
                reads += max(1, -(-counted // 1000))
        return 0, max(1, reads)
    if rpc == "list_documents":
        return 0, max(1, sum(len(i.get("documents", [])) for i in items))
    return 0, 0


@dataclass
class CountingPubsub:
    """Stands in for Pub/Sub's REST ``topics.publish`` (the ``GoogleHttp`` under the real
    ``PubsubEventBus``): counts each message and keeps it for delivery to ``notify``."""

    messages: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    delivered: int = 0

    def call(self, method: str, path: str, body: Any = None, **_: Any) -> dict[str, Any]:
        ids = []
        for message in body["messages"]:
            INSTRUMENTS.add("Pub/Sub publishes", "publish")
            data = base64.b64decode(message["data"])
            self.messages.append((data, dict(message.get("attributes") or {})))
            ids.append(uuid.uuid4().hex)
        return {"messageIds": ids}

    def undelivered(self) -> list[tuple[bytes, dict[str, str]]]:
        pending = self.messages[self.delivered :]
        self.delivered = len(self.messages)
        return pending


class CountingSecrets:
    """Stands in for Secret Manager's REST ``versions.access`` (the ``GoogleHttp`` under the
    real ``SecretManagerSecrets``, with its cache)."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def call(self, method: str, path: str, *_: Any, **__: Any) -> dict[str, Any]:
        INSTRUMENTS.add("Secret Manager reads", "AccessSecretVersion")
        name = path.split("/secrets/", 1)[1].split("/versions/")[0]
        return {"payload": {"data": base64.b64encode(self.values[name].encode()).decode()}}


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
    from orchestrator.core.notifications import PubsubMessage

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
    publisher = CountingPubsub()
    w.__dict__["events"] = PubsubEventBus(publisher, settings.topic_path)  # type: ignore[arg-type]
    w.__dict__["secrets"] = SecretManagerSecrets(
        CountingSecrets({settings.slack_webhook_secret: slack.url}),  # type: ignore[arg-type]
        settings.gcp_project,
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

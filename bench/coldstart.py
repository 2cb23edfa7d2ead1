"""Figure 3 (issues 7 and 11): cold-start import time of each entry point's path, beside the same
path's SDK imports alone and every SDK imported eagerly.

Each path runs for real, once per fresh interpreter, through functions_framework as Cloud
Functions runs it (``bench/_coldstart_child.py``), against the local peers: the Firestore and
Pub/Sub emulators (gRPC, as the SDKs speak to them), moto's server, the DTS and Secret Manager
stand-ins (REST, the SDK clients' ``transport="rest"``), the Slack stand-in. Credentials take the
production path where a path reaches them: ``K_SERVICE`` is set as on Cloud Functions and
``GCE_METADATA_HOST``/``GCE_METADATA_IP`` point google-auth at a metadata-server stand-in
(``devstack.google_standins.MetadataStandIn``), and AWS is reached keyless: an ID token from it
(google-auth), exchanged with moto's STS (``AssumeRoleWithWebIdentity``). The child times every
import in the thread that makes it, in processor time (``_coldstart_child.ImportClock``, not
``-X importtime``: bench/README.md, "Why processor time"); the figure is the sum of the
self-times of every module imported between loading ``main.py`` and the reply, so network waits
do not count. The code is a byte-compiled copy of what is deployed (``compileall``, as the Cloud
Functions buildpack does).

Beside each path, measured in the same run (each the best of N fresh interpreters, module by
module):

- (a) the path's SDK imports alone: right after each run of the path, a fresh interpreter in the
  same state (functions_framework loaded and warmed) imports every third-party module that run
  loaded, in the order it loaded them (``replay_modules``): the SDK packages and the submodules
  the path made them load by building a client and making its first call. Nothing of ours, and no
  standard-library module unless an SDK module imports it. (1) - (a) is what our code adds to the
  path: our own modules, the standard-library modules they import, and the garbage collector's
  passes over the objects they add.
- the former (a), kept beside it: the SDK *packages* alone (``SDK_IMPORTS``), which left the SDK
  submodules a path loads on its first call in (1) - (a) as if they were ours.
- (b) main.py plus every SDK imported eagerly (``EVERYTHING``).
"""

from __future__ import annotations

import ast
import base64
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import BASE_ENV, PROJECT, ROOT, child_env, iso, load, median, parse_result
from devstack.google_standins import MetadataStandIn
from devstack.stack import DEFAULT_TABLES

CHILD = str(ROOT / "bench" / "_coldstart_child.py")
TARGET_OWN_MS = 40.0  # issue 11: our code adds at most this much to each path's SDK imports
# The SDKs, as the child detects them (``_coldstart_child.SDKS``), and what column (a) imports for
# each one a path loaded: the package the adapter imports (``from google.cloud import firestore``,
# ``import boto3``, ...). "id token" is google-auth's ID-token fetch (keyless AWS); its package,
# google-auth, comes with every Google client, so only these two modules are its own.
SDK_IMPORTS: dict[str, tuple[str, ...]] = {
    "firestore": ("google.cloud.firestore",),
    "pubsub": ("google.cloud.pubsub_v1",),
    "dts": ("google.cloud.bigquery_datatransfer_v1",),
    "secretmanager": ("google.cloud.secretmanager",),
    "bigquery": ("google.cloud.bigquery",),
    "boto3": ("boto3",),
    "id token": ("google.oauth2.id_token", "google.auth.transport.requests"),
}
# The client libraries issue 11 names; "does the path load only what it uses" is checked on these
# (botocore comes with boto3; grpc and google-auth with every Google client).
CLIENT_SDKS = ("firestore", "pubsub", "dts", "secretmanager", "bigquery", "boto3")
EVERYTHING = tuple(m for sdk in SDK_IMPORTS.values() for m in sdk)
# What production builds on top of the emulator paths: google.auth.default() resolving the
# metadata server's credentials and the authenticated gRPC channel (the peers take anonymous
# credentials, so no measured path imports these). Measured once, after Firestore, for the note.
PRODUCTION_CREDENTIALS = (
    "google.auth._default",
    "google.auth.compute_engine",
    "google.oauth2.credentials",
    "google.oauth2.reauth",
    "google.auth.transport.grpc",
    "grpc._plugin_wrapping",
)
COLD_TABLES = DEFAULT_TABLES  # the demo's day: a dozen tables
# Repetition r runs everything its children time depths(reps)[r] frames deeper (the child's
# ``at_depth``, whose frames take about 120 bytes): spread over a little more than one 16 KiB
# chunk of the interpreter's frame stack, so that a chunk boundary that makes one import thrash
# in one repetition misses it in most others (bench/README.md, "Stack depth"). Repetition 0 runs
# at the code's own depth.
DEPTH_SPAN = 144


def depths(reps: int) -> list[int]:
    return [rep * DEPTH_SPAN // reps for rep in range(reps)]


# Where an imported module's time is booked (first match wins; "google" after the SDKs).
FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("botocore", ("boto3", "botocore", "s3transfer", "jmespath", "dateutil")),
    (
        "firestore",
        (
            "google.cloud.firestore",
            "google.cloud.firestore_v1",
            "google.cloud.firestore_bundle",
            "google.cloud.firestore_admin_v1",
        ),
    ),
    (
        "pubsub",
        ("google.cloud.pubsub", "google.cloud.pubsub_v1", "google.pubsub", "google.pubsub_v1"),
    ),
    ("dts", ("google.cloud.bigquery_datatransfer", "google.cloud.bigquery_datatransfer_v1")),
    ("bigquery", ("google.cloud.bigquery", "google.cloud.bigquery_v2")),
    (
        "secretmanager",
        (
            "google.cloud.secretmanager",
            "google.cloud.secretmanager_v1",
            "google.cloud.secretmanager_v1beta1",
            "google.cloud.secretmanager_v1beta2",
        ),
    ),
    (
        "google core",
        (
            "google",
            "grpc",
            "grpc_status",
            "proto",
            "cryptography",
            "cffi",
            "rsa",
            "pyasn1",
            "pyasn1_modules",
            "requests",
            "urllib3",
            "certifi",
            "charset_normalizer",
            "idna",
            "google_crc32c",
            "cachetools",
            "opentelemetry",
        ),
    ),
    ("rds2bq", ("orchestrator", "main")),
)
SDK_COLUMNS = ("firestore", "pubsub", "dts", "secretmanager", "bigquery", "boto3", "id token")


def family(module: str) -> str:
    for name, prefixes in FAMILIES:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return name
    return "stdlib/other"


def deploy(directory: Path) -> Path:
    """What ``gcloud functions deploy`` ships and its buildpack then byte-compiles
    (``python -m compileall``): main.py and orchestrator/. Returns the deployed main.py."""
    target = directory / "deployed"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(
        ROOT / "orchestrator",
        target / "orchestrator",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    shutil.copy2(ROOT / "main.py", target / "main.py")
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(target)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return target / "main.py"


def defined_functions() -> dict[str, str]:
    """Entry points in main.py and their signature type (read, not imported)."""
    tree = ast.parse((ROOT / "main.py").read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                text = ast.unparse(deco)
                if text.endswith("cloud_event"):
                    found[node.name] = "cloudevent"
                elif text.endswith("http"):
                    found[node.name] = "http"
    return found


def is_stdlib(module: str) -> bool:
    top = module.partition(".")[0]
    return top in sys.stdlib_module_names or top.startswith("_sysconfigdata")


def replay_modules(loaded: Sequence[str]) -> tuple[str, ...]:
    """Column (a) of a path: every third-party module its run loaded (``loaded``, in the order
    ``sys.modules`` got them), neither ours nor the standard library's."""
    return tuple(m for m in loaded if family(m) != "rds2bq" and not is_stdlib(m))


def loaded_sdks(sdks: dict[str, bool]) -> list[str]:
    """The client SDKs a child reported loaded (boto3 standing for boto3 + botocore)."""
    found = [name for name in CLIENT_SDKS if sdks.get(name)]
    if sdks.get("botocore") and not sdks.get("boto3"):
        found.append("botocore")
    return found


def sdk_modules(sdks: dict[str, bool]) -> tuple[str, ...]:
    """Column (a)'s imports for a path that loaded ``sdks``: each loaded SDK's package(s)."""
    names = [*loaded_sdks(sdks), *(["id token"] if sdks.get("id token") else [])]
    return tuple(m for name in names for m in SDK_IMPORTS.get(name, (name,)))


@dataclass
class Scenario:
    name: str  # what the table shows
    target: str  # the entry point
    signature: str
    envs: list[dict[str, str]]  # one per repetition (fresh ledger state where the path mutates it)
    expected: tuple[str, ...] | None  # the client SDKs the path must load (None: report only)
    body: Any = None
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    expect: str = ""  # a substring the reply must hold
    call: bool = True  # False: load main.py only
    bodies: list[Any] | None = None  # one body per repetition, instead of ``body``
    before: Callable[[int], None] | None = None  # run before repetition ``rep``
    check: Callable[[int], str | None] | None = None  # what is wrong after repetition ``rep``

    main: str = ""  # the deployed main.py

    def spec(self, rep: int) -> dict[str, Any]:
        return {
            "kind": "path",
            "target": self.target,
            "signature": self.signature,
            "source": self.main,
            "call": self.call,
            "method": self.method,
            "json": self.bodies[rep] if self.bodies is not None else self.body,
            "headers": self.headers,
        }


def push_body(data: bytes, attributes: dict[str, str]) -> dict[str, Any]:
    """The push subscription's body for one Pub/Sub message."""
    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": attributes,
            "messageId": uuid.uuid4().hex,
            "publishTime": iso(datetime.now(UTC)),
        },
        "subscription": f"projects/{PROJECT}/subscriptions/rds2bq-notify",
    }


def note_body(note: Any) -> dict[str, Any]:
    """The push body of one of the DTS stand-in's run-finished notifications."""
    return push_body(json.dumps(note.payload).encode(), dict(note.attributes))


CLOUD_EVENT_HEADERS = {
    "ce-id": "bench",
    "ce-specversion": "1.0",
    "ce-source": f"//pubsub.googleapis.com/projects/{PROJECT}/topics/rds2bq-events",
    "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
}


class Preparer:
    """Puts the ledger (Firestore emulator), moto and the DTS stand-in in the state each path
    starts from, with the production adapters and service."""

    def __init__(self, peers: Any, dts: Any, base_env: dict[str, str], run_times: Any) -> None:
        self.peers = peers
        self.dts = dts
        self.base_env = base_env
        self.run_times = run_times
        self._ledgers: dict[str, Any] = {}

    def env(self, collection: str) -> dict[str, str]:
        return {**self.base_env, "RDS2BQ_LEDGER_COLLECTION": collection}

    def ledger(self, collection: str) -> Any:
        """The production ledger on the emulator (the harness has FIRESTORE_EMULATOR_HOST)."""
        from orchestrator.adapters.ledger import build_ledger

        if collection not in self._ledgers:
            self._ledgers[collection] = build_ledger(load(self.env(collection)))
        return self._ledgers[collection]

    def service(self, env: dict[str, str], exporter: Any, clock: Any) -> Any:
        from orchestrator.adapters.dts import build_transfer_runner
        from orchestrator.app.daily import Orchestrator
        from tests.fakes import RecordingEventBus

        settings = load(env)
        transfers = build_transfer_runner(settings)
        return Orchestrator(
            settings,
            self.ledger(settings.ledger_collection),
            lambda: exporter,
            lambda: transfers,
            RecordingEventBus(),
            clock,
        )

    def notify_service(self, service: Any, clock: Any) -> Any:
        """The production ``NotifyService`` as the wiring builds it, on ``service``'s ledger, with
        a recording notifier and event bus (nothing of the preparation reaches Slack or
        Pub/Sub)."""
        from orchestrator import wiring
        from tests.fakes import RecordingEventBus, RecordingNotifier

        w = wiring.Wiring(service.settings)
        w.__dict__.update(  # the cached properties, pre-filled
            ledger=service.ledger, notifier=RecordingNotifier(), events=RecordingEventBus()
        )
        notify = w.notify_service
        notify.clock = clock
        return notify

    def exported(self, collection: str) -> tuple[dict[str, str], Any, Any, Any]:
        """A run whose export completed 15 minutes ago (margin passed), not yet handed off."""
        from orchestrator.core.model import ExportStatus, RunState, TableExportStatus
        from tests.fakes import FakeExporter, FixedClock

        env = self.env(collection)
        run_time = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=15)
        clock = FixedClock(run_time + timedelta(seconds=20))
        exporter = FakeExporter(clusters={load(env).source_id})
        service = self.service(env, exporter, clock)
        run = service.start_export(run_time)
        exporter.tables_info[run.export_task_id] = [
            TableExportStatus(max(t.export_targets, key=len), "COMPLETE")
            for t in service.settings.tables
        ]
        exporter.set_status(
            run.export_task_id, ExportStatus.COMPLETE, percent=100, task_end_time=clock.now()
        )
        service.poll()
        state = service.ledger.get_run(run.run_id).state
        assert state is RunState.EXPORTED, state
        self.write_files(service.settings, run.export_task_id)
        return env, service, clock, run

    def write_files(self, settings: Any, export_id: str) -> None:
        """One data file per table where the export puts it, so that DTS (the stand-in, which
        lists moto) loads something: a load that matched nothing would be EMPTY."""
        import boto3

        from bench.peers import bench_table
        from devstack.parquet import data_files

        s3 = boto3.client(
            "s3",
            endpoint_url=self.peers.moto.endpoint,
            region_name=settings.aws_region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        body = data_files(bench_table(), 1)[0]  # a real Parquet file: the preflight reads it
        for table in settings.tables:
            parts = (settings.s3_prefix, export_id, table.export_dir, "1", "part-00000.gz.parquet")
            key = "/".join(p for p in parts if p)
            s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=body)

    def handed_off(self, collection: str) -> tuple[dict[str, str], Any, Any, Any, list[Any]]:
        """A handed-off run whose DTS runs have all finished (succeeded), none recorded yet:
        returns the stand-in's run-finished notifications of its tables, in table order."""
        env, service, clock, run = self.exported(collection)
        clock.current = datetime.now(UTC)
        service.poll()  # hand-off, through the DTS stand-in
        tables = service.ledger.tables(run.run_id)
        assert all(t.dts_run for t in tables), tables
        self.dts.finish_pending()
        by_run = {n.payload.get("name"): n for n in self.dts.notifications}
        return env, service, clock, run, [by_run[t.dts_run] for t in tables]

    def started(self, collection: str) -> tuple[dict[str, str], dict[str, Any], str]:
        """A handed-off run whose first table's DTS run has finished (more are to come): the
        push body of that run's notification, and the table key."""
        env, service, _, run, notes = self.handed_off(collection)
        first = service.ledger.tables(run.run_id)[0]
        return env, note_body(notes[0]), first.key

    def recorded(self, collection: str, *, but_the_last: bool) -> tuple[Any, ...]:
        """A handed-off run whose tables' outcomes notify has recorded (all, or all but the
        last): its environment, the run, the notify service that recorded them, and every
        table's notification."""
        from orchestrator.core.notifications import message_from_push

        env, service, clock, run, notes = self.handed_off(collection)
        notify = self.notify_service(service, clock)
        for note in notes[:-1] if but_the_last else notes:
            notify.handle(message_from_push(note_body(note)))
        return env, service, run, notify, notes

    def closing(self, collection: str) -> tuple[dict[str, str], dict[str, Any], str]:
        """A handed-off run with every table's outcome recorded but the last: the push body of
        the last one's notification (handling it publishes TABLES_FINISHED), and the run id."""
        env, service, run, _, notes = self.recorded(collection, but_the_last=True)
        assert service.ledger.count_unfinished(run.run_id) == 1
        return env, note_body(notes[-1]), run.run_id

    def finished(self, collection: str) -> tuple[dict[str, str], dict[str, Any], str]:
        """A handed-off run with every table's outcome recorded: the push body of the
        TABLES_FINISHED its last notification published (handling it closes the run and
        publishes RUN_CLOSED), and the run id."""
        from orchestrator.adapters.pubsub import encode_message
        from orchestrator.core.model import EventKind

        env, _, run, notify, _ = self.recorded(collection, but_the_last=False)
        event = next(e for e in notify.events.events if e.kind is EventKind.TABLES_FINISHED)
        return env, push_body(*encode_message(event)), run.run_id

    def our_event(self, collection: str) -> tuple[dict[str, str], dict[str, Any]]:
        """A run whose export has started, and the push body of its EXPORT_STARTED event as our
        own publisher would have sent it (handling it posts to Slack)."""
        from orchestrator.adapters.pubsub import encode_message
        from orchestrator.core.model import EventKind

        env, service, _, _ = self.exported(collection)
        event = next(e for e in service.events.events if e.kind is EventKind.EXPORT_STARTED)
        return env, push_body(*encode_message(event))

    def aws_exporter(self, env: dict[str, str]) -> Any:
        """The production AWS adapter against moto (default credential chain)."""
        from orchestrator.adapters.aws import build_exporter
        from orchestrator.adapters.aws_session import build_session

        s = load(env)
        return build_exporter(s, build_session("default", s.aws_region))

    def exporting(self, collection: str) -> dict[str, str]:
        """A run whose export is IN_PROGRESS in moto (the real AWS adapter started it)."""
        from bench.common import FixedOffsetClock

        env = self.env(collection)
        service = self.service(env, self.aws_exporter(env), FixedOffsetClock())
        run = service.start_export(self.run_times.take())
        self.peers.control.progress(run.export_task_id, 40, 1.5)
        service.poll()
        return env

    def failed(self, collection: str) -> tuple[dict[str, str], str, Any]:
        """A closed run with one failed table, as the operator finds it: the export ran in moto
        (started by the real AWS adapter, its files written as RDS lays them out), the hand-off
        started every table's DTS run, the stand-in ran them (the last table's fails) and
        ``NotifyService`` recorded each run-finished message in the ledger. Returns the run id
        and the failed table's record."""
        from bench.common import FixedOffsetClock
        from devstack.aws import realistic_layout
        from orchestrator.adapters.pubsub import encode_message
        from orchestrator.core.keys import display_name_for
        from orchestrator.core.model import EventKind, RunState, TableState
        from orchestrator.core.notifications import message_from_push

        env = self.env(collection)
        clock = FixedOffsetClock()
        service = self.service(env, self.aws_exporter(env), clock)
        settings = service.settings
        run = service.start_export(self.run_times.take())
        task = self.peers.control.task(run.export_task_id)
        self.peers.control.complete(run.export_task_id, *realistic_layout(task.export_only))
        clock.offset = timedelta(minutes=settings.visibility_margin_minutes + 1)
        service.poll()  # sees COMPLETE, margin passed: hands off through the DTS stand-in
        tables = service.ledger.tables(run.run_id)
        assert all(t.state is TableState.STARTED for t in tables), tables
        failing = settings.tables[-1].key
        runs = {t.dts_run for t in tables}
        self.dts.set_outcome(display_name_for(settings.env, failing), "FAILED", "bench: failed")
        try:
            self.dts.finish_pending()
        finally:
            self.dts.clear_outcomes()
        notify = self.notify_service(service, clock)
        for note in [n for n in self.dts.notifications if n.payload.get("name") in runs]:
            notify.handle(message_from_push(note_body(note)))
        # the last one announced TABLES_FINISHED: its message closes the run
        finished = [e for e in notify.events.events if e.kind is EventKind.TABLES_FINISHED]
        for event in finished:
            notify.handle(message_from_push(push_body(*encode_message(event))))
        closed = service.ledger.get_run(run.run_id)
        after = {t.key: t for t in service.ledger.tables(run.run_id)}
        assert closed is not None and closed.state is not RunState.TRANSFERRING, closed
        not_loaded = [k for k, t in after.items() if t.state is not TableState.SUCCEEDED]
        assert not_loaded == [failing] and after[failing].state is TableState.FAILED, after
        return env, run.run_id, after[failing]

    def table(self, collection: str, run_id: str, key: str) -> Any:
        return next(t for t in self.ledger(collection).tables(run_id) if t.key == key)

    def table_state(self, collection: str, key: str) -> str:
        runs = self.ledger(collection).recent_runs(1)
        tables = {t.key: t for t in self.ledger(collection).tables(runs[0].run_id)}
        return str(tables[key].state.value)


def scenarios(prep: Preparer, slack: Any, reps: int, prefix: str) -> list[Scenario]:
    def fresh(name: str) -> list[str]:
        return [f"{prefix}-{name}-{i}" for i in range(reps)]

    idle = prep.env(f"{prefix}-idle")
    out: list[Scenario] = [
        Scenario("import main alone", "poll", "http", [idle] * reps, (), call=False),
        Scenario(
            "poll, no open run (idle)",
            "poll",
            "http",
            [idle] * reps,
            ("firestore",),
            body={},
            expect='"runs": []',
        ),
    ]
    exporting = prep.exporting(f"{prefix}-exporting")
    out.append(
        Scenario(
            "poll, export in progress",
            "poll",
            "http",
            [exporting] * reps,
            ("firestore", "boto3"),
            body={},
            expect="export-in_progress",
        )
    )
    out.append(
        Scenario(
            "status, recent runs",
            "status",
            "http",
            [exporting] * reps,
            ("firestore",),
            method="GET",
            expect="EXPORTING",
        )
    )
    out.append(
        Scenario(
            "poll, hand-off (12 tables; publishes HANDOFF_DONE)",
            "poll",
            "http",
            [prep.exported(c)[0] for c in fresh("handoff")],
            # issue 11 lists Firestore and DTS; the path also publishes its event (its outbox),
            # and "Pub/Sub only when it publishes" is the rule notify is held to; its preflight
            # (issue 15) reads the files' footers (boto3) and the destinations (BigQuery)
            ("firestore", "dts", "pubsub", "boto3", "bigquery"),
            body={},
            expect="handed-off",
        )
    )
    slot = iso(prep.run_times.take())
    out.append(
        Scenario(
            "start_export (publishes EXPORT_STARTED)",
            "start_export",
            "http",
            [prep.env(c) for c in fresh("start")],
            ("firestore", "boto3", "pubsub"),  # as the hand-off: it publishes its event
            body={"slot": slot},
            expect='"EXPORTING"',
        )
    )

    started = [prep.started(c) for c in fresh("notify")]

    def notify_check(rep: int) -> str | None:
        env, _, key = started[rep]
        state = prep.table_state(env["RDS2BQ_LEDGER_COLLECTION"], key)
        return None if state == "SUCCEEDED" else f"the table is {state}, not SUCCEEDED"

    out.append(
        Scenario(
            "notify, DTS run succeeded (records it)",
            "notify",
            "cloudevent",
            [env for env, _, _ in started],
            # a SUCCEEDED run's transfer logs say whether it loaded rows; BigQuery, how many
            ("firestore", "dts", "bigquery"),
            headers=CLOUD_EVENT_HEADERS,
            bodies=[body for _, body, _ in started],
            check=notify_check,
        )
    )

    closing = [prep.closing(c) for c in fresh("closing")]

    def closing_check(rep: int) -> str | None:
        env, _, run_id = closing[rep]
        left = prep.ledger(env["RDS2BQ_LEDGER_COLLECTION"]).count_unfinished(run_id)
        return None if left == 0 else f"{left} tables unfinished, not 0"

    out.append(
        Scenario(
            "notify, last DTS run succeeded (announces TABLES_FINISHED)",
            "notify",
            "cloudevent",
            [env for env, _, _ in closing],
            ("firestore", "dts", "bigquery", "pubsub"),
            headers=CLOUD_EVENT_HEADERS,
            bodies=[body for _, body, _ in closing],
            check=closing_check,
        )
    )

    finished = [prep.finished(c) for c in fresh("finished")]

    def finished_check(rep: int) -> str | None:
        env, _, run_id = finished[rep]
        run = prep.ledger(env["RDS2BQ_LEDGER_COLLECTION"]).get_run(run_id)
        if run is not None and not run.is_open:
            return None
        return f"the run is {run.state.value if run else 'gone'}, not closed"

    out.append(
        Scenario(
            "notify, TABLES_FINISHED (closes, publishes RUN_CLOSED)",
            "notify",
            "cloudevent",
            [env for env, _, _ in finished],
            ("firestore", "pubsub"),
            headers=CLOUD_EVENT_HEADERS,
            bodies=[body for _, body, _ in finished],
            check=finished_check,
        )
    )

    events = [prep.our_event(c) for c in fresh("event")]
    posted: list[int] = []

    def before_event(rep: int) -> None:
        posted.append(len(slack.payloads))

    def event_check(rep: int) -> str | None:
        if len(slack.payloads) == posted[-1] + 1:
            return None
        return f"{len(slack.payloads) - posted[-1]} Slack posts, not 1"

    out.append(
        Scenario(
            "notify, our event (posts to Slack)",
            "notify",
            "cloudevent",
            [env for env, _ in events],
            ("firestore", "secretmanager"),
            headers=CLOUD_EVENT_HEADERS,
            bodies=[body for _, body in events],
            before=before_event,
            check=event_check,
        )
    )

    reruns = [prep.failed(c) for c in fresh("rerun")]

    def rerun_check(rep: int) -> str | None:
        env, run_id, before = reruns[rep]
        t = prep.table(env["RDS2BQ_LEDGER_COLLECTION"], run_id, before.key)
        if (
            t.state.value == "STARTED"
            and t.attempts == before.attempts + 1
            and (t.dts_run != before.dts_run)
        ):
            return None
        return (
            f"{t.key} is {t.state.value}, attempt {t.attempts}, DTS run {t.dts_run}: not "
            f"started again (before: {before.state.value}, attempt {before.attempts})"
        )

    out.append(
        Scenario(
            "rerun, failed table (re-transfer)",
            "rerun",
            "http",
            [env for env, _, _ in reruns],
            None,  # issue 11: "whatever it really loads (measure and report)"
            bodies=[{"run_id": run_id, "failed": True} for _, run_id, _ in reruns],
            expect='"action": "started"',
            check=rerun_check,
        )
    )
    return out


def run_one(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    deployed = str(Path(spec["source"] or spec["deployed"]).parent)
    done = subprocess.run(
        [sys.executable, CHILD, json.dumps(spec)],
        cwd=deployed,
        env={**child_env(env), "PYTHONPATH": deployed},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cold-start child failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result = parse_result(done.stdout, "cold-start child")
    imports = merged(result.pop("imports"))
    families: dict[str, float] = {}
    for module, self_us in imports:
        families[family(module)] = families.get(family(module), 0.0) + self_us / 1000
    result["total_ms"] = sum(us for _, us in imports) / 1000
    result["families_ms"] = families
    result["modules"] = len(imports)
    top = sorted(imports, key=lambda m: m[1], reverse=True)[:5]
    result["top_self"] = [(m, us / 1000) for m, us in top]
    result["imports"] = imports  # dropped from the results once compared
    billed = full_passes_billed(imports, result["gc_full_passes"])
    result["gc_full_in_imports_ms"] = sum(billed.values()) / 1000
    result["gc_full_billed"] = sorted(billed.items(), key=lambda m: -m[1])
    result["imports_less_full_gc"] = [(m, max(0, us - billed.get(m, 0))) for m, us in imports]
    return result


def merged(imports: Sequence[Sequence[Any]]) -> list[tuple[str, int]]:
    """(module, self-time in µs), in the order the child's clock met them, one entry per module:
    a module two threads asked for at once is billed the time both spent on it (the one that
    loaded it, and the other's before it saw it loading)."""
    total: dict[str, int] = {}
    for module, us in imports:
        total[module] = total.get(module, 0) + int(us)
    return list(total.items())


def full_passes_billed(
    imports: Sequence[tuple[str, int]], passes: Sequence[tuple[Sequence[str], float]]
) -> dict[str, int]:
    """The full GC passes that ran inside an import, in µs by the module whose self-time holds
    them: the innermost import under way that the clock timed (the child's ``importing``). A
    pass outside every timed import (during the call, or in main.py's own body) is in no
    self-time, and not here."""
    timed = {m for m, _ in imports}
    billed: dict[str, int] = {}
    for stack, ms in passes:
        module = next((m for m in stack if m in timed), None)
        if module is not None:
            billed[module] = billed.get(module, 0) + round(ms * 1000)
    return billed


def per_module_best(runs: list[dict[str, Any]], view: str = "imports") -> dict[str, int]:
    """Each module's smallest self-time in any of the runs (``view``: "imports", or
    "imports_less_full_gc", the same less the full GC passes billed to them)."""
    best: dict[str, int] = {}
    for run in runs:
        for module, us in run[view]:
            best[module] = min(us, best.get(module, us))
    return best


def decompose(path: list[dict[str, Any]], alone: list[dict[str, Any]]) -> dict[str, Any]:
    """(1) - (a), best of N module by module, split four ways: our own modules; the modules only
    the path imports (against the replay (a): the standard-library modules our code imports);
    the modules only (a) imports (subtracted); and the modules both import, their difference
    (the largest named)."""
    mine, theirs = per_module_best(path), per_module_best(alone) if alone else {}

    def top(items: list[tuple[str, float]], n: int = 3) -> list[tuple[str, float]]:
        return sorted(items, key=lambda x: -abs(x[1]))[:n]

    ours = [(m, us / 1000) for m, us in mine.items() if family(m) == "rds2bq"]
    path_only = [
        (m, us / 1000) for m, us in mine.items() if m not in theirs and family(m) != "rds2bq"
    ]
    alone_only = [(m, us / 1000) for m, us in theirs.items() if m not in mine]
    common = [(m, (us - theirs[m]) / 1000) for m, us in mine.items() if m in theirs]
    threaded = {m for run in path for m in run.get("threaded_imports", ())}
    return {
        "ours_ms": sum(t for _, t in ours),
        "ours_modules": len(ours),
        "ours_top": top(ours),
        "path_only_ms": sum(t for _, t in path_only),
        "path_only_modules": len(path_only),
        "path_only_top": top(path_only),
        "alone_only_ms": sum(t for _, t in alone_only),
        "alone_only_top": top(alone_only),
        "common_ms": sum(t for _, t in common),
        # of which the modules the path imported in a worker thread, beside the others running
        "common_threaded_ms": sum(t for m, t in common if m in threaded),
        "common_threaded_modules": sum(1 for m, _ in common if m in threaded),
        "common_top": top(common, 2),
    }


def per_module_best_ms(runs: list[dict[str, Any]], view: str = "imports") -> float:
    """The sum, over every module the runs imported, of its smallest self-time in any of them:
    the best of N taken module by module. On a shared machine a run is rarely free of
    interference from start to end, but each module has one undisturbed run among N; a spike
    (the process descheduled, another process's burst) is filtered wherever it lands."""
    return sum(per_module_best(runs, view).values()) / 1000


def _full_gc_in_imports(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The full GC passes billed to imports, over the runs: the least time, and where they ran
    in the run with the most (module, ms)."""
    if not runs:
        return {"min_ms": 0.0, "where": []}
    worst = max(runs, key=lambda r: r["gc_full_in_imports_ms"])
    return {
        "min_ms": min(r["gc_full_in_imports_ms"] for r in runs),
        "where": [(m, us / 1000) for m, us in worst["gc_full_billed"]],
    }


def imports_spec(
    main: str, modules: Sequence[str], *, with_main: bool, tolerant: bool = False, depth: int = 0
) -> dict[str, Any]:
    """A child that imports ``modules`` (after main.py if ``with_main``) and calls nothing,
    ``depth`` frames deeper than its own."""
    return {
        "depth": depth,
        "kind": "imports",
        "target": "poll",
        "source": main if with_main else "",
        "deployed": main,  # where it runs (its working directory), main.py or not
        "modules": list(modules),
        "tolerant": tolerant,
    }


def measure(
    peers: Any, dts: Any, run_times: Any, *, bigquery: Any, reps: int = 3, log: Any = print
) -> dict[str, Any]:
    """``dts`` loads into ``bigquery`` (the BigQuery stand-in), where the destinations are."""
    metadata = MetadataStandIn()
    try:
        return _measure(peers, dts, bigquery, run_times, metadata, reps, log)
    finally:
        metadata.stop()


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    best = min(runs, key=lambda r: r["total_ms"])
    return {
        **best,
        "best_ms": best["total_ms"],
        "median_ms": median(r["total_ms"] for r in runs),
        "samples_ms": [r["total_ms"] for r in runs],
        "peak_rss_max_mib": max(r["peak_rss_mib"] for r in runs),
        "gc_min_ms": min(r["gc_ms"] for r in runs),
        "gc_full_min_ms": min(r["gc_full_ms"] for r in runs),
        "gc_full_max": max(r["gc_full"] for r in runs),
    }


def _measure(
    peers: Any,
    dts: Any,
    bigquery: Any,
    run_times: Any,
    metadata: MetadataStandIn,
    reps: int,
    log: Any,
) -> dict[str, Any]:
    from bench.common import write_tables_file
    from bench.peers import create_configs, create_destinations

    tables = write_tables_file(peers.work_dir, COLD_TABLES, "cold")
    slack = peers.start_slack()
    base = {
        **BASE_ENV,
        **peers.aws_env(),
        **peers.emulator_env(),
        "RDS2BQ_ENV": "cold",
        "RDS2BQ_AWS_AUTH": "web-identity",
        "RDS2BQ_TABLES_FILE": str(tables),
        "RDS2BQ_BQ_LOCATION": "cold",
        "RDS2BQ_DTS_ENDPOINT": dts.target,
        "RDS2BQ_BQ_ENDPOINT": bigquery.endpoint,
        "RDS2BQ_SECRETS_BACKEND": "secret-manager",
        "K_SERVICE": "rds2bq",  # as Cloud Functions (gen2) sets it
        # google-auth reads the host at import (its calls) and the IP per call (its ping)
        "GCE_METADATA_HOST": metadata.host,
        "GCE_METADATA_IP": metadata.host,
    }
    settings = load(base)
    secrets = peers.start_secret_manager({settings.slack_webhook_secret: slack.url})
    base["RDS2BQ_SECRETS_ENDPOINT"] = f"http://{secrets.host}"
    create_configs(settings, dts.target)
    create_destinations(settings, bigquery.endpoint)
    peers.create_topic(settings.topic_path)
    prep = Preparer(peers, dts, base, run_times)
    log("cold start: preparing each path's starting state in the emulators and moto")
    prefix = f"bench-cold-{uuid.uuid4().hex[:6]}"
    paths = scenarios(prep, slack, reps, prefix)
    main = str(deploy(peers.work_dir))
    for scenario in paths:
        scenario.main = main
    idle_env = prep.env(f"{prefix}-idle")
    everything = imports_spec(main, EVERYTHING, with_main=True)
    credentials = imports_spec(
        main, ["google.cloud.firestore", *PRODUCTION_CREDENTIALS], with_main=False
    )
    log("cold start: warm-up (compiles bytecode; not counted)")
    run_one(everything, idle_env)
    samples: dict[str, list[dict[str, Any]]] = {s.name: [] for s in paths}
    replays: dict[str, list[dict[str, Any]]] = {s.name: [] for s in paths}  # column (a)
    baseline: list[dict[str, Any]] = []
    alone: dict[tuple[str, ...], list[dict[str, Any]]] = {}  # the SDK packages, by set
    extra: dict[str, list[dict[str, Any]]] = {"firestore": [], "firestore + credentials": []}
    for rep, depth in enumerate(depths(reps)):
        log(f"cold start: round {rep + 1} of {reps} ({depth} frames deeper)")
        baseline.append(run_one({**everything, "depth": depth}, idle_env))
        for s in paths:
            if s.before is not None:
                s.before(rep)
            result = run_one({**s.spec(rep), "depth": depth}, s.envs[rep])
            if s.call and (
                result["status"] != 200 or (s.expect and s.expect not in result["body"])
            ):
                raise RuntimeError(
                    f"cold start, {s.name}: unexpected reply "
                    f"{result['status']} {result['body'][:600]}"
                )
            if s.check is not None and (problem := s.check(rep)):
                raise RuntimeError(f"cold start, {s.name}: {problem}")
            result["sdk_modules"] = list(sdk_modules(result["sdks"]))
            samples[s.name].append(result)
            # column (a), right after: the third-party modules this very run loaded, replayed
            if replay := replay_modules(result["new_modules"]):
                spec = imports_spec(main, replay, with_main=False, tolerant=True, depth=depth)
                replays[s.name].append({**run_one(spec, idle_env), "replayed": len(replay)})
        wanted = {tuple(r[-1]["sdk_modules"]) for r in samples.values()}
        for modules in sorted(wanted):
            if modules:
                spec = imports_spec(main, modules, with_main=False, depth=depth)
                alone.setdefault(modules, []).append(run_one(spec, idle_env))
        firestore = imports_spec(main, ["google.cloud.firestore"], with_main=False, depth=depth)
        extra["firestore"].append(run_one(firestore, idle_env))
        extra["firestore + credentials"].append(run_one({**credentials, "depth": depth}, idle_env))

    out_paths: dict[str, Any] = {}
    for s in paths:
        best = summary(samples[s.name])
        sets = {tuple(r["sdk_modules"]) for r in samples[s.name]}
        modules = tuple(best["sdk_modules"])
        replay = replays[s.name]
        a = summary(replay) if replay else None
        a_ms = a["best_ms"] if a else 0.0
        packages = summary(alone[modules]) if modules else None
        loaded = loaded_sdks(best["sdks"])
        filtered = per_module_best_ms(samples[s.name])
        filtered_a = per_module_best_ms(replay) if replay else 0.0
        filtered_packages = per_module_best_ms(alone[modules]) if modules else 0.0
        less_gc = per_module_best_ms(samples[s.name], "imports_less_full_gc")
        less_gc_a = per_module_best_ms(replay, "imports_less_full_gc") if replay else 0.0
        out_paths[s.name] = {
            **decompose(samples[s.name], replay),
            "filtered_ms": filtered,
            "alone_filtered_ms": filtered_a,
            "own_filtered_ms": filtered - filtered_a,
            # the same, each side less the full GC passes that ran inside its imports
            "less_full_gc_ms": less_gc,
            "alone_less_full_gc_ms": less_gc_a,
            "own_less_full_gc_ms": less_gc - less_gc_a,
            "gc_full_in_imports": _full_gc_in_imports(samples[s.name]),
            "alone_gc_full_in_imports": _full_gc_in_imports(replay),
            "replay_modules": max((r["replayed"] for r in replay), default=0),
            "replay_failed": sorted({m for r in replay for m in r["failed_imports"]}),
            "packages": packages,
            "packages_filtered_ms": filtered_packages,
            "own_vs_packages_ms": filtered - filtered_packages,
            "target": s.target,
            **best,
            "loaded": loaded,
            "expected": None if s.expected is None else list(s.expected),
            "sdks_ok": None if s.expected is None else sorted(loaded) == sorted(s.expected),
            "sdk_sets_seen": len(sets),
            "alone": a,
            "alone_ms": a_ms,
            "own_ms": best["best_ms"] - a_ms,
            # the verdict: (1) - (a), each the best of N module by module (run-to-run noise on a
            # shared machine is as large as the target; the best whole runs are shown too)
            "own_ok": filtered - filtered_a <= TARGET_OWN_MS and len(sets) == 1,
        }
    entry_points = defined_functions()
    covered = {s.target for s in paths}
    credentials_ms = decompose(extra["firestore + credentials"], extra["firestore"])["path_only_ms"]
    everything_filtered = per_module_best_ms(baseline)
    bulky = ("imports", "new_modules", "imports_less_full_gc", "gc_full_passes")
    everything_summary = summary(baseline)
    for runs in [baseline, *samples.values(), *replays.values(), *alone.values(), *extra.values()]:
        for run in runs:
            for key in bulky:
                run.pop(key, None)
    for entry in [*out_paths.values(), everything_summary]:
        for key in bulky:
            entry.pop(key, None)
        for column in ("alone", "packages"):
            for key in bulky:
                (entry.get(column) or {}).pop(key, None)
    return {
        "reps": reps,
        "depths": depths(reps),
        "target_own_ms": TARGET_OWN_MS,
        "everything": {**everything_summary, "filtered_ms": everything_filtered},
        "everything_modules": list(EVERYTHING),
        "paths": out_paths,
        "production_credentials_ms": credentials_ms,
        "production_credentials_modules": list(PRODUCTION_CREDENTIALS),
        "uncovered": sorted(set(entry_points) - covered),
    }

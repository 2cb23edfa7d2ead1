"""Figure 3 (issue 7): cold-start import time of each entry point's path, against importing every
SDK at once.

Each path runs for real, once per fresh interpreter, through functions_framework as Cloud
Functions runs it (``bench/_coldstart_child.py``), against the local peers: the Firestore and
Pub/Sub emulators, moto's server, the DTS stand-in (all reached by the production adapters, over
REST). Credentials take the production path: ``K_SERVICE`` is set as on Cloud Functions, so
tokens come from the metadata server (``devstack.google_standins.MetadataStandIn``), and AWS is
reached keyless: an ID token from it, exchanged with moto's STS (``AssumeRoleWithWebIdentity``).
``python -X importtime`` logs every import; the figure is the sum of the self-times of every
module imported between loading ``main.py`` and the reply, so network waits do not count. The
code is a byte-compiled copy of what is deployed (``compileall``, as the Cloud Functions
buildpack does). Baseline: the same process loading ``main.py`` and then importing the six
SDKs the product's design names (boto3 and the ``google-cloud-*`` clients for Firestore,
Pub/Sub, DTS, BigQuery and Secret Manager): what a version that loads its SDKs at import costs.
Best of N runs, interleaved with the baseline's.
"""

from __future__ import annotations

import ast
import base64
import json
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import BASE_ENV, PROJECT, ROOT, child_env, iso, load, median, parse_result
from devstack.google_standins import MetadataStandIn
from devstack.stack import DEFAULT_TABLES

CHILD = str(ROOT / "bench" / "_coldstart_child.py")
EVERYTHING = (
    "boto3",
    "google.cloud.firestore",
    "google.cloud.pubsub_v1",
    "google.cloud.bigquery_datatransfer_v1",
    "google.cloud.bigquery",
    "google.cloud.secretmanager",
)
COLD_TABLES = DEFAULT_TABLES  # the demo's day: a dozen tables
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
SDK_COLUMNS = ("botocore", "grpc", "firestore", "pubsub", "dts", "bigquery", "secretmanager")
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)\s*$")


def family(module: str) -> str:
    for name, prefixes in FAMILIES:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return name
    return "stdlib/other"


def parse_importtime(stderr: str) -> list[tuple[str, int]]:
    """(module, self-time in µs) of every import between the markers."""
    found: list[tuple[str, int]] = []
    inside = False
    for line in stderr.splitlines():
        if line == "@@START":
            inside = True
        elif line == "@@END":
            return found
        elif inside:
            match = _LINE.match(line)
            if match:
                found.append((match.group(4), int(match.group(1))))
    raise RuntimeError("the cold-start child printed no @@START/@@END markers:\n" + stderr[-3000:])


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


@dataclass
class Scenario:
    name: str  # what the table shows
    target: str  # the entry point
    signature: str
    envs: list[dict[str, str]]  # one per repetition (fresh ledger state where the path mutates it)
    body: Any = None
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    expect: str = ""  # a substring the reply must hold
    check: Any = None  # callable(rep) -> str | None: what is wrong after the call

    main: str = ""  # the deployed main.py

    def spec(self, rep: int) -> dict[str, Any]:
        return {
            "kind": "path",
            "target": self.target,
            "signature": self.signature,
            "source": self.main,
            "method": self.method,
            "json": self.body,
            "headers": self.headers,
        }


def push_body(note: Any) -> dict[str, Any]:
    """The push subscription's body for one of the DTS stand-in's notifications."""
    return {
        "message": {
            "data": base64.b64encode(json.dumps(note.payload).encode()).decode(),
            "attributes": note.attributes,
            "messageId": uuid.uuid4().hex,
            "publishTime": iso(datetime.now(UTC)),
        },
        "subscription": f"projects/{PROJECT}/subscriptions/rds2bq-notify",
    }


class Preparer:
    """Puts the ledger (Firestore emulator), moto and the DTS stand-in in the state each path
    starts from, with the production adapters and service."""

    def __init__(self, peers: Any, dts: Any, base_env: dict[str, str], run_times: Any) -> None:
        self.peers = peers
        self.dts = dts
        self.base_env = base_env
        self.run_times = run_times

    def env(self, collection: str) -> dict[str, str]:
        return {**self.base_env, "RDS2BQ_LEDGER_COLLECTION": collection}

    def ledger(self, collection: str) -> Any:
        from orchestrator.adapters.ledger import build_ledger

        env = self.env(collection)
        return build_ledger(load(env), environ=env)

    def service(self, env: dict[str, str], exporter: Any, clock: Any) -> Any:
        from orchestrator.adapters.dts import build_transfer_runner
        from orchestrator.app.daily import Orchestrator
        from orchestrator.app.ports import RecordingEventBus

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
        return env, service, clock, run

    def started(self, collection: str) -> tuple[dict[str, str], dict[str, Any], str]:
        """A handed-off run whose first table's DTS run has finished: returns the push body of
        that run's notification and the table key."""
        env, service, clock, run = self.exported(collection)
        clock.current = datetime.now(UTC)
        service.poll()  # hand-off, through the DTS stand-in
        first = service.ledger.tables(run.run_id)[0]
        assert first.dts_run, first
        self.dts.finish_pending()
        note = next(n for n in self.dts.notifications if n.payload.get("name") == first.dts_run)
        return env, push_body(note), first.key

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
        from orchestrator.app.notify import NotifyService
        from orchestrator.app.ports import RecordingEventBus, RecordingNotifier
        from orchestrator.core.keys import display_name_for
        from orchestrator.core.model import RunState, TableState
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
        notify = NotifyService(
            settings, service.ledger, RecordingNotifier(), RecordingEventBus(), clock
        )
        for note in [n for n in self.dts.notifications if n.payload.get("name") in runs]:
            notify.handle(message_from_push(push_body(note)))
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


def scenarios(prep: Preparer, reps: int, prefix: str) -> list[Scenario]:
    def fresh(name: str) -> list[str]:
        return [f"{prefix}-{name}-{i}" for i in range(reps)]

    out: list[Scenario] = [
        Scenario(
            "poll, no open run (idle)",
            "poll",
            "http",
            [prep.env(f"{prefix}-idle")] * reps,
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
            method="GET",
            expect="EXPORTING",
        )
    )
    out.append(
        Scenario(
            "poll, hand-off (12 tables)",
            "poll",
            "http",
            [prep.exported(c)[0] for c in fresh("handoff")],
            body={},
            expect="handed-off",
        )
    )
    slot = iso(prep.run_times.take())
    out.append(
        Scenario(
            "start_export",
            "start_export",
            "http",
            [prep.env(c) for c in fresh("start")],
            body={"slot": slot},
            expect='"EXPORTING"',
        )
    )
    notify_envs: list[dict[str, str]] = []
    bodies: list[dict[str, Any]] = []
    keys: list[str] = []
    for collection in fresh("notify"):
        env, body, key = prep.started(collection)
        notify_envs.append(env)
        bodies.append(body)
        keys.append(key)
    notify = Scenario(
        "notify, DTS run succeeded",
        "notify",
        "cloudevent",
        notify_envs,
        headers={
            "ce-id": "bench",
            "ce-specversion": "1.0",
            "ce-source": f"//pubsub.googleapis.com/projects/{PROJECT}/topics/rds2bq-events",
            "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        },
    )
    notify_spec = notify.spec

    def notify_spec_for(rep: int) -> dict[str, Any]:
        spec = notify_spec(rep)
        spec["json"] = bodies[rep]
        return spec

    notify.spec = notify_spec_for  # type: ignore[method-assign]

    def notify_check(rep: int) -> str | None:
        state = prep.table_state(notify_envs[rep]["RDS2BQ_LEDGER_COLLECTION"], keys[rep])
        return None if state == "SUCCEEDED" else f"the table is {state}, not SUCCEEDED"

    notify.check = notify_check
    out.append(notify)
    reruns = [prep.failed(c) for c in fresh("rerun")]

    def rerun_spec_for(rep: int) -> dict[str, Any]:
        spec = Scenario.spec(rerun, rep)
        spec["json"] = {"run_id": reruns[rep][1], "failed": True}
        return spec

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

    rerun = Scenario(
        "rerun, failed table (re-transfer)",
        "rerun",
        "http",
        [env for env, _, _ in reruns],
        expect='"action": "started"',
        check=rerun_check,
    )
    rerun.spec = rerun_spec_for  # type: ignore[method-assign]
    out.append(rerun)
    return out


def run_one(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    deployed = str(Path(spec["source"]).parent)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", CHILD, json.dumps(spec)],
        cwd=deployed,
        env={**child_env(env), "PYTHONPATH": deployed},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cold-start child failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result = parse_result(done.stdout, "cold-start child")
    imports = parse_importtime(done.stderr)
    families: dict[str, float] = {}
    for module, self_us in imports:
        families[family(module)] = families.get(family(module), 0.0) + self_us / 1000
    result["total_ms"] = sum(us for _, us in imports) / 1000
    result["families_ms"] = families
    result["modules"] = len(imports)
    top = sorted(imports, key=lambda m: m[1], reverse=True)[:5]
    result["top_self"] = [(m, us / 1000) for m, us in top]
    return result


def measure(
    peers: Any, dts: Any, run_times: Any, *, reps: int = 3, log: Any = print
) -> dict[str, Any]:
    metadata = MetadataStandIn()
    try:
        return _measure(peers, dts, run_times, metadata, reps, log)
    finally:
        metadata.stop()


def _measure(
    peers: Any, dts: Any, run_times: Any, metadata: MetadataStandIn, reps: int, log: Any
) -> dict[str, Any]:
    from bench.common import write_tables_file
    from bench.peers import create_configs

    tables = write_tables_file(peers.work_dir, COLD_TABLES, "cold")
    base = {
        **BASE_ENV,
        **peers.aws_env(),
        **peers.emulator_env(),
        "RDS2BQ_ENV": "cold",
        "RDS2BQ_AWS_AUTH": "web-identity",
        "RDS2BQ_TABLES_FILE": str(tables),
        "RDS2BQ_BQ_LOCATION": "cold",
        "RDS2BQ_DTS_ENDPOINT": dts.target,
        "RDS2BQ_SECRETS_BACKEND": "secret-manager",
        "K_SERVICE": "rds2bq",  # as Cloud Functions (gen2) sets it: the metadata server's tokens
        "GCE_METADATA_HOST": metadata.host,
    }
    settings = load(base)
    create_configs(settings, dts.target)
    peers.create_topic(settings.topic_path)
    prep = Preparer(peers, dts, base, run_times)
    log("cold start: preparing each path's starting state in the emulators and moto")
    prefix = f"bench-cold-{uuid.uuid4().hex[:6]}"
    paths = scenarios(prep, reps, prefix)
    main = str(deploy(peers.work_dir))
    for scenario in paths:
        scenario.main = main
    everything = {"kind": "everything", "target": "poll", "source": main, "modules": EVERYTHING}
    log("cold start: warm-up (compiles bytecode; not counted)")
    run_one(everything, prep.env(f"{prefix}-idle"))
    samples: dict[str, list[dict[str, Any]]] = {"everything": []}
    for s in paths:
        samples[s.name] = []
    for rep in range(reps):
        log(f"cold start: round {rep + 1} of {reps} ({len(paths) + 1} fresh interpreters)")
        samples["everything"].append(run_one(everything, prep.env(f"{prefix}-idle")))
        for s in paths:
            result = run_one(s.spec(rep), s.envs[rep])
            if result["status"] != 200 or (s.expect and s.expect not in result["body"]):
                raise RuntimeError(
                    f"cold start, {s.name}: unexpected reply "
                    f"{result['status']} {result['body'][:600]}"
                )
            if s.check is not None and (problem := s.check(rep)):
                raise RuntimeError(f"cold start, {s.name}: {problem}")
            samples[s.name].append(result)

    def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
        best = min(runs, key=lambda r: r["total_ms"])
        return {
            **best,
            "best_ms": best["total_ms"],
            "median_ms": median(r["total_ms"] for r in runs),
            "samples_ms": [r["total_ms"] for r in runs],
        }

    entry_points = defined_functions()
    covered = {s.target for s in paths}
    return {
        "reps": reps,
        "everything": summary(samples["everything"]),
        "paths": {s.name: {"target": s.target, **summary(samples[s.name])} for s in paths},
        "uncovered": sorted(set(entry_points) - covered),
    }

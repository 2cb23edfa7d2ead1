"""Figure 3 (issue 7): cold-start import time of each entry point's path, against importing every
SDK at once.

Each path runs for real, once per fresh interpreter, through functions_framework as Cloud
Functions runs it (``bench/_coldstart_child.py``), against the local peers: the Firestore and
Pub/Sub emulators, moto's server, the DTS stand-in. Settings are production's where it changes
what is imported: Secret Manager as the secrets backend (a throw-away service-account key lets
its client be built offline; no path measured here reads a secret). AWS uses boto3's default
chain against moto instead of web identity (which would fetch a Google ID token over the network;
it adds no SDK). ``python -X importtime`` logs every import; the figure is the sum of the
self-times of every module imported between loading ``main.py`` and the reply, so network waits
do not count. The code is a byte-compiled copy of what is deployed (``compileall``, as the Cloud
Functions buildpack does). Baseline: the same process loading ``main.py`` and then importing the six
SDKs. Best of N runs, interleaved with the baseline's.
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
    ("boto3", ("boto3", "botocore", "s3transfer", "jmespath", "dateutil")),
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
SDK_COLUMNS = ("boto3", "firestore", "pubsub", "dts", "bigquery", "secretmanager")
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


def fake_service_account(directory: Path) -> Path:
    """A syntactically valid service-account key that no service accepts: lets Secret Manager's
    client be built without network or real credentials."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = directory / "bench-fake-sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "bench",
                "private_key": pem,
                "client_email": f"bench@{PROJECT}.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    return path


class Preparer:
    """Puts the ledger (Firestore emulator), moto and the DTS stand-in in the state each path
    starts from, with the production adapters and service."""

    def __init__(self, peers: Any, dts: Any, base_env: dict[str, str], run_times: Any) -> None:
        from google.cloud import firestore

        self.peers = peers
        self.dts = dts
        self.base_env = base_env
        self.run_times = run_times
        self.client = firestore.Client(project=PROJECT)

    def env(self, collection: str) -> dict[str, str]:
        return {**self.base_env, "RDS2BQ_LEDGER_COLLECTION": collection}

    def ledger(self, collection: str) -> Any:
        from orchestrator.adapters.ledger import FirestoreLedger

        return FirestoreLedger(self.client, collection)

    def service(self, env: dict[str, str], exporter: Any, clock: Any) -> Any:
        from devstack.dts_standin import client_for
        from orchestrator.adapters.dts import build_transfer_runner
        from orchestrator.ports import RecordingEventBus
        from orchestrator.service import Orchestrator

        settings = load(env)
        transfers = build_transfer_runner(settings, client=client_for(self.dts.target))
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
        from orchestrator.model import ExportStatus, RunState, TableExportStatus
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
        body = {
            "message": {
                "data": base64.b64encode(json.dumps(note.payload).encode()).decode(),
                "attributes": note.attributes,
                "messageId": uuid.uuid4().hex,
                "publishTime": iso(datetime.now(UTC)),
            },
            "subscription": f"projects/{PROJECT}/subscriptions/rds2bq-notify",
        }
        return env, body, first.key

    def exporting(self, collection: str) -> dict[str, str]:
        """A run whose export is IN_PROGRESS in moto (the real AWS adapter started it)."""
        from bench.common import FixedOffsetClock
        from orchestrator.adapters.aws import AwsExporter
        from orchestrator.adapters.aws_session import build_session, client

        env = self.env(collection)
        s = load(env)
        session = build_session("default", s.aws_region, endpoint_url=s.aws_endpoint_url)
        exporter = AwsExporter(
            client(session, "rds", s.aws_endpoint_url),
            client(session, "s3", s.aws_endpoint_url),
            s.s3_bucket,
            s.s3_prefix,
            s.kms_key_id,
            s.export_role_arn,
        )
        service = self.service(env, exporter, FixedOffsetClock())
        run = service.start_export(self.run_times.take())
        self.peers.control.progress(run.export_task_id, 40, 1.5)
        service.poll()
        return env

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
    from bench.common import write_tables_file
    from bench.peers import create_configs

    tables = write_tables_file(peers.work_dir, COLD_TABLES, "cold")
    sa = fake_service_account(peers.work_dir)
    base = {
        **BASE_ENV,
        **peers.aws_env(),
        **peers.emulator_env(),
        "RDS2BQ_ENV": "cold",
        "RDS2BQ_AWS_AUTH": "default",
        "RDS2BQ_TABLES_FILE": str(tables),
        "RDS2BQ_BQ_LOCATION": "cold",
        "RDS2BQ_DTS_ENDPOINT": dts.target,
        "RDS2BQ_SECRETS_BACKEND": "secret-manager",
        "GOOGLE_APPLICATION_CREDENTIALS": str(sa),
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

"""The whole product on one machine: every wire peer, every function, wired as in production.

- AWS: moto's server (in this process, so the harness can drive exports like RDS would), reached
  keyless as in production: a Google ID token from a metadata-server stand-in, exchanged with
  STS (``AssumeRoleWithWebIdentity``).
- Run ledger and events: the official Firestore and Pub/Sub emulators.
- DTS and BigQuery: the REST stand-ins (DTS on the library's own message types), in this process.
- Slack: the webhook stand-in, in this process.
- The five functions: each its own ``functions-framework`` process on localhost, configured only
  through environment variables, as Cloud Functions would run them.
- The notification topic pushes to ``notify`` through a push subscription.

``python -m orchestrator stack`` keeps it up for experiments; the demo and the e2e tests use it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import processes
from devstack.aws import Account, ExportControl, MotoServer, seed_account, start_moto
from devstack.day import seed_yesterday, today

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "rds2bq-local"
DATASET = "rds_shop"
LOCATION = "asia-northeast1"
SLACK_SECRET = "rds2bq-slack-webhook"
DTS_KEYS_SECRET = "rds2bq-dts-reader-keys"
HTTP_FUNCTIONS = ("start_export", "poll", "rerun", "status")
FUNCTIONS = (*HTTP_FUNCTIONS, "notify")
AUTOPILOT_SECONDS = 20.0  # make stack: how long an export takes
DEFAULT_TABLES = (
    "shop.orders",
    "shop.order_items",
    "shop.customers",
    "shop.products",
    "shop.inventory",
    "shop.payments",
    "shop.shipments",
    "shop.returns",
    "shop.coupons",
    "shop.reviews",
    "shop.suppliers",
    "shop.audit_log",
)


@dataclass
class LocalStack:
    account: Account
    moto: MotoServer
    firestore: processes.Service
    pubsub: processes.Service
    dts: Any
    bigquery: Any
    slack: Any
    env: dict[str, str]
    tables: list[str]
    work_dir: Path
    functions: dict[str, processes.Service] = field(default_factory=dict)
    aws_proxy: Any = None  # a ThrottlingProxy in front of moto, for the drills
    metadata: Any = None  # the metadata server stand-in: Google ID tokens for keyless AWS
    keep_work_dir: bool = False  # the demo's and make stack's: kept for their logs
    _stopped: bool = False

    @property
    def topic_path(self) -> str:
        return f"projects/{PROJECT}/topics/{self.env['RDS2BQ_TOPIC']}"

    def url(self, function: str) -> str:
        return f"http://127.0.0.1:{self.functions[function].port}/"

    @property
    def log_dir(self) -> Path:
        """Each process's log: NAME.log (the functions, both emulators)."""
        return self.work_dir / "logs"

    @property
    def control(self) -> ExportControl:
        return ExportControl(self.account)

    def settings(self) -> Any:
        from orchestrator.config import load_settings

        return load_settings(self.env)

    def ledger(self) -> Any:
        """The run ledger, built as the functions build it (call ``apply_env`` first)."""
        from orchestrator.wiring import Wiring

        return Wiring(self.settings()).ledger

    def apply_env(self) -> None:
        """Point this process's clients (and the CLI) at the stack."""
        os.environ.update(self.env)

    def restart_function(self, name: str, kill: bool = False) -> None:
        """Stop (or SIGKILL) one function's process and start a fresh one on the same port."""
        old = self.functions[name]
        if kill and old.process is not None:
            os.killpg(old.process.pid, signal.SIGKILL)
            old.process.wait(10)
        old.stop()
        self.functions[name] = start_functions(
            self.env, [name], self.log_dir, ports={name: old.port}
        )[name]

    def restart_firestore(self, down_seconds: float = 0.0) -> None:
        """Save the emulator's data, stop it, and start it again on the same port with that data,
        as a managed database comes back after an outage. (The emulator saves on request only:
        its ``--export-on-exit`` does not run when it is stopped by a signal.)"""
        import requests

        export_dir = tempfile.mkdtemp(prefix="firestore-export-", dir=self.work_dir)
        response = requests.post(
            f"http://{self.firestore.host}/emulator/v1/projects/{PROJECT}:export",
            json={
                "database": f"projects/{PROJECT}/databases/(default)",
                "export_directory": export_dir,
            },
            timeout=60,
        )
        response.raise_for_status()
        self.firestore.stop()
        time.sleep(down_seconds)
        metadata = sorted(Path(export_dir).rglob("*.overall_export_metadata"))
        self.firestore = processes.start_firestore_emulator(
            self.firestore.port, import_data=str(metadata[-1]), work_dir=self.log_dir
        )

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for service in self.functions.values():
            service.stop()
        if self.aws_proxy is not None:
            self.aws_proxy.stop()
        if self.metadata is not None:
            self.metadata.stop()
        for stop in (
            self.dts.stop,
            self.bigquery.stop,
            self.slack.stop,
            self.moto.stop,
            self.pubsub.stop,
            self.firestore.stop,
        ):
            try:
                stop()
            except Exception as exc:  # stop what can be stopped
                print(f"warning: stopping failed: {exc}", file=sys.stderr)
        if not self.keep_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_stack(
    tables: Iterable[str] = DEFAULT_TABLES,
    *,
    on_slack: Callable[[dict[str, Any]], None] | None = None,
    functions: Iterable[str] = FUNCTIONS,
    finish_delay: float | None = 1.0,
    extra_env: Mapping[str, str] | None = None,
    sync: bool = True,
    aws_proxy: bool = False,
    log: Callable[[str], None] = lambda _: None,
    work_dir: Path | None = None,
) -> LocalStack:
    """Start everything; on any failure, stop what was started and raise.

    Every file the stack writes (logs, the tables file, emulator data) goes under ``work_dir``,
    emptied first and kept after ``stop`` for its logs (the demo's, make stack's). Without one,
    a temporary directory that ``stop`` removes: nothing is left behind either way."""
    from devstack import bigquery_standin, slack_standin
    from devstack import dts as dts_standin
    from devstack.google_standins import MetadataStandIn

    keep = work_dir is not None
    if work_dir is None:
        work_dir = Path(tempfile.mkdtemp(prefix="rds2bq-stack-"))
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
    logs = work_dir / "logs"
    logs.mkdir()
    started: list[Callable[[], None]] = []
    if not keep:
        started.append(lambda: shutil.rmtree(work_dir, ignore_errors=True))
    try:
        log("starting the Firestore and Pub/Sub emulators and moto's server")
        with ThreadPoolExecutor(2) as pool:
            fs_future = pool.submit(processes.start_firestore_emulator, None, "", logs)
            ps_future = pool.submit(
                processes.start_pubsub_emulator, PROJECT, None, logs, work_dir / "pubsub-data"
            )
            moto = start_moto()
            started.append(moto.stop)
            firestore = fs_future.result()
            started.append(firestore.stop)
            pubsub = ps_future.result()
            started.append(pubsub.stop)
        account = seed_account(moto.endpoint)
        slack = slack_standin.start(on_payload=on_slack)
        started.append(slack.stop)
        bigquery = bigquery_standin.start_bigquery()
        started.append(bigquery.stop)
        bigquery.add_dataset(PROJECT, DATASET, LOCATION)
        dts = dts_standin.start(  # its runs load the export's files into the BigQuery stand-in
            0,
            moto.endpoint,
            pubsub.host,
            finish_delay=finish_delay,
            s3_region=account.region,
            bigquery=bigquery,
        )
        started.append(dts.stop)
        metadata = MetadataStandIn()
        started.append(metadata.stop)
        tables_file = work_dir / "tables.txt"
        tables = list(tables)
        tables_file.write_text("# tables exported every day\n" + "\n".join(tables) + "\n")
        proxy = None
        if aws_proxy:
            from devstack.faults import ThrottlingProxy

            proxy = ThrottlingProxy(moto.endpoint)
            started.append(proxy.stop)
        overrides = {"RDS2BQ_AWS_ENDPOINT_URL": proxy.endpoint} if proxy else {}
        # google-auth reads the host for its calls and the IP for its ping
        overrides["GCE_METADATA_HOST"] = overrides["GCE_METADATA_IP"] = metadata.host
        env = stack_env(
            account,
            firestore,
            pubsub,
            dts,
            bigquery,
            slack,
            tables_file,
            {**overrides, **(extra_env or {})},
        )
        stack = LocalStack(
            account,
            moto,
            firestore,
            pubsub,
            dts,
            bigquery,
            slack,
            env,
            tables,
            work_dir,
            aws_proxy=proxy,
            metadata=metadata,
            keep_work_dir=keep,
        )
        started.clear()  # from here on, stack.stop() owns everything
    except BaseException:
        for stop in reversed(started):
            stop()
        raise
    try:
        _create_topic(stack)
        log("starting the functions under functions-framework")
        wanted = [f for f in functions if f in defined_functions()]
        stack.functions = start_functions(env, wanted, logs)
        if "notify" in stack.functions:
            _push_to_notify(stack)
        if sync:
            log("syncing the transfer configs (python -m orchestrator sync)")
            run_sync(stack)
            # What yesterday's loads left in BigQuery: the schema and rows today is compared to.
            seed_yesterday(stack.bigquery, PROJECT, DATASET, stack.tables)
    except BaseException:
        stack.stop()
        raise
    return stack


def stack_env(
    account: Account,
    firestore: processes.Service,
    pubsub: processes.Service,
    dts: Any,
    bigquery: Any,
    slack: Any,
    tables_file: Path,
    extra: Mapping[str, str],
) -> dict[str, str]:
    keys = json.dumps(
        {
            "access_key_id": "AKIALOCALDTSREADER01",
            "secret_access_key": "local-dts-reader-secret-key-0000000000",
        }
    )
    return {
        **account.settings_env(),
        "RDS2BQ_ENV": "demo",
        # Keyless, as in production: an ID token from the metadata stand-in (GCE_METADATA_HOST)
        # exchanged with moto's STS for the orchestrator role.
        "RDS2BQ_AWS_AUTH": "web-identity",
        "RDS2BQ_SOURCE_KIND": "cluster",
        "RDS2BQ_GCP_PROJECT": PROJECT,
        "RDS2BQ_BQ_DATASET": DATASET,
        "RDS2BQ_BQ_LOCATION": LOCATION,
        "RDS2BQ_TOPIC": "rds2bq-events",
        "RDS2BQ_TABLES_FILE": str(tables_file),
        "RDS2BQ_SECRETS_BACKEND": "env",
        "RDS2BQ_SLACK_WEBHOOK_SECRET": SLACK_SECRET,
        "RDS2BQ_DTS_KEYS_SECRET": DTS_KEYS_SECRET,
        "RDS2BQ_SECRET_RDS2BQ_SLACK_WEBHOOK": slack.url,
        "RDS2BQ_SECRET_RDS2BQ_DTS_READER_KEYS": keys,
        "RDS2BQ_DTS_ENDPOINT": dts.target,
        "RDS2BQ_BQ_ENDPOINT": bigquery.endpoint,
        "RDS2BQ_VISIBILITY_MARGIN_MINUTES": "0",
        "FIRESTORE_EMULATOR_HOST": firestore.host,
        "PUBSUB_EMULATOR_HOST": pubsub.host,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": account.region,
        **extra,
    }


def defined_functions() -> set[str]:
    """The entry points main.py defines (read, not imported: importing would set up logging)."""
    import ast

    tree = ast.parse((ROOT / "main.py").read_text())
    return {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.decorator_list
    }


def start_functions(
    env: Mapping[str, str],
    names: Iterable[str],
    log_dir: Path,
    ports: Mapping[str, int] | None = None,
) -> dict[str, processes.Service]:
    """Each function in its own functions-framework process, like Cloud Functions runs them."""
    child_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    services: dict[str, processes.Service] = {}
    try:
        for name in names:
            port = (ports or {}).get(name) or processes.free_port()
            log_path = log_dir / f"{name}.log"
            with log_path.open("ab") as out:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "functions_framework",
                        "--target",
                        name,
                        "--source",
                        str(ROOT / "main.py"),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                    ],
                    cwd=ROOT,
                    env=child_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            services[name] = processes.Service(name, port, proc, log_path)
        for service in services.values():
            process = service.process
            assert process is not None
            processes.wait_for_port(service.port, 60, alive=lambda p=process: p.poll() is None)
    except BaseException:
        for service in services.values():
            service.stop()
        raise
    return services


def _create_topic(stack: LocalStack) -> None:
    from google.cloud import pubsub_v1

    os.environ["PUBSUB_EMULATOR_HOST"] = stack.pubsub.host
    pubsub_v1.PublisherClient().create_topic(request={"name": stack.topic_path}, timeout=30)


def _push_to_notify(stack: LocalStack) -> None:
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    subscriber.create_subscription(
        request={
            "name": f"projects/{PROJECT}/subscriptions/rds2bq-notify",
            "topic": stack.topic_path,
            "push_config": {"push_endpoint": stack.url("notify")},
            "ack_deadline_seconds": 60,
        },
        timeout=30,
    )


def run_sync(stack: LocalStack) -> str:
    from orchestrator.adapters.bigquery import build_destination_tables
    from orchestrator.adapters.dts import build_transfer_runner
    from orchestrator.adapters.secrets import EnvSecrets
    from orchestrator.app import sync

    settings = stack.settings()
    outcome = sync.sync(
        settings,
        build_transfer_runner(settings),
        build_destination_tables(settings),
        EnvSecrets(stack.env),
    )
    if outcome.result is not None and not outcome.result.ok:
        raise RuntimeError("sync failed:\n" + sync.render_result(outcome.result))
    return sync.render_plan(outcome.plan)


def call(
    stack: LocalStack,
    function: str,
    body: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    query: str = "",
) -> tuple[int, Any]:
    """Call an HTTP function as Cloud Scheduler or an operator would."""
    import requests

    url = stack.url(function) + (f"?{query}" if query else "")
    for attempt in range(3):
        try:
            response = requests.request(
                method, url, json=body, headers=dict(headers or {}), timeout=60
            )
            break
        except requests.ConnectionError:
            # A function process that was just (re)started may reset the first connection while
            # its worker boots; Cloud Scheduler and Pub/Sub retry such failures too.
            if attempt == 2:
                raise
            time.sleep(1.0)
    try:
        payload = response.json()
    except ValueError:
        payload = response.text
    return response.status_code, payload


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.3
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


# --------------------------------------------------------------------------- make stack

STACK_DIR = ROOT / ".stack"  # git-ignored: make stack's env file, tables file, logs, data
# Cloud Scheduler calls poll every 5 minutes in production (scheduler.tf); here 60 times as often,
# and an export takes AUTOPILOT_SECONDS instead of hours.
POLL_SECONDS = 5.0
PRODUCTION_POLL_SECONDS = 300.0
EXPORTED_GB = 12.0  # what RDS reports for the day's export

# The day the demo and make stack play: one table fails in DTS on its first load (a column
# type; a rerun from the same export loads it, as after the fix), one is skipped by AWS, one is
# an empty load (below), one gains a column and one is held for a retyped one (devstack/day.py).
FAILING_TABLE = "shop.payments"
FAILING_MESSAGE = (
    "Error while reading data, error message: Parquet column 'amount' has type "
    "FIXED_LEN_BYTE_ARRAY DECIMAL(40,10) which does not match the target cpp_type INT64. "
    "File: s3://…/shop/shop.payments/1/part-00000-….gz.parquet"
)
SKIPPED_TABLE = "shop.audit_log"
# The empty load: the export lists the table COMPLETE but wrote no data file for it, so its DTS
# run matches nothing, ends SUCCEEDED, and is posted EMPTY; `rerun --failed` skips it (the same
# export holds the same nothing) and reloads the failed table.
EMPTY_TABLE = "shop.coupons"
SKIPPED_REASON = "Column name 'note;internal' contains ';': RDS skips tables with such columns"


class SchedulerStandIn:
    """Cloud Scheduler's two jobs, scaled down: ``poll`` every ``poll_seconds`` (OIDC in
    production; a plain POST here), and the daily ``start_export`` when asked (``daily``)."""

    def __init__(self, stack: LocalStack, poll_seconds: float, log_path: Path) -> None:
        self.stack = stack
        self.poll_seconds = poll_seconds
        self.log_path = log_path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)

    def start(self) -> SchedulerStandIn:
        self._thread.start()
        return self

    def daily(self) -> tuple[int, Any]:
        """The daily job fires: start_export for this minute's slot, as its header says."""
        slot = time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime())
        result = call(self.stack, "start_export", headers={"X-CloudScheduler-ScheduleTime": slot})
        self._log(f"start_export slot {slot}: HTTP {result[0]}")
        return result

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                status, _ = call(self.stack, "poll")
                self._log(f"poll: HTTP {status}")
            except Exception as exc:  # a missed tick is retried at the next one, as Scheduler
                self._log(f"poll failed: {type(exc).__name__}: {exc}")

    def _log(self, line: str) -> None:
        with self.log_path.open("a") as out:
            out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}\n")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.poll_seconds + 65)


def play_the_day(stack: LocalStack, export_seconds: float) -> Any:
    """RDS and DTS behave as on the demo's day; returns the export autopilot (stop it)."""
    from devstack.aws import ExportAutopilot

    stack.dts.set_outcome(
        FAILING_TABLE.replace(".", "__"), "FAILED", FAILING_MESSAGE, code=3, first_run_only=True
    )
    return ExportAutopilot(
        stack.control,
        export_seconds,
        skipped={SKIPPED_TABLE: SKIPPED_REASON},
        gb=EXPORTED_GB,
        empty=[EMPTY_TABLE],
        data=today,
    )


def env_file_text(stack: LocalStack) -> str:
    """Every setting of the stack, secrets included (local stand-ins' fakes), to ``source``."""
    import shlex

    lines = [
        "# make stack: `source .stack/env` points the CLI (rds2bq, python -m orchestrator) at the",
        "# running local stack, the virtualenv first on PATH. Written at each start: ports change.",
    ]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(stack.env.items())]
    lines += [
        f"export {name.upper()}_URL={shlex.quote(stack.url(name))}" for name in HTTP_FUNCTIONS
    ]
    # The virtualenv first, so that `python -m orchestrator` and `rds2bq` are the project's.
    lines.append(f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"')
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator stack",
        description="Keep the local stack up for experiments: a small copy of production.",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=STACK_DIR,
        help="its env file, tables file, logs and emulator data, emptied first (default: .stack)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=POLL_SECONDS,
        help=f"seconds between the scheduler's polls (production: {PRODUCTION_POLL_SECONDS:g})",
    )
    parser.add_argument(
        "--export-seconds",
        type=float,
        default=AUTOPILOT_SECONDS,
        help="how long an export takes",
    )
    parser.add_argument(
        "--no-daily", action="store_true", help="do not fire the daily start_export at start"
    )
    args = parser.parse_args(argv)
    from orchestrator.present.slack_blocks import render_text

    def show(payload: dict[str, Any]) -> None:
        print("\n--- Slack ---\n" + render_text(payload) + "\n", flush=True)

    stack = start_stack(
        on_slack=show, log=lambda m: print(f"… {m}", flush=True), work_dir=args.work_dir
    )
    done = threading.Event()

    def stop(*_: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    autopilot = play_the_day(stack, args.export_seconds)
    scheduler = SchedulerStandIn(stack, args.poll_seconds, stack.log_dir / "scheduler.log")
    try:
        env_file = args.work_dir / "env"
        env_file.write_text(env_file_text(stack))
        env_file.chmod(0o600)
        scheduler.start()
        if not args.no_daily:
            scheduler.daily()
        print(_instructions(stack, env_file, args), flush=True)
        done.wait()
    finally:
        print("stopping the local stack …", flush=True)
        scheduler.stop()
        autopilot.stop()
        stack.stop()
    return 0


def _instructions(stack: LocalStack, env_file: Path, args: argparse.Namespace) -> str:
    shown = env_file.resolve()
    where = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
    logs = stack.log_dir.resolve()
    logs_shown = logs.relative_to(ROOT) if logs.is_relative_to(ROOT) else logs
    daily = (
        "The daily job has fired: today's run is exporting."
        if not args.no_daily
        else "The daily job has not fired (--no-daily): `rds2bq start` does what it would."
    )
    return f"""
The local stack is up: a small copy of production. Ctrl-C stops everything.
- Cloud Scheduler (stand-in) calls poll every {args.poll_seconds:g} s (production:
  every {PRODUCTION_POLL_SECONDS / 60:g} min). {daily}
- Exports move along as RDS's would and complete {args.export_seconds:g} s after they start;
  AWS skips {SKIPPED_TABLE}, {FAILING_TABLE}'s first load fails in DTS (a rerun loads it), and
  the export writes no data file for {EMPTY_TABLE}, so its load is EMPTY (`rerun --failed`
  skips it: only a re-export could load it).

Functions:
  start_export  {stack.url("start_export")}
  poll          {stack.url("poll")}
  rerun         {stack.url("rerun")}
  status        {stack.url("status")}
  notify        {stack.url("notify")}   (pushed to by the Pub/Sub emulator)

The CLI against this stack (in another shell, from the checkout):
  source {where}          every setting, and $STATUS_URL, $RERUN_URL, ...
  .venv/bin/rds2bq status
  .venv/bin/rds2bq doctor
  curl -s "$STATUS_URL"

Logs: {logs_shown}/NAME.log (the functions, both emulators, the scheduler)
"""


if __name__ == "__main__":
    sys.exit(main())

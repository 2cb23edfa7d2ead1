"""rerun, status and doctor on the local stack, over the CLI (in-process) and over HTTP
(functions-framework's test client), with the production wiring built from the environment:
moto's server, the Firestore and Pub/Sub emulators, the DTS, BigQuery and Slack stand-ins.

A day is played first: sync, start, the export completes, poll hands off, DTS runs finish (one
table fails) and their notifications go through notify. Then the operator's commands.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from functions_framework import create_app

from devstack import slack_standin
from devstack.aws import (
    REGION as MOTO_REGION,
)
from devstack.aws import (
    Account,
    ExportControl,
    _backend,
    add_cluster_snapshot,
    seed_account,
    table_files,
)
from devstack.bigquery_standin import BigQueryStandin
from devstack.dts import DtsStandin, client_for
from orchestrator import wiring
from orchestrator.adapters.secrets import EnvSecrets
from orchestrator.config import load_settings
from orchestrator.core.model import RunState, TableState
from orchestrator.core.notifications import PubsubMessage
from orchestrator.faces import cli
from tests.conftest import GCP_PROJECT

pytestmark = pytest.mark.integration

# A Region of its own on the shared moto server: other tests leave exports running in theirs,
# and "five exports running" must count only this file's.
REGION = "eu-west-1"
assert REGION != MOTO_REGION
TABLES = ["shop.orders", "shop.customers", "shop.payments"]
FAILING = "shop.payments"
FAILURE = "Parquet column 'amount' has type DECIMAL(40,10), which does not match INT64"
MAIN = str(Path(__file__).resolve().parents[2] / "main.py")


@dataclass
class Local:
    account: Account
    dts: DtsStandin
    bigquery: BigQueryStandin
    slack: Any
    topic: Any  # the notification topic, with a pull subscription standing in for the push
    env: dict[str, str]
    capsys: pytest.CaptureFixture[str]
    delivered: int = 0
    run_id: str = ""
    control: ExportControl = field(init=False)

    def __post_init__(self) -> None:
        self.control = ExportControl(self.account)

    # ---------------------------------------------------------------- entry points

    def cli(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = cli.main(list(argv))
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def http(self, target: str) -> Any:
        wiring.install(wiring.Wiring(load_settings()))
        return create_app(target, MAIN, "http").test_client()

    def ledger(self) -> Any:
        return wiring.Wiring(load_settings()).ledger

    # ---------------------------------------------------------------- the day

    def play_day(self) -> str:
        code, out, err = self.cli("sync")
        assert code == 0, out + err
        # the daily slot a few minutes ago: a rerun asked now gets a minute (a run id) of its own
        slot = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:00Z")
        code, out, err = self.cli("start", "--slot", slot)
        assert code == 0, err
        self.run_id = out.split()[1].rstrip(":")
        task = out.split(" export ")[1].split()[0]
        self.control.complete(
            task,
            {f"shop.{k}": table_files(f"shop/{k}", (1, 2)) for k in TABLES},
            end_time=datetime.now(UTC),
        )
        code, out, err = self.cli("poll")
        assert code == 0 and "handed off: " in out, out + err
        self.dts.set_outcome(FAILING.replace(".", "__"), "FAILED", FAILURE)
        self.finish_dts_runs()
        self.deliver_events(
            "EXPORT_STARTED", "HANDOFF_DONE", "TABLE_FAILED", "TABLES_FINISHED", "RUN_CLOSED"
        )
        return self.run_id

    def finish_dts_runs(self) -> None:
        """DTS finishes every pending run; its notifications reach notify (as Pub/Sub would)."""
        self.dts.finish_pending()
        service = wiring.Wiring(load_settings()).notify_service
        for note in self.dts.notifications[self.delivered :]:
            self.delivered += 1
            message = PubsubMessage(
                json.dumps(note.payload).encode(), note.attributes, uuid.uuid4().hex
            )
            service.handle(message)

    def deliver_events(self, *expected: str) -> list[str]:
        """Our own events (published to the topic) reach notify, as the push subscription would
        deliver them, and so do those that handling them publishes, until every kind
        ``expected`` has come (or 15 s without a message). The kinds delivered, in order."""
        service = wiring.Wiring(load_settings()).notify_service
        kinds: list[str] = []
        while Counter(expected) - Counter(kinds):
            pulled = self.topic.pull(1, timeout=15)
            if not pulled:
                break
            for m in pulled:
                kinds.append(m.attributes.get("rds2bqEvent", ""))
                message = PubsubMessage(m.data, dict(m.attributes), m.message_id, m.publish_time)
                service.handle(message)
        return kinds

    def run(self, run_id: str = "") -> Any:
        return self.ledger().get_run(run_id or self.run_id)

    def tables(self, run_id: str = "") -> dict[str, Any]:
        return {t.key: t for t in self.ledger().tables(run_id or self.run_id)}

    def dts_runs(self) -> int:
        return len(self.dts.runs())

    def export_tasks(self) -> list[str]:
        return sorted(t for t in self.control.tasks() if self.env["RDS2BQ_ENV"] in t)


@pytest.fixture
def local(
    moto_server: Any,
    firestore_emulator: Any,
    pubsub_emulator: Any,
    dts_standin: DtsStandin,
    bigquery_standin: BigQueryStandin,
    make_topic: Callable[[str], Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Local]:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    account = seed_account(moto_server.endpoint, region=REGION, now=now)
    bigquery_standin.add_dataset(GCP_PROJECT, "rds_shop", "asia-northeast1")
    dts_standin.bigquery = bigquery_standin  # its runs load the destination tables, as DTS does
    topic = make_topic("rds2bq-events")
    slack = slack_standin.start()
    tables_file = tmp_path / "tables.txt"
    tables_file.write_text("\n".join(TABLES) + "\n")
    env = {
        **account.settings_env(),
        "RDS2BQ_ENV": "t" + uuid.uuid4().hex[:8],
        "RDS2BQ_AWS_AUTH": "default",
        "RDS2BQ_GCP_PROJECT": GCP_PROJECT,
        "RDS2BQ_BQ_DATASET": "rds_shop",
        "RDS2BQ_BQ_ENDPOINT": bigquery_standin.endpoint,
        "RDS2BQ_DTS_ENDPOINT": dts_standin.target,
        "RDS2BQ_TOPIC": topic.path.rsplit("/", 1)[-1],
        "RDS2BQ_TABLES_FILE": str(tables_file),
        "RDS2BQ_SECRETS_BACKEND": "env",
        "RDS2BQ_LEDGER_COLLECTION": f"ops_{uuid.uuid4().hex[:8]}",
        "RDS2BQ_VISIBILITY_MARGIN_MINUTES": "0",
        EnvSecrets.variable("rds2bq-dts-reader-keys"): json.dumps(
            {"access_key_id": "testing", "secret_access_key": "testing"}
        ),
        EnvSecrets.variable("rds2bq-slack-webhook"): slack.url,
        "FIRESTORE_EMULATOR_HOST": firestore_emulator.host,
        "PUBSUB_EMULATOR_HOST": pubsub_emulator.host,
        "GOOGLE_CLOUD_PROJECT": GCP_PROJECT,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield Local(account, dts_standin, bigquery_standin, slack, topic, env, capsys)
    wiring.reset()
    slack.stop()
    for task in _backend(REGION).export_tasks.values():  # free this Region's export slots
        if str(task.status).upper() in ("STARTING", "IN_PROGRESS"):
            task.status = "CANCELED"


# --------------------------------------------------------------------------- re-transfer


def test_the_failed_table_is_re_transferred_over_the_cli_and_the_run_closes_again(
    local: Local,
) -> None:
    run_id = local.play_day()
    assert local.run().state is RunState.PARTIAL
    code, out, _ = local.cli("status", run_id)
    assert code == 0 and "PARTIAL" in out and "DECIMAL(40,10)" in out
    summaries = len(local.slack.payloads)
    runs_before, tasks_before = local.dts_runs(), local.export_tasks()

    # WHEN the on-call engineer reruns the failed table
    code, out, err = local.cli("rerun", run_id, "--failed")

    # THEN one new DTS run reads the SAME export (requested_run_time = the original run time)
    assert code == 0, out + err
    assert f"{FAILING}  started" in out
    assert local.dts_runs() == runs_before + 1 and local.export_tasks() == tasks_before
    new = local.dts.runs()[-1]
    assert new.run.run_time == local.run().run_time
    table = local.tables()[FAILING]
    assert (table.state, table.attempts, table.dts_run) == (TableState.STARTED, 2, new.name)
    assert local.run().state is RunState.TRANSFERRING
    # AND it loads this run's files once DTS finishes; notify closes the run, posts a summary
    local.dts.clear_outcomes()
    local.finish_dts_runs()
    task = local.run().export_task_id
    assert new.matched_keys and all(f"/{task}/shop/shop.payments/" in k for k in new.matched_keys)
    assert local.tables()[FAILING].state is TableState.SUCCEEDED
    assert local.deliver_events("TABLES_FINISHED", "RUN_CLOSED") == [
        "TABLES_FINISHED",
        "RUN_CLOSED",
    ]
    assert local.run().state is RunState.SUCCEEDED
    assert len(local.slack.payloads) == summaries + 1
    assert "SUCCEEDED" in json.dumps(local.slack.payloads[-1])
    code, out, _ = local.cli("status", run_id)
    assert "SUCCEEDED" in out and "3 tables: 3 loaded" in out


def test_rerun_and_status_over_http(local: Local) -> None:
    run_id = local.play_day()
    dry = local.http("rerun").post("/", json={"run_id": run_id, "failed": True, "dry_run": True})
    assert dry.status_code == 200 and dry.get_json()["tables"][0]["action"] == "would-start"
    response = local.http("rerun").post("/", json={"run_id": run_id, "failed": True})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["state"] == "TRANSFERRING"
    status = local.http("status").get(f"/?run_id={run_id}")
    assert status.status_code == 200
    body = status.get_json()
    assert body["state"] == "TRANSFERRING" and body["counts"]["running"] == 1
    failing = next(t for t in body["tables"] if t["table"] == FAILING)
    assert failing["state"] == "STARTED" and failing["attempts"] == 2
    recent = local.http("status").get("/")
    assert [r["run_id"] for r in recent.get_json()["runs"]] == [run_id]


def test_every_refusal_over_the_cli_and_http(local: Local) -> None:
    run_id = local.play_day()
    rerun = local.http("rerun")

    def both(argv: list[str], body: dict[str, Any], code: int, status: int, reason: str) -> None:
        got, out, err = local.cli("rerun", *argv)
        assert got == code, out + err
        assert reason in err and err.count("\n") == 1, err
        response = rerun.post("/", json=body)
        assert response.status_code == status, response.get_json()
        assert reason in response.get_json()["message"]

    # unknown table (400 / 2) and unknown run (404 / 4)
    both(
        [run_id, "--table", "shop.nope"],
        {"run_id": run_id, "tables": ["shop.nope"]},
        2,
        400,
        "unknown table(s) for run",
    )
    both(
        ["202001010000", "--failed"],
        {"run_id": "202001010000", "failed": True},
        4,
        404,
        "run 202001010000 is not in the ledger",
    )
    # a date with no retained snapshot (404 / 4)
    both(
        ["--as-of", "2020-01-01", "--table", "shop.orders"],
        {"as_of": "2020-01-01", "tables": ["shop.orders"]},
        4,
        404,
        "no available automated snapshot",
    )
    # the table's DTS run has not finished (409 / 4)
    local.cli("rerun", run_id, "--table", "shop.orders")
    both(
        [run_id, "--table", "shop.orders"],
        {"run_id": run_id, "tables": ["shop.orders"]},
        4,
        409,
        "has not finished yet",
    )
    # another run is exporting the table (409 / 4)
    code, out, err = local.cli("rerun", "--export", "--table", "shop.customers")
    assert code == 0, out + err
    both(
        [run_id, "--table", "shop.customers"],
        {"run_id": run_id, "tables": ["shop.customers"]},
        4,
        409,
        "is still exporting shop.customers",
    )
    # the export's files are gone (409 / 4)
    s3 = local.account.client("s3")
    prefix = f"rds2bq/{local.run().export_task_id}/shop/shop.payments/"
    for item in s3.list_objects_v2(Bucket=local.account.bucket, Prefix=prefix)["Contents"]:
        s3.delete_object(Bucket=local.account.bucket, Key=item["Key"])
    both(
        [run_id, "--failed"],
        {"run_id": run_id, "failed": True},
        4,
        409,
        "are no longer in export",
    )
    # five exports already running (503 / 3)
    rds = local.account.client("rds")
    for i in range(5):
        rds.start_export_task(
            ExportTaskIdentifier=f"other-{local.env['RDS2BQ_ENV']}-{i}",
            SourceArn=local.account.snapshots[0],
            S3BucketName=local.account.bucket,
            IamRoleArn=local.account.export_role_arn,
            KmsKeyId=local.account.kms_key_arn,
        )
    both(
        ["--export", "--table", "shop.payments"],
        {"mode": "export", "tables": ["shop.payments"]},
        3,
        503,
        "exports are already running",
    )


def test_dry_run_changes_nothing_and_a_repeat_starts_nothing_twice(local: Local) -> None:
    run_id = local.play_day()
    before = (local.run(), local.tables(), local.dts_runs(), local.export_tasks())
    for argv in (
        [run_id, "--failed", "--dry-run"],
        ["--export", "--dry-run"],
        ["--export", "--as-of", local_day(local, 1), "--dry-run"],
    ):
        code, out, err = local.cli("rerun", *argv)
        assert code == 0 and out.startswith("DRY RUN (nothing changed)"), out + err
    assert (local.run(), local.tables(), local.dts_runs(), local.export_tasks()) == before

    # with a request_id, any repeat returns the first answer
    code, out, _ = local.cli("rerun", run_id, "--failed", "--request-id", "oncall-1", "--json")
    assert code == 0 and json.loads(out)["tables"][0]["action"] == "started"
    code, out, _ = local.cli("rerun", run_id, "--failed", "--request-id", "oncall-1", "--json")
    assert code == 0 and json.loads(out)["repeated"] is True
    assert local.dts_runs() == before[2] + 1

    # and a re-export asked twice (a retried call) is one run and one export: in the same minute
    # the same run, a minute later refused while the first is exporting
    code, first, _ = local.cli("rerun", "--export", "--table", "shop.customers", "--json")
    assert code == 0
    code, second, err = local.cli("rerun", "--export", "--table", "shop.customers", "--json")
    if code == 0:
        assert json.loads(second)["repeated"]
        assert json.loads(second)["run_id"] == json.loads(first)["run_id"]
    else:
        assert code == 4 and "is still exporting shop.customers" in err
    assert len(local.export_tasks()) == len(before[3]) + 1


def local_day(local: Local, days_ago: int) -> str:
    """A day as an operator types it: in the configured time zone (Asia/Tokyo by default)."""
    tz = ZoneInfo(local.env.get("RDS2BQ_TIMEZONE") or "Asia/Tokyo")
    return (datetime.now(tz) - timedelta(days=days_ago)).date().isoformat()


# --------------------------------------------------------------------------- re-export as of a day


def test_as_of_a_day_exports_the_newest_available_snapshot_of_that_day(local: Local) -> None:
    local.cli("sync")
    now = datetime.now(UTC)
    day = (now - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
    # GIVEN the seeded snapshot of 18:05 UTC that day, which is 03:05 the next day in Tokyo (the
    # configured time zone), plus an earlier one just after Tokyo's midnight (15:30 UTC) and a
    # later one still creating
    early = add_cluster_snapshot(
        "shop-aurora", day + timedelta(hours=15, minutes=30), "available", REGION
    )
    creating = add_cluster_snapshot("shop-aurora", day + timedelta(hours=21), "creating", REGION)
    expected = local.account.snapshots[1]  # days ago: 3, 2, 1
    assert expected not in (early, creating)
    tokyo_day = (day + timedelta(days=1)).date().isoformat()

    # WHEN the operator asks for that day in Tokyo
    code, out, err = local.cli("rerun", "--as-of", tokyo_day, "--json")

    assert code == 0, out + err
    result = json.loads(out)
    assert result["mode"] == "export" and result["source_arn"] == expected
    task = local.control.task(result["export_task_id"])
    assert task.source_arn == expected and task.export_only == TABLES
    run = local.run(result["run_id"])
    assert run.kind == "rerun" and run.state is RunState.EXPORTING
    assert run.snapshot_time == day + timedelta(hours=18, minutes=5)
    # status shows the as-of time of the data
    code, out, _ = local.cli("status", result["run_id"])
    assert code == 0 and "data as of" in out and expected in out


# --------------------------------------------------------------------------- status --watch


def test_status_watch_follows_an_export_with_a_progress_bar(local: Local) -> None:
    local.cli("sync")
    # The slot is passed, as the CLI requires: it takes none from the clock.
    code, out, _ = local.cli("start", "--slot", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:00Z"))
    run_id = out.split()[1].rstrip(":")
    task = out.split(" export ")[1].split()[0]
    steps = iter(
        [
            lambda: (local.control.progress(task, 40, gb=1), local.cli("poll")),
            lambda: (local.control.progress(task, 80, gb=3.0), local.cli("poll")),
            lambda: (
                local.control.complete(
                    task, {f"shop.{k}": table_files(f"shop/{k}") for k in TABLES}
                ),
                local.cli("poll"),
            ),
            lambda: (local.finish_dts_runs(), local.deliver_events("TABLES_FINISHED")),
        ]
    )
    printed: list[str] = []

    def sleep(_: float) -> None:
        printed.append(local.capsys.readouterr().out)
        next(steps)()

    local.capsys.readouterr()
    code = cli.main(["status", run_id, "--watch", "--interval", "0"], sleep=sleep)
    printed.append(local.capsys.readouterr().out)
    text = "".join(printed)
    assert code == 0, text
    assert "[############------------------]  40%  1 GB" in text
    assert "[########################------]  80%  3 GB" in text
    assert "SUCCEEDED" in text and "3 tables: 3 loaded" in text


# --------------------------------------------------------------------------- doctor


def test_doctor_passes_on_a_wired_stack(local: Local) -> None:
    assert local.cli("sync")[0] == 0
    code, out, err = local.cli("doctor", "--send-test")
    assert code == 0, out + err
    for check in ("aws-credentials", "source", "bucket", "kms-key", "export-role", "dts-configs"):
        assert f"PASS  {check}" in out, out
    assert "FAIL" not in out
    assert "rds2bq doctor" in local.slack.payloads[-1]["text"]
    assert local.slack.url not in out


def _delete_bucket(local: Local) -> None:
    local.account.client("s3").delete_bucket(Bucket=local.account.bucket)


def _disable_key(local: Local) -> None:
    local.account.client("kms").disable_key(KeyId=local.account.kms_key_arn.split("/")[-1])


def _delete_export_role(local: Local) -> None:
    local.account.client("iam").delete_role(RoleName=local.account.export_role_arn.split("/")[-1])


def _delete_a_config(local: Local) -> None:
    config = next(c for c in local.dts.configs() if c.display_name.endswith(":shop.orders"))
    client_for(local.dts.target).delete_transfer_config(name=config.name, timeout=5)


def _delete_topic(local: Local) -> None:
    from google.cloud import pubsub_v1

    pubsub_v1.PublisherClient().delete_topic(request={"topic": local.topic.path}, timeout=10)


def _drop_slack_secret(local: Local) -> None:
    import os

    del os.environ[EnvSecrets.variable("rds2bq-slack-webhook")]


@pytest.mark.parametrize(
    ("break_it", "check", "fix"),
    [
        (_delete_bucket, "bucket", "create it in eu-west-1 (infra/aws does)"),
        (_disable_key, "kms-key", "fix: aws kms enable-key --key-id arn:aws:kms:eu-west-1"),
        (_delete_export_role, "export-role", "correct RDS2BQ_EXPORT_ROLE_ARN"),
        (_delete_a_config, "dts-configs", "run `python -m orchestrator sync`"),
        (_delete_topic, "topic", "gcloud pubsub topics create"),
        (_drop_slack_secret, "slack", "set RDS2BQ_SECRET_RDS2BQ_SLACK_WEBHOOK"),
    ],
)
def test_doctor_reports_one_misconfiguration_at_a_time_with_its_fix(
    local: Local, break_it: Callable[[Local], None], check: str, fix: str
) -> None:
    assert local.cli("sync")[0] == 0
    break_it(local)
    code, out, err = local.cli("doctor")
    assert code == 1, out + err
    failing = [line.split()[1] for line in out.splitlines() if line.strip().startswith("FAIL")]
    assert failing == [check], out
    assert fix in out, out
    assert "1 check(s) failed" in out

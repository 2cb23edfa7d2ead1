"""The one redaction: what it scrubs, and that vendor text is scrubbed where it enters, whatever
path carries it on. Includes the regression test of the poll's lost-notification leak."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.adapters.aws import AwsExporter, translate
from orchestrator.adapters.slack_webhook import SlackWebhookNotifier, _redacted
from orchestrator.app.ports import RunOutcome
from orchestrator.app.status import StatusReader
from orchestrator.core import machine
from orchestrator.core.events import to_json as event_json
from orchestrator.core.model import ExportObservation, ExportStatus, Source
from orchestrator.core.redaction import REDACTED, redact, register_secret
from orchestrator.faces.http import to_json
from tests.unit.test_notify import Notify
from tests.unit.test_service import SLOT

KEY_ID = "AKIAZZCANARY00000013"  # shaped like an access key id, planted as a canary
TEMP_KEY_ID = "ASIAZZCANARY00000013"
SECRET = "zZ13canary/Secret+AccessKey0000000000000"
WEBHOOK = "https://hooks.slack.com/services/T000/B000/canaryCanaryCanary13"


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        (f"The AWS Access Key Id {KEY_ID} does not exist", KEY_ID),
        (f"token for {TEMP_KEY_ID}: expired", TEMP_KEY_ID),
        (f"aws_secret_access_key={SECRET}", SECRET),
        (f'{{"SecretAccessKey": "{SECRET}"}}', SECRET),
        (f"X-Amz-Signature={SECRET}&x", SECRET),
        (f"Authorization: Bearer {SECRET}", SECRET),
        (f"posting to {WEBHOOK} failed", WEBHOOK),
    ],
)
def test_what_redact_scrubs(text: str, gone: str) -> None:
    scrubbed = redact(text)
    assert gone not in scrubbed and REDACTED in scrubbed


def test_registered_and_given_values_are_scrubbed_and_ordinary_text_is_kept() -> None:
    register_secret("canary-registered-13")
    assert redact("x canary-registered-13 y") == f"x {REDACTED} y"
    assert redact("echo s3cr3tvalue", also=["s3cr3tvalue"]) == f"echo {REDACTED}"
    ordinary = "Parquet column 'amount' has type DECIMAL(40,10): password policy ok"
    assert redact(ordinary) == ordinary


@given(st.text(max_size=60), st.text(max_size=60))
def test_a_key_id_anywhere_in_any_text_is_gone(before: str, after: str) -> None:
    assert KEY_ID not in redact(f"{before} {KEY_ID} {after}")


# --------------------------------------------------------------------------- the defect


def test_the_polls_lost_notification_path_stores_and_posts_no_key_id() -> None:
    # GIVEN a transfer run whose notification was lost, and whose DTS error names a key id:
    # the TransferRunner hands the text on unredacted (the machine must scrub it regardless)
    n = Notify(2)
    w = n.world
    w.service.events = n.published
    t0, t1 = (n.tables[k] for k in sorted(n.tables))
    leak = f"Access Denied for access key id {KEY_ID} (secret_access_key={SECRET})"
    w.transfers.outcomes[t0.dts_run] = RunOutcome("FAILED", 7, leak)
    w.transfers.outcomes[t1.dts_run] = RunOutcome("SUCCEEDED")
    # WHEN the poll looks it up an hour later and records it
    w.clock.advance(minutes=61)
    assert w.service.poll().runs[0]["action"] == "reconciled"
    n.deliver_published()
    # THEN neither the ledger, nor Slack, nor status holds the key id or the secret
    stored = json.dumps([asdict(t) for t in w.ledger.tables("202611271500")], default=str)
    posted = json.dumps(n.slack.payloads)
    shown = to_json(StatusReader(w.ledger, w.clock).run("202611271500"))
    for text in (stored, posted, shown):
        assert KEY_ID not in text and SECRET not in text
        assert "Access Denied for access key id" in text  # the message itself is kept


def test_the_notify_path_scrubs_the_same_text() -> None:
    n = Notify(1)
    n.finish("shop.t0000", "FAILED", f"Access Denied for access key id {KEY_ID}")
    assert KEY_ID not in json.dumps(n.slack.payloads)
    assert KEY_ID not in n.world.ledger.table_docs["202611271500"]["shop.t0000"].error_message


def test_every_machine_entry_of_vendor_text_is_scrubbed() -> None:
    now = SLOT
    run = machine.new_run("prod", SLOT, "daily", ["shop.a"], now)
    failed = machine.observe_export(
        run.with_(state=machine.RunState.EXPORTING),
        ExportObservation("t", ExportStatus.FAILED, failure_cause=f"S3 denied {KEY_ID}"),
        now,
        deadline_minutes=60,
    )
    assert failed.run is not None and KEY_ID not in failed.run.failure_cause
    assert all(KEY_ID not in event_json(e) for e in failed.events)
    refused = machine.export_not_started(run, f"role {KEY_ID} denied", now)
    assert refused.run is not None and KEY_ID not in refused.run.failure_cause
    table = machine.table_start_failed(machine.TableRun("shop.a"), f"DTS: {KEY_ID}", now)
    assert KEY_ID not in table.reason + table.error_message


# --------------------------------------------------------------------------- the adapters


def client_error(message: str, code: str = "AccessDenied") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "StartExportTask")


@pytest.mark.parametrize("code", ["AccessDenied", "Throttling", "KMSKeyNotAccessibleFault", "X"])
def test_aws_error_text_is_scrubbed_where_it_enters(code: str) -> None:
    error = translate(client_error(f"The security token {KEY_ID} is invalid", code), "rds:X")
    assert KEY_ID not in str(error) and "is invalid" in str(error)


class FakeRds:
    """botocore's rds client, the two calls the exporter makes here."""

    def __init__(self, task: dict[str, Any]) -> None:
        self.task = task
        self.started: list[dict[str, Any]] = []

    def describe_export_tasks(self, **_: Any) -> dict[str, Any]:
        return {"ExportTasks": [self.task]}

    def start_export_task(self, **request: Any) -> dict[str, Any]:
        self.started.append(request)
        return {}


def exporter(rds: FakeRds, prefix: str = "rds2bq") -> AwsExporter:
    return AwsExporter(rds, None, "bucket", prefix, "arn:aws:kms:k", "arn:aws:iam::1:role/x")


def test_an_export_failure_cause_and_warning_are_scrubbed_where_they_enter() -> None:
    rds = FakeRds(
        {
            "Status": "FAILED",
            "FailureCause": f"Access denied to key id {KEY_ID}",
            "WarningMessage": f"aws_secret_access_key={SECRET}",
        }
    )
    obs = exporter(rds).describe_export("t")
    assert obs is not None and KEY_ID not in obs.failure_cause and SECRET not in obs.warning


@pytest.mark.parametrize(("prefix", "sent"), [("", None), ("rds2bq", "rds2bq")])
def test_an_empty_s3_prefix_is_left_out_of_start_export_task(prefix: str, sent: str | None) -> None:
    rds = FakeRds({})
    source = Source("arn:aws:rds:ap-northeast-1:1:cluster:shop", "cluster")
    exporter(rds, prefix).start_export("rds2bq-prod-20261127150000", source, ["shop.orders"])
    assert rds.started[0].get("S3Prefix") == sent
    assert ("S3Prefix" in rds.started[0]) is (sent is not None)


class OneSecret:
    def get(self, name: str) -> str:
        return WEBHOOK


def test_slack_replies_and_payloads_are_scrubbed() -> None:
    notifier = SlackWebhookNotifier(OneSecret(), "rds2bq-slack-webhook")
    assert notifier._webhook_url() == WEBHOOK
    assert WEBHOOK not in notifier._redact(f"proxy error for {WEBHOOK} with {KEY_ID}")
    assert KEY_ID not in notifier._redact(f"proxy error with {KEY_ID}")
    payload = {"text": f"key {KEY_ID}", "blocks": [{"type": "section", "text": {"text": KEY_ID}}]}
    scrubbed = _redacted(payload)
    assert KEY_ID not in json.dumps(scrubbed)
    assert scrubbed["blocks"][0]["type"] == "section"  # structure kept


def test_logs_and_replies_scrub_key_ids_without_registration() -> None:
    # The formatter and every HTTP reply go through the one redaction.
    from orchestrator.faces.http import reply

    body, status, _ = reply({"message": f"denied for {KEY_ID}"})
    assert KEY_ID not in body and status == 200

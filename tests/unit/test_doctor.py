"""doctor's checks over fakes: each PASS / WARN / FAIL with its fix, and the trust-policy hints."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrator.adapters.probes import unverified_claims
from orchestrator.adapters.secrets import EnvSecrets
from orchestrator.app import doctor
from orchestrator.app.doctor import Context, Outcome
from orchestrator.app.ports import TransferConfig
from orchestrator.app.probe_ports import KmsKey, Role, SourceEngine, Topic
from orchestrator.app.sync import desired_configs
from orchestrator.core.errors import AccessDeniedError, NotFoundError
from orchestrator.present import slack_notices
from tests.fakes import FakeExporter, InMemoryLedger, RecordingNotifier
from tests.unit.test_service import World

AZP = "104387654321098765432"
CLAIMS = {"aud": "rds2bq", "azp": AZP, "sub": AZP, "email": "rds2bq@acme.iam.gserviceaccount.com"}
KEYS_JSON = json.dumps({"access_key_id": "AKIADTSREADER0001", "secret_access_key": "s3cr3t-value"})


def token(claims: dict[str, str]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{body}.c2lnbmF0dXJl"  # signature: base64url, as in a real JWT


def web_policy(**conditions: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": "accounts.google.com"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {f"accounts.google.com:{k}": v for k, v in conditions.items()}
                },
            }
        ],
    }


@dataclass
class Probe:
    region: str = "ap-northeast-1"
    key_state: str = "Enabled"
    trusted: tuple[str, ...] = ("export.rds.amazonaws.com",)
    missing: set[str] = field(default_factory=set)

    def caller_arn(self) -> str:
        return "arn:aws:sts::1:assumed-role/orch/rds2bq"

    def source_engine(self, kind: str, source_id: str) -> SourceEngine:
        return SourceEngine("aurora-mysql", "available")

    def bucket_region(self, bucket: str) -> str:
        if "bucket" in self.missing:
            raise NotFoundError(f"bucket {bucket} does not exist")
        return self.region

    def kms_key(self, key_id: str) -> KmsKey:
        return KmsKey(key_id, self.key_state, "ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT")

    def role(self, role_arn: str) -> Role:
        if "role" in self.missing:
            raise NotFoundError(f"role {role_arn} does not exist")
        statement = {"Effect": "Allow", "Principal": {"Service": list(self.trusted)}}
        return Role(role_arn, {"Statement": [statement]})


@dataclass
class Topics:
    exists: bool = True
    members: list[str] | None = None

    def topic(self, path: str) -> Topic:
        if not self.exists:
            raise NotFoundError(f"topic {path} does not exist")
        return Topic(path, "")

    def publishers(self, path: str) -> list[str] | None:
        return self.members


@dataclass
class Configs:
    configs: list[TransferConfig]

    def list_configs(self) -> list[TransferConfig]:
        return self.configs


@dataclass
class Tables:
    absent: list[str] = field(default_factory=list)

    def missing(self, table_ids: Any) -> list[str]:
        return [t for t in table_ids if t in self.absent]


def context(**env: str) -> tuple[Context, dict[str, Any]]:
    w = World(["shop.orders", "shop.payments"], RDS2BQ_SECRETS_BACKEND="env", **env)
    secrets = {
        EnvSecrets.variable(w.settings.dts_keys_secret): KEYS_JSON,
        EnvSecrets.variable(
            w.settings.slack_webhook_secret
        ): "https://hooks.slack.com/services/T/B/X",
    }
    configs = [
        c.__class__(**{**c.__dict__, "name": f"n/{k}", "access_key_id": "AKIADTSREADER0001"})
        for k, c in desired_configs(w.settings).items()
    ]
    parts: dict[str, Any] = {
        "probe": Probe(),
        "topics": Topics(
            members=["serviceAccount:service-1@gcp-sa-bigquerydatatransfer.iam.gserviceaccount.com"]
        ),
        "configs": Configs(configs),
        "tables": Tables(),
        "notifier": RecordingNotifier(),
        "secrets": secrets,
    }
    ctx = Context(
        settings=w.settings,
        aws=lambda: parts["probe"],
        exporter=lambda: FakeExporter(),
        configs=lambda: parts["configs"],
        tables=lambda: parts["tables"],
        topics=lambda: parts["topics"],
        secrets=lambda: EnvSecrets(parts["secrets"]),
        ledger=InMemoryLedger,
        notifier=lambda: parts["notifier"],
        test_message=lambda: slack_notices.test_message(w.settings),  # as the wiring gives it
    )
    return ctx, parts


def by_name(ctx: Context) -> dict[str, doctor.CheckResult]:
    return {r.name: r for r in doctor.run_checks(ctx)}


def test_everything_wired_passes() -> None:
    ctx, _ = context()
    results = by_name(ctx)
    assert {r.outcome for r in results.values()} == {Outcome.PASS}, results
    assert set(results) == {
        "aws-credentials",
        "source",
        "bucket",
        "kms-key",
        "export-role",
        "export-slots",
        "dts-keys",
        "dts-configs",
        "destination-tables",
        "topic",
        "topic-publisher",
        "ledger",
        "slack",
    }


@pytest.mark.parametrize(
    ("breakage", "check", "fix"),
    [
        (lambda p: p["probe"].missing.add("bucket"), "bucket", "create it in ap-northeast-1"),
        (lambda p: setattr(p["probe"], "region", "us-east-1"), "bucket", "source's Region"),
        (lambda p: setattr(p["probe"], "key_state", "Disabled"), "kms-key", "enable-key"),
        (lambda p: setattr(p["probe"], "key_state", "PendingDeletion"), "kms-key", "cancel-key"),
        (lambda p: p["probe"].missing.add("role"), "export-role", "RDS2BQ_EXPORT_ROLE_ARN"),
        (
            lambda p: setattr(p["probe"], "trusted", ("ec2.amazonaws.com",)),
            "export-role",
            "export.rds",
        ),
        (lambda p: p["configs"].configs.pop(), "dts-configs", "orchestrator sync"),
        (lambda p: p["tables"].absent.append("shop__payments"), "destination-tables", "sync"),
        (lambda p: setattr(p["topics"], "exists", False), "topic", "topics create"),
        (lambda p: p["secrets"].clear(), "slack", "RDS2BQ_SECRET_RDS2BQ_SLACK_WEBHOOK"),
        (lambda p: p["secrets"].clear(), "dts-keys", "RDS2BQ_SECRET_RDS2BQ_DTS_READER_KEYS"),
    ],
)
def test_one_misconfiguration_at_a_time_fails_its_check_with_the_fix(
    breakage: Any, check: str, fix: str
) -> None:
    ctx, parts = context()
    breakage(parts)
    results = by_name(ctx)
    assert results[check].outcome is Outcome.FAIL, results[check]
    assert fix in results[check].fix
    others = [
        r for r in results.values() if r.failed and r.name not in (check, "dts-keys", "slack")
    ]
    assert others == []


def test_drifted_configs_are_listed_by_field() -> None:
    ctx, parts = context()
    first = parts["configs"].configs[0]
    parts["configs"].configs[0] = first.__class__(
        **{**first.__dict__, "file_format": "CSV", "data_path": "s3://x/*"}
    )
    result = by_name(ctx)["dts-configs"]
    assert result.failed and "shop.orders differs (data_path, file_format)" in result.detail


def test_a_topic_iam_policy_that_cannot_be_read_is_a_warning() -> None:
    ctx, parts = context()
    parts["topics"].members = None
    result = by_name(ctx)["topic-publisher"]
    assert result.outcome is Outcome.WARN and "roles/pubsub.publisher" in result.fix


def test_send_test_posts_a_message_without_the_url() -> None:
    ctx, parts = context()
    ctx.send_test = True
    result = by_name(ctx)["slack"]
    assert result.outcome is Outcome.PASS and "test message posted" in result.detail
    assert "hooks.slack.com/services" not in result.detail
    assert "rds2bq doctor (prod): test message" in parts["notifier"].payloads[0]["text"]


def test_a_check_that_crashes_fails_alone() -> None:
    ctx, _ = context()

    def broken() -> Any:
        raise RuntimeError("boom")

    ctx.aws = broken
    results = by_name(ctx)
    assert results["bucket"].failed and "unexpected RuntimeError: boom" in results["bucket"].detail
    assert results["ledger"].outcome is Outcome.PASS


# --------------------------------------------------------------------------- web identity


def web_context(policy: dict[str, Any] | None, claims: dict[str, str] = CLAIMS) -> Context:
    ctx, _ = context(RDS2BQ_AWS_AUTH="web-identity")

    def refuse(_token: str) -> str:
        raise AccessDeniedError(
            "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity"
        )

    ctx.id_token = lambda: token(claims)
    ctx.claims = unverified_claims  # as the wiring gives it
    ctx.assume_web_identity = refuse
    ctx.trust_policy = lambda: policy
    return ctx


def test_the_usual_mistake_the_audience_in_aud_is_named() -> None:
    ctx = web_context(web_policy(aud="rds2bq", sub=AZP))
    result = doctor.check_aws_credentials(ctx)
    assert result.failed and "rds2bq@acme" in result.detail
    assert "accounts.google.com:aud is 'rds2bq' (that is the audience string" in result.fix
    assert f"it must be '{AZP}'" in result.fix
    assert "eyJ" not in result.detail + result.fix  # the token is never shown


def test_a_wrong_oaud_and_a_wrong_principal_are_named() -> None:
    policy = web_policy(aud=AZP, oaud="other-audience", sub=AZP)
    policy["Statement"][0]["Principal"] = {"Federated": "cognito-identity.amazonaws.com"}
    fix = doctor.check_aws_credentials(web_context(policy)).fix
    assert "accounts.google.com:oaud is 'other-audience'" in fix and "must be 'rds2bq'" in fix
    assert 'Principal must be {"Federated": "accounts.google.com"}' in fix


def test_without_the_policy_the_hint_says_what_each_condition_must_be() -> None:
    fix = doctor.check_aws_credentials(web_context(None)).fix
    assert f"accounts.google.com:aud = '{AZP}'" in fix
    assert "accounts.google.com:oaud = 'rds2bq'" in fix
    assert "it belongs in accounts.google.com:oaud" in fix


def test_a_token_for_another_audience_is_named() -> None:
    fix = doctor.check_aws_credentials(
        web_context(None, {**CLAIMS, "aud": "sts.amazonaws.com"})
    ).fix
    assert "The token's aud is 'sts.amazonaws.com', not RDS2BQ_AWS_AUDIENCE='rds2bq'" in fix


def test_matching_conditions_point_elsewhere() -> None:
    fix = doctor.check_aws_credentials(web_context(web_policy(aud=AZP, oaud="rds2bq", sub=AZP))).fix
    assert "conditions match this token" in fix


def test_no_google_credentials_is_explained() -> None:
    ctx = web_context(None)

    def no_token() -> str:
        raise RuntimeError("Neither metadata server or valid service account credentials")

    ctx.id_token = no_token
    result = doctor.check_aws_credentials(ctx)
    assert result.failed and "GOOGLE_APPLICATION_CREDENTIALS" in result.fix


def test_a_web_identity_that_works_passes() -> None:
    ctx = web_context(None)
    ctx.assume_web_identity = lambda _t: "arn:aws:sts::1:assumed-role/orch/rds2bq-doctor"
    assert doctor.check_aws_credentials(ctx).outcome is Outcome.PASS


def test_token_claims_survive_garbage() -> None:
    assert doctor.token_claims(unverified_claims("not-a-jwt")) == {}
    assert doctor.token_claims(unverified_claims(token(CLAIMS)))["azp"] == AZP

"""Preflight: is each cloud wired as rds2bq needs it? One small check per concern.

Each check takes a ``Context`` (the settings and lazily built probes and adapters) and returns
``CheckResult``s: PASS, WARN (could not be confirmed, or not fatal) or FAIL, each failure with the
fix. A check never raises: an error becomes its FAIL. ``run_checks`` runs them in order; the CLI
exits non-zero if any failed. Nothing here changes either account, except ``--send-test`` posting
one Slack message.

The checks speak to the ports and the probes only; ``context_from_wiring`` builds the real ones
(vendor SDKs are imported lazily there, in the adapters).
"""

from __future__ import annotations

import contextlib
import json
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from orchestrator.app import sync
from orchestrator.app.daily import MAX_CONCURRENT_EXPORTS
from orchestrator.app.ports import Exporter, Ledger, Notifier, Secrets
from orchestrator.config import Settings
from orchestrator.core.errors import (
    AccessDeniedError,
    NoSnapshotError,
    NotFoundError,
    Rds2bqError,
    TransientError,
)
from orchestrator.present import slack

if TYPE_CHECKING:
    from orchestrator.adapters.probes import KmsKey, Role, SourceEngine, Topic
    from orchestrator.wiring import Wiring

EXPORT_SERVICE = "export.rds.amazonaws.com"
DTS_AGENT_DOMAIN = "@gcp-sa-bigquerydatatransfer.iam.gserviceaccount.com"
EXPORTABLE_ENGINES = ("aurora-mysql", "aurora-postgresql", "mysql", "mariadb", "postgres")
WEB_IDENTITY_ACTION = "sts:AssumeRoleWithWebIdentity"


class Outcome(StrEnum):
    PASS = "PASS"  # noqa: S105 - a check outcome, not a password
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class CheckResult:
    name: str
    outcome: Outcome
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAIL


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Outcome.PASS, detail)


def warned(name: str, detail: str, fix: str = "") -> CheckResult:
    return CheckResult(name, Outcome.WARN, detail, fix)


def failed(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, Outcome.FAIL, detail, fix)


# --------------------------------------------------------------------------- what checks use


class AwsProbePort(Protocol):
    def caller_arn(self) -> str: ...
    def source_engine(self, kind: str, source_id: str) -> SourceEngine: ...
    def bucket_region(self, bucket: str) -> str: ...
    def kms_key(self, key_id: str) -> KmsKey: ...
    def role(self, role_arn: str) -> Role: ...


class TopicProbePort(Protocol):
    def topic(self, path: str) -> Topic: ...
    def publishers(self, path: str) -> list[str] | None: ...


@dataclass
class Context:
    """The settings, and factories for what the checks probe (each built on first use)."""

    settings: Settings
    aws: Callable[[], AwsProbePort]
    exporter: Callable[[], Exporter]
    configs: Callable[[], sync.ConfigStore]
    tables: Callable[[], sync.DestinationTables]
    topics: Callable[[], TopicProbePort]
    secrets: Callable[[], Secrets]
    ledger: Callable[[], Ledger]
    notifier: Callable[[], Notifier]
    # web-identity only: a Google ID token, and one AssumeRoleWithWebIdentity with it
    id_token: Callable[[], str] = field(default=lambda: "")
    assume_web_identity: Callable[[str], str] = field(default=lambda _token: "")
    # the role's trust policy read with the operator's own AWS credentials, if they may
    trust_policy: Callable[[], dict[str, Any] | None] = field(default=lambda: None)
    send_test: bool = False


Check = Callable[[Context], "CheckResult | list[CheckResult]"]


# --------------------------------------------------------------------------- AWS


def check_aws_credentials(ctx: Context) -> CheckResult:
    name = "aws-credentials"
    s = ctx.settings
    if s.aws_auth != "web-identity":
        arn = ctx.aws().caller_arn()
        return passed(name, f"{s.aws_auth} credentials work: calling AWS as {arn}")
    try:
        token = ctx.id_token()
    except Exception as exc:  # noqa: BLE001 - google-auth raises many kinds; all mean "no token"
        return failed(
            name,
            f"no Google ID token for audience {s.aws_audience!r}: {_first_line(exc)}",
            "run doctor where a service account's credentials are available: on Google Cloud, or "
            "with GOOGLE_APPLICATION_CREDENTIALS naming a service-account key, or "
            "`gcloud auth application-default login --impersonate-service-account=SA_EMAIL`",
        )
    claims = token_claims(token)
    try:
        arn = ctx.assume_web_identity(token)
    except AccessDeniedError as exc:
        policy = None
        with contextlib.suppress(Exception):  # best effort: the hints work without it
            policy = ctx.trust_policy()
        hints = trust_hints(claims, s.aws_audience, policy)
        return failed(
            name,
            f"AWS refused AssumeRoleWithWebIdentity on {s.aws_role_arn} for "
            f"{claims.get('email') or claims.get('sub') or 'this identity'}: {exc}",
            " ".join(hints),
        )
    return passed(name, f"assumed {s.aws_role_arn} with a Google ID token: AWS sees {arn}")


def token_claims(token: str) -> dict[str, str]:
    """The claims of a JWT, unverified (AWS verifies it): only to explain a refusal. The token
    itself is never shown."""
    from orchestrator.adapters.probes import unverified_claims

    data = unverified_claims(token)
    return {k: str(data[k]) for k in ("aud", "azp", "sub", "email", "iss") if k in data}


def trust_hints(
    claims: Mapping[str, str], audience: str, policy: Mapping[str, Any] | None
) -> list[str]:
    """Which condition of the role's trust policy likely rejects this token, and what it must be.

    For a service-account ID token, AWS maps ``accounts.google.com:aud`` to the token's ``azp``
    (the account's numeric id), ``:oaud`` to the token's ``aud`` (the audience string) and
    ``:sub`` to ``sub`` (docs/platform.md). The usual mistake is the audience string in ``:aud``.
    """
    azp, aud, sub = claims.get("azp", ""), claims.get("aud", ""), claims.get("sub", "")
    expected = {
        "accounts.google.com:aud": (azp, "the token's azp: the service account's unique id"),
        "accounts.google.com:oaud": (aud, "the token's aud: RDS2BQ_AWS_AUDIENCE"),
        "accounts.google.com:sub": (sub, "the token's sub: the service account's unique id"),
    }
    hints: list[str] = []
    if aud and aud != audience:
        hints.append(f"The token's aud is {aud!r}, not RDS2BQ_AWS_AUDIENCE={audience!r}.")
    if policy is None:
        wanted = ", ".join(f"{k} = {v[0]!r} ({v[1]})" for k, v in expected.items())
        hints.append(
            'The role\'s trust policy must allow Principal {"Federated": "accounts.google.com"}'
            f" to {WEB_IDENTITY_ACTION} with the conditions {wanted}. The usual mistake is the "
            "audience string in accounts.google.com:aud: it belongs in accounts.google.com:oaud."
        )
        return hints
    statements = [
        s
        for s in _policy_statements(policy)
        if s.get("Effect") == "Allow" and WEB_IDENTITY_ACTION in _strings(s.get("Action"))
    ]
    if not statements:
        hints.append(f"No statement of the trust policy allows {WEB_IDENTITY_ACTION}: add one.")
        return hints
    for statement in statements:
        principal = statement.get("Principal", {})
        federated = _strings(principal.get("Federated")) if isinstance(principal, dict) else []
        if "accounts.google.com" not in federated:
            hints.append(
                'The statement\'s Principal must be {"Federated": "accounts.google.com"}, '
                f"not {json.dumps(principal)}."
            )
        for key, values in _conditions(statement).items():
            if key not in expected:
                continue
            want, meaning = expected[key]
            if want and want not in values:
                swapped = (
                    " (that is the audience string: it belongs in :oaud)"
                    if (key == "accounts.google.com:aud" and aud in values)
                    else ""
                )
                hints.append(
                    f"Condition {key} is {', '.join(map(repr, values))}{swapped}; it must be "
                    f"{want!r} ({meaning})."
                )
    if len(hints) == (1 if aud and aud != audience else 0):
        hints.append(
            "The trust policy's conditions match this token; check that the role ARN is right "
            "and that no SCP or permissions boundary denies sts:AssumeRoleWithWebIdentity."
        )
    return hints


def _policy_statements(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    statements = policy.get("Statement", [])
    if isinstance(statements, Mapping):
        return [statements]
    return [s for s in statements if isinstance(s, Mapping)]


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _conditions(statement: Mapping[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for operator_block in (statement.get("Condition") or {}).values():
        if isinstance(operator_block, Mapping):
            for key, value in operator_block.items():
                found.setdefault(str(key), []).extend(_strings(value))
    return found


def check_source(ctx: Context) -> CheckResult:
    name = "source"
    s = ctx.settings
    where = f"{s.source_kind} {s.source_id} in {s.aws_region}"
    try:
        engine = ctx.aws().source_engine(s.source_kind, s.source_id)
        source = ctx.exporter().resolve_source(s.source_kind, s.source_id)
    except NoSnapshotError as exc:
        return failed(
            name,
            str(exc),
            "automated backups must be on (backup retention of 1 day or more); the first "
            "snapshot appears after the first backup window. Or use RDS2BQ_SOURCE_KIND=cluster "
            "(Aurora: exports a clone of the live cluster)",
        )
    except NotFoundError as exc:
        return failed(
            name,
            f"{where}: {exc}",
            "correct RDS2BQ_SOURCE_ID / RDS2BQ_SOURCE_KIND / RDS2BQ_AWS_REGION "
            "(db-snapshot takes a DB instance id, the others an Aurora cluster id)",
        )
    if not engine.engine.startswith(EXPORTABLE_ENGINES):
        return failed(
            name,
            f"{where} runs {engine.engine}, which RDS cannot export to S3",
            "export works for Aurora MySQL/PostgreSQL, RDS for MySQL, MariaDB and PostgreSQL",
        )
    as_of = f", snapshot of {source.snapshot_time.isoformat()}" if source.snapshot_time else ""
    detail = f"{where} ({engine.engine}, {engine.status}): exports read {source.arn}{as_of}"
    if engine.status not in ("available", ""):
        return warned(name, detail, "an export may wait until the source is available")
    return passed(name, detail)


def check_bucket(ctx: Context) -> CheckResult:
    name = "bucket"
    s = ctx.settings
    try:
        region = ctx.aws().bucket_region(s.s3_bucket)
    except NotFoundError:
        return failed(
            name,
            f"bucket {s.s3_bucket} does not exist",
            f"create it in {s.aws_region} (infra/aws does), or correct RDS2BQ_S3_BUCKET",
        )
    except AccessDeniedError as exc:
        return failed(
            name,
            str(exc),
            "allow the orchestrator role s3:ListBucket and s3:GetBucketLocation on the bucket",
        )
    if region != s.aws_region:
        return failed(
            name,
            f"bucket {s.s3_bucket} is in {region}, the source in {s.aws_region}",
            "RDS exports only to a bucket in the source's Region: use one there",
        )
    return passed(name, f"s3://{s.s3_bucket}/{s.s3_prefix} reachable, in {region}")


def check_kms_key(ctx: Context) -> CheckResult:
    name = "kms-key"
    s = ctx.settings
    try:
        key = ctx.aws().kms_key(s.kms_key_id)
    except NotFoundError:
        return failed(
            name,
            f"KMS key {s.kms_key_id} does not exist",
            f"RDS2BQ_KMS_KEY_ID must be the ARN of a symmetric key in {s.aws_region}",
        )
    except AccessDeniedError as exc:
        return failed(
            name,
            str(exc),
            "the key policy must allow the orchestrator role kms:DescribeKey and kms:CreateGrant",
        )
    if key.state != "Enabled":
        fix = f"aws kms enable-key --key-id {key.arn}"
        if key.state == "PendingDeletion":
            fix = f"aws kms cancel-key-deletion --key-id {key.arn}, then {fix}"
        return failed(name, f"KMS key {key.arn} is {key.state}: exports cannot use it", fix)
    if key.usage not in ("ENCRYPT_DECRYPT", "") or key.spec not in ("SYMMETRIC_DEFAULT", ""):
        return failed(
            name,
            f"KMS key {key.arn} is {key.spec} for {key.usage}",
            "RDS exports need a symmetric encryption key (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT)",
        )
    return passed(name, f"{key.arn} is enabled (symmetric, encrypt/decrypt)")


def check_export_role(ctx: Context) -> CheckResult:
    name = "export-role"
    arn = ctx.settings.export_role_arn
    try:
        role = ctx.aws().role(arn)
    except NotFoundError:
        return failed(
            name,
            f"role {arn} does not exist",
            "create it (infra/aws does) or correct RDS2BQ_EXPORT_ROLE_ARN; it must trust "
            f"{EXPORT_SERVICE} and may write to the bucket",
        )
    except AccessDeniedError as exc:
        return warned(
            name,
            f"cannot read role {arn} ({exc}); RDS checks it when an export starts",
            "allow the orchestrator iam:GetRole on it to have doctor check it",
        )
    if EXPORT_SERVICE not in role.trusted_services:
        return failed(
            name,
            f"role {arn} does not trust {EXPORT_SERVICE} (it trusts "
            f"{', '.join(sorted(role.trusted_services)) or 'no service'})",
            f'add Principal {{"Service": "{EXPORT_SERVICE}"}}, Action sts:AssumeRole to its '
            "trust policy",
        )
    return passed(name, f"{arn} exists and trusts {EXPORT_SERVICE}")


def check_running_exports(ctx: Context) -> CheckResult:
    name = "export-slots"
    running = ctx.exporter().running_exports()
    detail = f"{running} of {MAX_CONCURRENT_EXPORTS} concurrent exports in use in this account"
    if running >= MAX_CONCURRENT_EXPORTS:
        return warned(name, detail, "a new export waits (poll retries) until one has finished")
    return passed(name, detail)


# --------------------------------------------------------------------------- Google


def check_dts_keys(ctx: Context) -> CheckResult:
    name = "dts-keys"
    secret = ctx.settings.dts_keys_secret
    try:
        keys = sync.load_access_keys(ctx.secrets(), secret)
    except NotFoundError as exc:
        return failed(name, str(exc), _secret_fix(ctx.settings, secret, '{"access_key_id": …}'))
    return passed(name, f"secret {secret} holds the DTS reader's key {_masked(keys.access_key_id)}")


def check_dts_configs(ctx: Context) -> CheckResult:
    name = "dts-configs"
    s = ctx.settings
    desired = sync.desired_configs(s)
    actual = ctx.configs().list_configs()
    try:
        key_id = sync.load_access_keys(ctx.secrets(), s.dts_keys_secret).access_key_id
    except Rds2bqError:
        key_id = None  # reported by dts-keys; compare everything but the key here
    ours = {c.table_key: c for c in actual if c.table_key}
    plan = sync.plan(
        desired,
        actual,
        key_id or "",
        prune=False,
        env=s.env,
    )
    drifted = [
        (u.desired.table_key, [d for d in u.drift if key_id or d is not sync.Drift.ACCESS_KEY])
        for u in plan.update
    ]
    drifted = [(k, d) for k, d in drifted if d]
    problems = [f"missing for {_clip([c.table_key for c in plan.create])}"] if plan.create else []
    problems += [f"{k} differs ({', '.join(d)})" for k, d in drifted]
    stale = [f"{r.config.table_key or r.config.display_name} ({r.reason})" for r in plan.kept]
    if problems:
        return failed(
            name,
            "transfer configs do not match the tables file: " + "; ".join(problems),
            "run `python -m orchestrator sync` (`--dry-run` first shows the plan)",
        )
    detail = f"{len(ours)} transfer configs match the {len(desired)} tables of the tables file"
    if stale:
        return warned(
            name,
            detail + "; extra: " + "; ".join(stale),
            "`python -m orchestrator sync --prune` deletes them",
        )
    return passed(name, detail)


def check_destination_tables(ctx: Context) -> CheckResult:
    name = "destination-tables"
    s = ctx.settings
    wanted = [t.bq_table for t in s.tables]
    missing = ctx.tables().missing(wanted)
    if missing:
        return failed(
            name,
            f"{len(missing)} of {len(wanted)} tables missing in {s.gcp_project}.{s.bq_dataset}: "
            f"{_clip(missing)}",
            "run `python -m orchestrator sync`: it creates them (DTS needs them before a load)",
        )
    return passed(name, f"all {len(wanted)} tables exist in {s.gcp_project}.{s.bq_dataset}")


def check_topic(ctx: Context) -> list[CheckResult]:
    s = ctx.settings
    path = s.topic_path
    probe = ctx.topics()
    try:
        topic = probe.topic(path)
    except NotFoundError:
        return [
            failed(
                "topic",
                f"topic {path} does not exist",
                f"gcloud pubsub topics create {s.topic} --project {s.gcp_project} "
                "(scheduler.tf creates it), or correct RDS2BQ_TOPIC",
            )
        ]
    if topic.schema:
        return [
            failed(
                "topic",
                f"topic {path} has the schema {topic.schema}",
                "DTS cannot publish to a topic with a schema: use a topic without one",
            )
        ]
    result = [passed("topic", f"{path} exists, without a schema")]
    members = probe.publishers(path)
    agent = "service-PROJECT_NUMBER" + DTS_AGENT_DOMAIN
    grant = (
        f"gcloud pubsub topics add-iam-policy-binding {s.topic} --project {s.gcp_project} "
        f"--member serviceAccount:{agent} --role roles/pubsub.publisher"
    )
    if members is None:
        result.append(warned("topic-publisher", "the topic's IAM policy could not be read", grant))
    elif any(m.endswith(DTS_AGENT_DOMAIN) for m in members):
        result.append(passed("topic-publisher", "the DTS service agent may publish to it"))
    else:
        result.append(
            warned(
                "topic-publisher",
                "the DTS service agent is not a publisher on the topic itself (a project-level "
                "grant also works)",
                grant,
            )
        )
    return result


def check_ledger(ctx: Context) -> CheckResult:
    name = "ledger"
    s = ctx.settings
    try:
        runs = ctx.ledger().recent_runs(1)
    except TransientError:
        raise
    except Rds2bqError as exc:
        return failed(
            name,
            f"Firestore database {s.firestore_database}: {exc}",
            f"create a Firestore database in Native mode in {s.gcp_project} and give the "
            "functions roles/datastore.user",
        )
    last = f"; last run {runs[0].run_id} ({runs[0].state.value})" if runs else "; no run yet"
    return passed(name, f"run ledger {s.firestore_database}/{s.ledger_collection} reachable{last}")


def check_slack(ctx: Context) -> CheckResult:
    name = "slack"
    secret = ctx.settings.slack_webhook_secret
    try:
        url = ctx.secrets().get(secret).strip()
    except NotFoundError as exc:
        return failed(
            name, str(exc), _secret_fix(ctx.settings, secret, "https://hooks.slack.com/services/…")
        )
    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        return failed(
            name,
            f"secret {secret} does not hold an https webhook URL",
            f"store the incoming webhook's URL in {secret} (a new version)",
        )
    detail = f"secret {secret} holds a webhook for {parts.hostname}"
    if not ctx.send_test:
        return passed(name, detail + " (--send-test posts a test message)")
    try:
        ctx.notifier().post(slack_test_message(ctx.settings))
    except Rds2bqError as exc:
        return failed(
            name,
            f"{detail}, but the test message failed: {exc}",
            "check that the webhook is active (Slack app > Incoming Webhooks) and the channel "
            "exists",
        )
    return passed(name, detail + ": test message posted")


def slack_test_message(settings: Settings) -> dict[str, Any]:
    text = (
        f"rds2bq doctor ({settings.env}): test message. Failures and daily summaries for "
        f"{len(settings.tables)} tables into {settings.gcp_project}.{settings.bq_dataset} "
        "arrive here."
    )
    payload = {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }
    problems = slack.validate_payload(payload)
    if problems:  # pragma: no cover - a fixed, short payload
        raise ValueError("; ".join(problems))
    return payload


def _secret_fix(settings: Settings, secret: str, example: str) -> str:
    if settings.secrets_backend == "env":
        from orchestrator.adapters.secrets import EnvSecrets

        return f"set {EnvSecrets.variable(secret)} (local secrets backend) to {example}"
    return (
        f"printf '%s' '{example}' | gcloud secrets create {secret} --project "
        f"{settings.gcp_project} --data-file=- (or add a version), and grant the functions "
        "roles/secretmanager.secretAccessor on it"
    )


def _masked(key_id: str) -> str:
    return (key_id[:4] + "…" + key_id[-4:]) if len(key_id) > 8 else "…"


def _clip(items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- running


CHECKS: tuple[tuple[str, Check], ...] = (
    ("aws-credentials", check_aws_credentials),
    ("source", check_source),
    ("bucket", check_bucket),
    ("kms-key", check_kms_key),
    ("export-role", check_export_role),
    ("export-slots", check_running_exports),
    ("dts-keys", check_dts_keys),
    ("dts-configs", check_dts_configs),
    ("destination-tables", check_destination_tables),
    ("topic", check_topic),
    ("ledger", check_ledger),
    ("slack", check_slack),
)


def run_checks(
    ctx: Context,
    checks: Iterable[tuple[str, Check]] = CHECKS,
    on_result: Callable[[CheckResult], None] = lambda _: None,
    debug: bool = False,
) -> list[CheckResult]:
    """Run every check; an error inside one becomes its FAIL and the others still run."""
    results: list[CheckResult] = []
    for name, check in checks:
        try:
            produced = check(ctx)
            batch = produced if isinstance(produced, list) else [produced]
        except TransientError as exc:
            batch = [failed(name, f"transient: {exc}", "try again in a minute")]
        except Rds2bqError as exc:
            batch = [failed(name, str(exc), "see the message")]
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            detail = f"unexpected {type(exc).__name__}: {_first_line(exc)}"
            if debug:
                detail += "\n" + traceback.format_exc()
            batch = [failed(name, detail, "rerun with --debug for the traceback")]
        for result in batch:
            results.append(result)
            on_result(result)
    return results


def context_from_wiring(wiring: Wiring, *, send_test: bool = False) -> Context:
    """The real probes, built lazily from the wiring's settings and clients."""
    s = wiring.settings

    def aws() -> AwsProbePort:
        from orchestrator.adapters.aws_session import client
        from orchestrator.adapters.probes import AwsProbe

        session = wiring.aws_session()
        return AwsProbe(
            **{
                name: client(session, name, s.aws_endpoint_url)
                for name in ("sts", "s3", "kms", "iam", "rds")
            }
        )

    def configs() -> sync.ConfigStore:
        from orchestrator.adapters.dts import build_transfer_runner

        return build_transfer_runner(s)

    def tables() -> sync.DestinationTables:
        from orchestrator.adapters.bigquery import build_destination_tables

        return build_destination_tables(s)

    def topics() -> TopicProbePort:
        from orchestrator.adapters.probes import TopicProbe
        from orchestrator.adapters.pubsub import build_publisher

        return TopicProbe(build_publisher())

    def id_token() -> str:
        from orchestrator.adapters.aws_session import google_id_token_loader

        return google_id_token_loader(s.aws_audience)()

    def assume(token: str) -> str:
        from orchestrator.adapters.probes import anonymous_sts, assume_web_identity

        sts = anonymous_sts(s.aws_region, s.aws_endpoint_url)
        return assume_web_identity(sts, s.aws_role_arn, token, "rds2bq-doctor")

    def trust_policy() -> dict[str, Any] | None:
        # The operator's own credentials, if they may read the role.
        from orchestrator.adapters.probes import AwsProbe, operator_iam

        iam = operator_iam(s.aws_endpoint_url)
        probe = AwsProbe(sts=None, s3=None, kms=None, iam=iam, rds=None)
        return probe.role(s.aws_role_arn).trust_policy

    return Context(
        settings=s,
        aws=_once(aws),
        exporter=wiring.exporter,
        configs=_once(configs),
        tables=_once(tables),
        topics=_once(topics),
        secrets=lambda: wiring.secrets,
        ledger=lambda: wiring.ledger,
        notifier=lambda: wiring.notifier,
        id_token=id_token,
        assume_web_identity=assume,
        trust_policy=trust_policy,
        send_test=send_test,
    )


def _once(factory: Callable[[], Any]) -> Callable[[], Any]:
    built: list[Any] = []

    def get() -> Any:
        if not built:
            built.append(factory())
        return built[0]

    return get

"""doctor's Google checks: the DTS reader's keys, the transfer configs, the destination tables,
the notification topic, the run ledger and Slack."""

from __future__ import annotations

from urllib.parse import urlsplit

from orchestrator.app import sync
from orchestrator.app.checks import (
    CheckResult,
    Context,
    clip,
    failed,
    masked,
    passed,
    warned,
)
from orchestrator.config import Settings, env_secret_variable
from orchestrator.core.errors import (
    NotFoundError,
    Rds2bqError,
    TransientError,
)

EXPORT_SERVICE = "export.rds.amazonaws.com"
DTS_AGENT_DOMAIN = "@gcp-sa-bigquerydatatransfer.iam.gserviceaccount.com"
EXPORTABLE_ENGINES = ("aurora-mysql", "aurora-postgresql", "mysql", "mariadb", "postgres")
WEB_IDENTITY_ACTION = "sts:AssumeRoleWithWebIdentity"


def check_dts_keys(ctx: Context) -> CheckResult:
    name = "dts-keys"
    secret = ctx.settings.dts_keys_secret
    try:
        keys = sync.load_access_keys(ctx.secrets(), secret)
    except NotFoundError as exc:
        return failed(name, str(exc), _secret_fix(ctx.settings, secret, '{"access_key_id": …}'))
    return passed(name, f"secret {secret} holds the DTS reader's key {masked(keys.access_key_id)}")


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
    problems = [f"missing for {clip([c.table_key for c in plan.create])}"] if plan.create else []
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
            f"{clip(missing)}",
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
        ctx.notifier().post(ctx.test_message())
    except Rds2bqError as exc:
        return failed(
            name,
            f"{detail}, but the test message failed: {exc}",
            "check that the webhook is active (Slack app > Incoming Webhooks) and the channel "
            "exists",
        )
    return passed(name, detail + ": test message posted")


def _secret_fix(settings: Settings, secret: str, example: str) -> str:
    if settings.secrets_backend == "env":
        return f"set {env_secret_variable(secret)} (local secrets backend) to {example}"
    return (
        f"printf '%s' '{example}' | gcloud secrets create {secret} --project "
        f"{settings.gcp_project} --data-file=- (or add a version), and grant the functions "
        "roles/secretmanager.secretAccessor on it"
    )

"""Settings: one object built from the environment plus the tables file.

Every environment variable the project reads is named in ``FIELDS`` below and nowhere else.
The CLI turns each into a flag of the same name (``RDS2BQ_S3_BUCKET`` -> ``--s3-bucket``), so
deployment config and flags cannot drift. Validation collects every problem before raising, each
naming its key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestrator.core.errors import ConfigError
from orchestrator.core.model import TableRef, parse_table_ref
from orchestrator.core.prices import Prices
from orchestrator.core.schedule import DailySchedule

PREFIX = "RDS2BQ_"

SOURCE_KINDS = ("cluster", "cluster-snapshot", "db-snapshot")
AWS_AUTH_MODES = ("web-identity", "static", "default")
SECRETS_BACKENDS = ("secret-manager", "env")


@dataclass(frozen=True)
class Field:
    """One setting: its environment name (without the prefix), default and help text."""

    name: str
    help: str
    default: str | None = None  # None: required
    example: str = ""

    @property
    def env(self) -> str:
        return PREFIX + self.name

    @property
    def flag(self) -> str:
        return "--" + self.name.lower().replace("_", "-")


FIELDS: tuple[Field, ...] = (
    # --- identity of this deployment
    Field("ENV", "Short name of this deployment; part of every export id.", "prod", "prod"),
    Field(
        "TIMEZONE",
        "Time zone for dates shown to people (stored times are UTC).",
        "Asia/Tokyo",
        "Asia/Tokyo",
    ),
    Field(
        "TABLES_FILE",
        "File listing the tables: db.table or db.schema.table, one per line.",
        "tables.txt",
        "tables.txt",
    ),
    # --- AWS source and export target
    Field("AWS_REGION", "AWS Region of the source, bucket and key.", None, "ap-northeast-1"),
    Field(
        "SOURCE_KIND",
        "cluster (live Aurora cluster), cluster-snapshot (latest automated "
        "cluster snapshot) or db-snapshot (latest automated DB instance snapshot).",
        "cluster",
        "cluster",
    ),
    Field(
        "SOURCE_ID",
        "Aurora cluster identifier, or DB instance identifier for db-snapshot.",
        None,
        "shop-aurora",
    ),
    Field("S3_BUCKET", "Bucket the export is written to (same Region).", None, "acme-rds-exports"),
    Field(
        "S3_PREFIX", "Prefix inside the bucket, without ':' or a trailing '/'.", "rds2bq", "rds2bq"
    ),
    Field(
        "KMS_KEY_ID",
        "KMS key ARN the export is encrypted with.",
        None,
        "arn:aws:kms:ap-northeast-1:123456789012:key/1234abcd-...",
    ),
    Field(
        "EXPORT_ROLE_ARN",
        "Role RDS assumes to write the export (trusts export.rds.amazonaws.com).",
        None,
        "arn:aws:iam::123456789012:role/rds2bq-export",
    ),
    # --- AWS credentials
    Field(
        "AWS_AUTH",
        "web-identity (Google ID token -> AssumeRoleWithWebIdentity), static "
        "(keys from Secret Manager) or default (boto3's chain, for local use).",
        "web-identity",
        "web-identity",
    ),
    Field(
        "AWS_ROLE_ARN",
        "Role the orchestrator assumes (web-identity; optional with static).",
        "",
        "arn:aws:iam::123456789012:role/rds2bq-orchestrator",
    ),
    Field(
        "AWS_AUDIENCE",
        "Audience of the Google ID token exchanged with AWS STS.",
        "rds2bq",
        "rds2bq",
    ),
    Field(
        "AWS_KEYS_SECRET",
        'Secret holding {"access_key_id", "secret_access_key"} for AWS_AUTH=static.',
        "",
        "projects/p/secrets/rds2bq-aws-keys/versions/latest",
    ),
    Field(
        "AWS_ENDPOINT_URL",
        "Endpoint override for every AWS service (local stack only).",
        "",
        "http://127.0.0.1:5000",
    ),
    # --- Google side
    Field(
        "GCP_PROJECT",
        "Google Cloud project of the datasets, configs and topic.",
        None,
        "acme-analytics",
    ),
    Field(
        "BQ_LOCATION",
        "Location of the dataset and transfer configs.",
        "asia-northeast1",
        "asia-northeast1",
    ),
    Field("BQ_DATASET", "Destination dataset.", None, "rds_shop"),
    Field(
        "TOPIC",
        "Pub/Sub topic id for DTS run notifications and our own events.",
        "rds2bq-events",
        "rds2bq-events",
    ),
    Field(
        "DTS_KEYS_SECRET",
        'Secret holding the DTS reader\'s {"access_key_id", "secret_access_key"}.',
        "rds2bq-dts-reader-keys",
        "rds2bq-dts-reader-keys",
    ),
    Field(
        "SLACK_WEBHOOK_SECRET",
        "Secret holding the Slack incoming webhook URL.",
        "rds2bq-slack-webhook",
        "rds2bq-slack-webhook",
    ),
    Field(
        "SECRETS_BACKEND",
        "secret-manager, or env (RDS2BQ_SECRET_<NAME> variables; local only).",
        "secret-manager",
        "secret-manager",
    ),
    Field("FIRESTORE_DATABASE", "Firestore database of the run ledger.", "(default)", "(default)"),
    Field(
        "LEDGER_COLLECTION", "Top-level collection of the run ledger.", "rds2bq_runs", "rds2bq_runs"
    ),
    Field(
        "DTS_SERVICE_ACCOUNT",
        "Service account the transfer configs run as (sync); empty: whoever runs sync.",
        "",
        "rds2bq-dts@acme-analytics.iam.gserviceaccount.com",
    ),
    Field(
        "BQ_ENDPOINT",
        "BigQuery API endpoint override (local stack only).",
        "",
        "http://127.0.0.1:9050",
    ),
    Field(
        "DTS_ENDPOINT",
        "DTS REST API endpoint override, http://host:port or host:port (local stack only).",
        "",
        "http://127.0.0.1:50051",
    ),
    Field(
        "SECRETS_ENDPOINT",
        "Secret Manager REST API endpoint override, http://host:port (local stack only).",
        "",
        "http://127.0.0.1:50052",
    ),
    # --- timing
    Field(
        "EXPORT_DEADLINE_MINUTES",
        "An export still running this long after it started is flagged late (once).",
        "360",
        "360",
    ),
    Field(
        "VISIBILITY_MARGIN_MINUTES",
        "Wait after the export completes before starting "
        "transfers (S3 files take ~5 min to be visible to DTS).",
        "5",
        "5",
    ),
    Field("FANOUT_CONCURRENCY", "Transfer runs started at once during the hand-off.", "16", "16"),
    Field(
        "LEASE_SECONDS", "Hand-off lease; must exceed the poll function's timeout.", "600", "600"
    ),
    Field("MAX_SLOT_AGE_HOURS", "A start_export slot older than this is refused.", "48", "48"),
    Field(
        "NOTIFY_MAX_AGE_HOURS",
        "notify drops (with a log line) messages older than this, so "
        "a retried event cannot loop for Pub/Sub's 7 days.",
        "24",
        "24",
    ),
    Field(
        "DAILY_SCHEDULE",
        "Cloud Scheduler's daily cron (M H * * *, in RDS2BQ_TIMEZONE), so that the poll notices a "
        "slot whose call never came; empty: no such check.",
        "",
        "0 1 * * *",
    ),
    Field(
        "MISSED_RUN_GRACE_MINUTES",
        "How long after a daily slot its run may still appear (the scheduler's retries) before "
        "Slack is told it is missing.",
        "120",
        "120",
    ),
    Field(
        "RECONCILE_AFTER_MINUTES",
        "A table whose DTS run has sent no notification this long after it started is looked "
        "up by the poll (a safety net for a lost notification).",
        "60",
        "60",
    ),
    # --- the digest's cost estimate (docs/platform.md, "What a day costs")
    Field(
        "PRICE_EXPORT_PER_GB",
        "USD per GB of an RDS export to S3 (Amazon RDS / Aurora pricing, Snapshot Export; AWS "
        "bills the snapshot's full size), for the run digest's estimate.",
        "0.010",
        "0.010",
    ),
    Field(
        "PRICE_EGRESS_PER_GB",
        "USD per GB of data transfer out of AWS to the internet (DTS reading S3; AWS data "
        "transfer pricing, first 10 TB a month), for the run digest's estimate.",
        "0.09",
        "0.09",
    ),
)

_BY_NAME = {f.name: f for f in FIELDS}
_ENV_RE = re.compile(r"^[a-z][a-z0-9]{0,19}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,254}$")


@dataclass(frozen=True)
class Settings:
    env: str
    timezone: ZoneInfo
    tables: tuple[TableRef, ...]
    aws_region: str
    source_kind: str
    source_id: str
    s3_bucket: str
    s3_prefix: str
    kms_key_id: str
    export_role_arn: str
    aws_auth: str
    aws_role_arn: str
    aws_audience: str
    aws_keys_secret: str
    aws_endpoint_url: str
    gcp_project: str
    bq_location: str
    bq_dataset: str
    topic: str
    dts_keys_secret: str
    slack_webhook_secret: str
    secrets_backend: str
    firestore_database: str
    ledger_collection: str
    dts_endpoint: str
    secrets_endpoint: str
    dts_service_account: str
    bq_endpoint: str
    export_deadline_minutes: int
    visibility_margin_minutes: int
    fanout_concurrency: int
    lease_seconds: int
    max_slot_age_hours: int
    notify_max_age_hours: int
    reconcile_after_minutes: int
    daily_schedule: DailySchedule | None
    missed_run_grace_minutes: int
    price_export_per_gb: float = Prices.export_per_gb
    price_egress_per_gb: float = Prices.egress_per_gb
    raw: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def topic_path(self) -> str:
        return f"projects/{self.gcp_project}/topics/{self.topic}"

    @property
    def dts_parent(self) -> str:
        return f"projects/{self.gcp_project}/locations/{self.bq_location}"

    @property
    def prices(self) -> Prices:
        return Prices(self.price_export_per_gb, self.price_egress_per_gb)


LEDGER_NEEDS = frozenset({"GCP_PROJECT"})
"""What a command that only reads the run ledger (``status``) needs: the Firestore project (the
database and collection have defaults)."""


def load_settings(
    environ: Mapping[str, str] | None = None,
    read_text: Callable[[Path], str] | None = None,
    needs: Collection[str] | None = None,
) -> Settings:
    """Build and validate the settings; raise ``ConfigError`` listing every problem at once.

    ``needs`` (field names, e.g. ``LEDGER_NEEDS``) limits what must be present to what one command
    uses: other required settings and the tables file may then be missing (they stay empty), but
    a value that is given is still validated. ``None``: everything, as the functions need."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    raw = {
        f.name: env.get(f.env, f.default if f.default is not None else "").strip() for f in FIELDS
    }

    def needed(name: str) -> bool:
        return needs is None or name in needs

    for f in FIELDS:
        if f.default is None and not raw[f.name] and needed(f.name):
            problems.append(f"{f.env} is required (e.g. {f.example})")

    def integer(name: str, low: int, high: int) -> int:
        text = raw[name]
        try:
            value = int(text)
        except ValueError:
            problems.append(f"{_BY_NAME[name].env}={text!r} is not a whole number")
            return low
        if not low <= value <= high:
            problems.append(f"{_BY_NAME[name].env}={value} must be between {low} and {high}")
        return value

    def price(name: str) -> float:
        text = raw[name]
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 <= value <= 100:  # NaN fails both comparisons
            problems.append(f"{_BY_NAME[name].env}={text!r} must be a price in USD from 0 to 100")
            return 0.0
        return value

    def choice(name: str, options: tuple[str, ...]) -> str:
        if raw[name] not in options:
            problems.append(
                f"{_BY_NAME[name].env}={raw[name]!r} must be one of " + ", ".join(options)
            )
        return raw[name]

    if not _ENV_RE.match(raw["ENV"]):
        problems.append(
            f"RDS2BQ_ENV={raw['ENV']!r} must be 1-20 lowercase letters or digits, "
            "starting with a letter (it becomes part of the export id)"
        )
    tz = ZoneInfo("UTC")
    try:
        tz = ZoneInfo(raw["TIMEZONE"])
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"RDS2BQ_TIMEZONE={raw['TIMEZONE']!r} is not a known time zone")
    source_kind = choice("SOURCE_KIND", SOURCE_KINDS)
    aws_auth = choice("AWS_AUTH", AWS_AUTH_MODES)
    secrets_backend = choice("SECRETS_BACKEND", SECRETS_BACKENDS)
    if raw["SOURCE_ID"] and not _ID_RE.match(raw["SOURCE_ID"]):
        problems.append(f"RDS2BQ_SOURCE_ID={raw['SOURCE_ID']!r} is not a valid RDS identifier")
    if raw["S3_BUCKET"] and not _BUCKET_RE.match(raw["S3_BUCKET"]):
        problems.append(f"RDS2BQ_S3_BUCKET={raw['S3_BUCKET']!r} is not a valid bucket name")
    prefix = raw["S3_PREFIX"]
    if ":" in prefix or prefix.endswith("/") or prefix.startswith("/") or "//" in prefix:
        problems.append(
            f"RDS2BQ_S3_PREFIX={prefix!r} must not contain ':' or '//', nor start or "
            "end with '/' (RDS exports break on them)"
        )
    if aws_auth == "web-identity" and not raw["AWS_ROLE_ARN"] and needed("AWS_ROLE_ARN"):
        problems.append("RDS2BQ_AWS_ROLE_ARN is required when RDS2BQ_AWS_AUTH=web-identity")
    if aws_auth == "static" and not raw["AWS_KEYS_SECRET"] and needed("AWS_KEYS_SECRET"):
        problems.append("RDS2BQ_AWS_KEYS_SECRET is required when RDS2BQ_AWS_AUTH=static")
    for name in ("KMS_KEY_ID", "EXPORT_ROLE_ARN"):
        if raw[name] and not raw[name].startswith("arn:"):
            problems.append(f"{_BY_NAME[name].env} must be an ARN (starts with 'arn:')")
    deadline = integer("EXPORT_DEADLINE_MINUTES", 10, 7 * 24 * 60)
    margin = integer("VISIBILITY_MARGIN_MINUTES", 0, 120)
    concurrency = integer("FANOUT_CONCURRENCY", 1, 128)
    lease = integer("LEASE_SECONDS", 30, 3600)
    max_age = integer("MAX_SLOT_AGE_HOURS", 1, 24 * 30)
    notify_age = integer("NOTIFY_MAX_AGE_HOURS", 1, 24 * 7)
    reconcile_after = integer("RECONCILE_AFTER_MINUTES", 5, 24 * 60)
    missed_grace = integer("MISSED_RUN_GRACE_MINUTES", 30, 12 * 60)
    price_export = price("PRICE_EXPORT_PER_GB")
    price_egress = price("PRICE_EGRESS_PER_GB")
    daily_schedule: DailySchedule | None = None
    if raw["DAILY_SCHEDULE"]:
        try:
            daily_schedule = DailySchedule.parse(raw["DAILY_SCHEDULE"])
        except ValueError as exc:
            problems.append(f"RDS2BQ_DAILY_SCHEDULE: {exc}")

    tables: tuple[TableRef, ...] = ()
    tables_path = Path(raw["TABLES_FILE"])
    try:
        text = (read_text or (lambda p: p.read_text(encoding="utf-8")))(tables_path)
    except OSError as exc:
        if needed("TABLES_FILE"):
            problems.append(
                f"RDS2BQ_TABLES_FILE={str(tables_path)!r} cannot be read: {exc.strerror or exc}"
            )
    else:
        tables, table_problems = parse_tables(text)
        problems.extend(f"RDS2BQ_TABLES_FILE {p}" for p in table_problems)

    if problems:
        raise ConfigError(problems)
    return Settings(
        env=raw["ENV"],
        timezone=tz,
        tables=tables,
        aws_region=raw["AWS_REGION"],
        source_kind=source_kind,
        source_id=raw["SOURCE_ID"],
        s3_bucket=raw["S3_BUCKET"],
        s3_prefix=prefix,
        kms_key_id=raw["KMS_KEY_ID"],
        export_role_arn=raw["EXPORT_ROLE_ARN"],
        aws_auth=aws_auth,
        aws_role_arn=raw["AWS_ROLE_ARN"],
        aws_audience=raw["AWS_AUDIENCE"],
        aws_keys_secret=raw["AWS_KEYS_SECRET"],
        aws_endpoint_url=raw["AWS_ENDPOINT_URL"],
        gcp_project=raw["GCP_PROJECT"],
        bq_location=raw["BQ_LOCATION"],
        bq_dataset=raw["BQ_DATASET"],
        topic=raw["TOPIC"],
        dts_keys_secret=raw["DTS_KEYS_SECRET"],
        slack_webhook_secret=raw["SLACK_WEBHOOK_SECRET"],
        secrets_backend=secrets_backend,
        firestore_database=raw["FIRESTORE_DATABASE"],
        ledger_collection=raw["LEDGER_COLLECTION"],
        dts_endpoint=raw["DTS_ENDPOINT"],
        secrets_endpoint=raw["SECRETS_ENDPOINT"],
        dts_service_account=raw["DTS_SERVICE_ACCOUNT"],
        bq_endpoint=raw["BQ_ENDPOINT"],
        export_deadline_minutes=deadline,
        visibility_margin_minutes=margin,
        fanout_concurrency=concurrency,
        lease_seconds=lease,
        max_slot_age_hours=max_age,
        notify_max_age_hours=notify_age,
        reconcile_after_minutes=reconcile_after,
        daily_schedule=daily_schedule,
        missed_run_grace_minutes=missed_grace,
        price_export_per_gb=price_export,
        price_egress_per_gb=price_egress,
        raw=raw,
    )


def parse_tables(text: str) -> tuple[tuple[TableRef, ...], list[str]]:
    """Parse the tables file: one table per line, ``#`` comments and blank lines allowed."""
    tables: list[TableRef] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            ref = parse_table_ref(entry)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        if ref.key in seen:
            problems.append(
                f"line {number}: {ref.key} is listed twice (first on line {seen[ref.key]})"
            )
            continue
        seen[ref.key] = number
        tables.append(ref)
    if not tables and not problems:
        problems.append("lists no table")
    engines = {t.engine for t in tables}
    if len(engines) > 1:
        problems.append(
            "mixes db.table (MySQL) and db.schema.table (PostgreSQL) entries; one "
            "source has one engine"
        )
    if sum(len(t.export_only) + 1 for t in tables) > 200_000:
        problems.append("is longer than the 200 KB that RDS ExportOnly accepts")
    return tuple(tables), problems


def env_secret_variable(name: str) -> str:
    """The variable that holds secret ``name`` on the local secrets backend (``env``):
    ``RDS2BQ_SECRET_<NAME>``, the name upper-cased, ``-`` and ``/`` as ``_``."""
    tail = name.rsplit("/secrets/", 1)[-1].split("/versions/")[0]
    return "RDS2BQ_SECRET_" + tail.upper().replace("-", "_").replace("/", "_")

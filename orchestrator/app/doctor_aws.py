"""doctor's AWS checks: credentials (the web-identity trust explained when AWS refuses), the
export source, the bucket, the KMS key, the export role and the free export slots."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from orchestrator.app.checks import (
    CheckResult,
    Context,
    failed,
    first_line,
    passed,
    warned,
)
from orchestrator.app.exports import MAX_CONCURRENT_EXPORTS
from orchestrator.core.errors import (
    AccessDeniedError,
    NoSnapshotError,
    NotFoundError,
)

EXPORT_SERVICE = "export.rds.amazonaws.com"
DTS_AGENT_DOMAIN = "@gcp-sa-bigquerydatatransfer.iam.gserviceaccount.com"
EXPORTABLE_ENGINES = ("aurora-mysql", "aurora-postgresql", "mysql", "mariadb", "postgres")
WEB_IDENTITY_ACTION = "sts:AssumeRoleWithWebIdentity"


def check_aws_credentials(ctx: Context) -> CheckResult:
    name = "aws-credentials"
    s = ctx.settings
    if s.aws_auth != "web-identity":
        arn = ctx.aws().caller_arn()
        return passed(name, f"{s.aws_auth} credentials work: calling AWS as {arn}")
    try:
        token = ctx.id_token()
    except Exception as exc:  # noqa: BLE001 - google-auth raises many kinds; all mean "no token"
        if ctx.impersonating:
            return failed(
                name,
                f"no ID token as {ctx.impersonating}: {first_line(exc)}",
                "give yourself roles/iam.serviceAccountTokenCreator on that account: "
                f"`gcloud iam service-accounts add-iam-policy-binding {ctx.impersonating} "
                "--member=user:YOU@example.com --role=roles/iam.serviceAccountTokenCreator`, or "
                "list your group in scheduler.tf's `impersonators` variable and apply",
            )
        return failed(
            name,
            f"no Google ID token for audience {s.aws_audience!r}: {first_line(exc)}",
            "run doctor where a service account's credentials are available: on Google Cloud, or "
            "with GOOGLE_APPLICATION_CREDENTIALS naming a service-account key, or "
            "`gcloud auth application-default login --impersonate-service-account=SA_EMAIL`",
        )
    claims = token_claims(ctx.claims(token))
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
    who = f" as {ctx.impersonating}" if ctx.impersonating else ""
    return passed(name, f"assumed {s.aws_role_arn} with a Google ID token{who}: AWS sees {arn}")


def token_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """The claims of an ID token that explain a refusal (read unverified: AWS verifies it). The
    token itself is never shown."""
    return {k: str(claims[k]) for k in ("aud", "azp", "sub", "email", "iss") if k in claims}


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

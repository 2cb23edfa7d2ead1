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

from collections.abc import Callable, Iterable

from orchestrator.app.checks import (
    Check,
    CheckResult,
    Context,
    Outcome,
    failed,
    passed,
    warned,
)
from orchestrator.app.checks import run_checks as _run
from orchestrator.app.doctor_aws import (
    check_aws_credentials,
    check_bucket,
    check_export_role,
    check_kms_key,
    check_running_exports,
    check_source,
    token_claims,
    trust_hints,
)
from orchestrator.app.doctor_google import (
    check_destination_tables,
    check_dts_configs,
    check_dts_keys,
    check_ledger,
    check_slack,
    check_topic,
)

__all__ = [
    "CHECKS",
    "Check",
    "CheckResult",
    "Context",
    "Outcome",
    "failed",
    "passed",
    "run_checks",
    "token_claims",
    "trust_hints",
    "warned",
]

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
    return _run(ctx, checks, on_result, debug)

"""The check framework of ``doctor``: results, the context the checks probe, and the runner.

Each check takes a ``Context`` (the settings and lazily built probes and adapters, given by the
wiring) and returns ``CheckResult``s: PASS, WARN (could not be confirmed, or not fatal) or FAIL,
each failure with the fix. A check never raises: an error becomes its FAIL.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from orchestrator.app.ports import (
    ConfigStore,
    DestinationTables,
    Exporter,
    Ledger,
    Notifier,
    Secrets,
)
from orchestrator.app.probe_ports import AwsProbePort, TopicProbePort
from orchestrator.config import Settings
from orchestrator.core.errors import (
    Rds2bqError,
    TransientError,
)

if TYPE_CHECKING:
    pass


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


@dataclass
class Context:
    """The settings, and factories for what the checks probe (each built on first use)."""

    settings: Settings
    aws: Callable[[], AwsProbePort]
    exporter: Callable[[], Exporter]
    configs: Callable[[], ConfigStore]
    tables: Callable[[], DestinationTables]
    topics: Callable[[], TopicProbePort]
    secrets: Callable[[], Secrets]
    ledger: Callable[[], Ledger]
    notifier: Callable[[], Notifier]
    # web-identity only: a Google ID token, its claims (unverified: to explain a refusal), and
    # one AssumeRoleWithWebIdentity with it
    id_token: Callable[[], str] = field(default=lambda: "")
    claims: Callable[[str], Mapping[str, Any]] = field(default=lambda _token: {})
    assume_web_identity: Callable[[str], str] = field(default=lambda _token: "")
    # the role's trust policy read with the operator's own AWS credentials, if they may
    trust_policy: Callable[[], dict[str, Any] | None] = field(default=lambda: None)
    send_test: bool = False
    # the function's service account whose ID token is minted (doctor --impersonate), if any
    impersonating: str = ""
    # the Slack message --send-test posts (Block Kit, built by the presenter)
    test_message: Callable[[], Mapping[str, Any]] = field(
        default=lambda: {"text": "rds2bq doctor: test message"}
    )


Check = Callable[[Context], "CheckResult | list[CheckResult]"]


def masked(key_id: str) -> str:
    return (key_id[:4] + "…" + key_id[-4:]) if len(key_id) > 8 else "…"


def clip(items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def run_checks(
    ctx: Context,
    checks: Iterable[tuple[str, Check]],
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
            detail = f"unexpected {type(exc).__name__}: {first_line(exc)}"
            if debug:
                detail += "\n" + traceback.format_exc()
            batch = [failed(name, detail, "rerun with --debug for the traceback")]
        for result in batch:
            results.append(result)
            on_result(result)
    return results

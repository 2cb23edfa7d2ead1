"""The CLI's failures: one line in the command line's own words, and an exit code per kind."""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from orchestrator.core.errors import (
    BadRequestError,
    ConfigError,
    ConflictError,
    NotFoundError,
    Rds2bqError,
    TransientError,
)
from orchestrator.logs import redact

if TYPE_CHECKING:
    from orchestrator.faces.cli import Cli

PROG = "python -m orchestrator"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TRANSIENT = 3
EXIT_REFUSED = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a program stopped by Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports `yes | head -1`


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, ConfigError | BadRequestError):
        return EXIT_USAGE
    if isinstance(exc, NotFoundError | ConflictError):
        return EXIT_REFUSED
    if isinstance(exc, TransientError):
        return EXIT_TRANSIENT
    return EXIT_FAILED


# The services' messages name the HTTP API's fields (they answer the functions too); on the
# command line the same advice names the flags and arguments that mean them (``rerun_body``).
def _reexport_command(match: re.Match[str]) -> str:
    tables = "".join(f" --table {t}" for t in re.findall(r'"([^"]+)"', match.group(2)))
    return f"`{PROG} rerun {match.group(1)} --export{tables}`"


CLI_WORDS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r'"mode": "export", "run_id": "(\d+)", "tables": \[([^\]]*)\]', _reexport_command),
        (r'"mode": "export", "run_id": "(\d+)"', rf"`{PROG} rerun \1 --export`"),
        (r'send "mode": "export"', "use --export"),
        (r'"mode": "export"', "--export"),
        (r"mode export, not transfer", "--export"),
        (r'\("tables": \[\.\.\.\]\)', "(--table TABLE)"),
        (r"send either tables or failed: true", "use either --table or --failed"),
        (r'(?:send )?"failed": true', "use --failed"),
        (r"\bfailed: true\b", "--failed"),
        (r'send "force": true', "use --force"),
        (r"\bas_of=", "--as-of "),
        (r"\bas_of\b", "--as-of"),
        (r"\brequest_id\b", "--request-id"),
        (r"\brun_id\b", "RUN_ID"),
    )
)


def cli_words(text: str) -> str:
    """A service's message in the command line's words: flags and arguments, not JSON fields."""
    for pattern, replacement in CLI_WORDS:
        text = pattern.sub(replacement, text)
    return text


def error_line(exc: BaseException) -> str:
    if isinstance(exc, ConfigError):
        text = "invalid configuration: " + "; ".join(exc.problems)
    elif isinstance(exc, Rds2bqError):
        text = cli_words(str(exc))
    else:
        text = f"unexpected {type(exc).__name__}: {exc} (--debug shows the traceback)"
    return redact(" ".join(text.split()))


# How a cause says "nobody answered": the REST clients' and SDKs' connection errors, by name so
# that the CLI imports no SDK (and keeps working whichever client an adapter uses).
_UNREACHABLE_ERRORS = frozenset(
    {
        "ConnectionRefusedError",
        "NewConnectionError",
        "ConnectTimeoutError",
        "ConnectTimeout",
        "EndpointConnectionError",
    }
)
_UNREACHABLE_TEXT = re.compile(
    r"cannot connect to|could not connect to the endpoint|failed to connect|connection refused",
    re.IGNORECASE,
)


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a connection that could not be made."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ in _UNREACHABLE_ERRORS or _UNREACHABLE_TEXT.search(str(current)):
            return True
        current = current.__cause__ or current.__context__
    return False


def endpoint_of(message: str, environ: Mapping[str, str] | None = None) -> str:
    """Which endpoint a failed call went to, from the service its message names and the setting
    (or emulator variable) that points there: what the operator should check."""
    env = os.environ if environ is None else environ

    def where(name: str, variable: str, production: str) -> str:
        value = env.get(variable, "")
        return f"{name} at {value} ({variable})" if value else f"{name} at {production}"

    if message.startswith("Firestore"):
        return where("Firestore", "FIRESTORE_EMULATOR_HOST", "firestore.googleapis.com")
    if message.startswith("DTS"):
        return where("DTS", "RDS2BQ_DTS_ENDPOINT", "bigquerydatatransfer.googleapis.com")
    if message.startswith("BigQuery"):
        return where("BigQuery", "RDS2BQ_BQ_ENDPOINT", "bigquery.googleapis.com")
    if message.startswith("Pub/Sub"):
        return where("Pub/Sub", "PUBSUB_EMULATOR_HOST", "pubsub.googleapis.com")
    if message.startswith("Secret Manager"):
        return "Secret Manager at secretmanager.googleapis.com"
    if message.startswith("metadata server"):
        return where("the metadata server", "GCE_METADATA_HOST", "metadata.google.internal")
    region = env.get("RDS2BQ_AWS_REGION", "")
    return where("AWS", "RDS2BQ_AWS_ENDPOINT_URL", f"its {region or 'configured'} endpoints")


def report_error(exc: BaseException, debug: bool, cli: Cli | None = None) -> int:
    if debug:
        print(redact(traceback.format_exc()), file=sys.stderr, end="")
    if cli is not None and cli.open_line:
        print(flush=True)
        cli.open_line = False
    code = exit_code_for(exc)
    if code == EXIT_TRANSIENT and unreachable(exc):
        endpoint = endpoint_of(str(exc))
        print(
            f"rds2bq: error (unreachable): cannot connect to {redact(endpoint)}: check that it "
            "is running and that the setting points at it (--debug shows the details)",
            file=sys.stderr,
        )
        return code
    kind = {EXIT_TRANSIENT: " (transient: try again)", EXIT_REFUSED: " (refused)"}.get(code, "")
    print(f"rds2bq: error{kind}: {error_line(exc)}", file=sys.stderr)
    return code

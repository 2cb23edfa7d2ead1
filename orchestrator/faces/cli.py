"""``python -m orchestrator``: the operator's command line, over the same services as the functions.

Every setting in ``config.FIELDS`` is also a flag of the same name (``RDS2BQ_S3_BUCKET`` ->
``--s3-bucket``) that sets the environment variable before the settings are loaded, so a
deployment's environment and a command line cannot mean different things. Flags go before or
after the command. Errors are one line on stderr (a traceback only with ``--debug``), and the exit
code says what kind of failure it was (``EXIT_CODES``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from orchestrator.config import FIELDS, Settings, load_settings
from orchestrator.faces import http
from orchestrator.faces.cli_errors import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_TRANSIENT,
    EXIT_USAGE,
    PROG,
    cli_words,
    report_error,
)
from orchestrator.faces.commands import COMMANDS, NEEDS
from orchestrator.faces.dependencies import is_dependency, missing_dependency
from orchestrator.logs import redact

if TYPE_CHECKING:
    from orchestrator.wiring import Wiring

PASS_THROUGH = ("demo", "stack")

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}  ok
  {EXIT_FAILED}  failed: a doctor check or a sync step failed, DTS refused a rerun, a watched
     run ended other than SUCCEEDED, or an unexpected error
  {EXIT_USAGE}  usage or configuration error: bad arguments, invalid settings, a request the
     service refuses as malformed (HTTP 400: e.g. an unknown table)
  {EXIT_TRANSIENT}  transient: AWS, DTS or Firestore unavailable, five exports already running,
     or --watch timed out: try again later
  {EXIT_REFUSED}  refused: unknown run or no snapshot of that day (HTTP 404), or a conflict
     (HTTP 409): a run in flight, the export's files gone
"""

RUN_ID_HELP = "the run (UTC: YYYYMMDDHHMM for a daily run, YYYYMMDDHHMMSS for a re-export)"
DESCRIPTION = """\
rds2bq: land Amazon RDS / Aurora exports in BigQuery, daily.

commands:
  start    start the export of a run (--slot: the daily slot it is for)
  poll     advance every open run by one step (what Cloud Scheduler calls)
  sync     make the DTS transfer configs and destination tables match the tables file
  rerun    re-transfer tables of a run from its export, or re-export (optionally as of a day)
  status   a run with its tables and errors (--watch follows it); recent runs without RUN_ID
  doctor   preflight: is each cloud wired correctly? (--send-test posts to Slack)
  demo     play one whole day on the local stack (source checkout only)
  stack    keep the local stack up for experiments (source checkout only)

Run `python -m orchestrator COMMAND --help` for a command's options.
"""

SETTINGS_HELP = """\
Each flag sets the environment variable shown first, before the settings are loaded;
flags may go before or after the command."""


# --------------------------------------------------------------------------- parsing


def _add_globals(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Flags valid before or after the command. Sub-parsers use SUPPRESS defaults so that a
    value given before the command is not reset by the sub-parser."""
    default: Any = None if top else argparse.SUPPRESS
    false: Any = False if top else argparse.SUPPRESS
    parser.add_argument(
        "--debug",
        action="store_true",
        default=false,
        help="show tracebacks and debug logs (never secrets)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=false, help="show progress logs on stderr"
    )
    group = parser.add_argument_group("settings", SETTINGS_HELP if top else None)
    for f in FIELDS:
        help_text = f"{f.env}: {f.help}" + (f" (default: {f.default})" if f.default else "")
        group.add_argument(
            f.flag,
            dest=_dest(f.name),
            metavar="VALUE",
            default=default,
            help=help_text if top else argparse.SUPPRESS,
        )


def _dest(name: str) -> str:
    return "setting_" + name.lower()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [--debug] [-v] [SETTINGS FLAGS] COMMAND [OPTIONS]",
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # --export must not be read as --export-role-arn
    )
    _add_globals(parser, top=True)
    # The commands are listed in DESCRIPTION; no per-command help here keeps argparse from
    # listing them a second time.
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", help=argparse.SUPPRESS)

    def command(name: str, summary: str, description: str = "") -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            usage=f"{PROG} {name} [OPTIONS] [SETTINGS FLAGS]",
            description=description or summary,
            epilog=EXIT_CODES + f"\nsettings flags: see `{PROG} --help`.",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )
        _add_globals(sub, top=False)
        return sub

    start = command("start", "start the export of a run")
    start.add_argument(
        "--slot",
        help=(
            "the daily slot the run is for, RFC 3339, e.g. 2026-11-27T15:00:00Z (required, as for "
            "the HTTP function: a slot taken from the clock would start a new export every minute)"
        ),
    )
    start.add_argument("--json", action="store_true", help="print the run as JSON")

    poll = command("poll", "advance every open run by one step")
    poll.add_argument("--json", action="store_true", help="print the report as JSON")

    sync = command(
        "sync", "make the DTS transfer configs and destination tables match the tables file"
    )
    sync.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    sync.add_argument(
        "--prune", action="store_true", help="also delete our configs of tables no longer listed"
    )

    rerun = command(
        "rerun",
        "re-transfer tables of a run from its export, or re-export",
        "Re-transfer: new DTS runs for tables of RUN_ID from the same export (no new export):\n"
        f"  {PROG} rerun 202611271500 --failed\n"
        f"  {PROG} rerun 202611271500 --table shop.orders --table shop.payments\n"
        "Re-export: a new run and a new export of every table, some, or a run's failed ones,\n"
        "optionally of the automated snapshot of a day (UTC):\n"
        f"  {PROG} rerun --export\n"
        f"  {PROG} rerun --export --table shop.orders --as-of 2026-11-20\n"
        f"  {PROG} rerun 202611271500 --export --failed\n"
        "--dry-run runs every check and changes nothing.",
    )
    rerun.add_argument("run_id", nargs="?", help=RUN_ID_HELP)
    rerun.add_argument(
        "--table",
        action="append",
        dest="tables",
        metavar="TABLE",
        help="a table to rerun (repeat, or comma-separate)",
    )
    rerun.add_argument(
        "--failed",
        action="store_true",
        help="every failed table of RUN_ID (FAILED, CANCELLED, EMPTY, MISMATCHED); a re-transfer "
        "skips an EMPTY one whose export holds no data file, and says how to re-export it; a "
        "HELD one (schema change) is reloaded only when named with --table",
    )
    rerun.add_argument("--export", action="store_true", help="a new export (implied by --as-of)")
    rerun.add_argument(
        "--as-of",
        metavar="DATE",
        help=(
            "export the retained automated snapshot taken on this day, YYYY-MM-DD, a day in the "
            "configured time zone (RDS2BQ_TIMEZONE, default Asia/Tokyo)"
        ),
    )
    rerun.add_argument("--dry-run", action="store_true", help="check and show, change nothing")
    rerun.add_argument(
        "--force",
        action="store_true",
        help="re-transfer an older export even though a newer run loaded the table",
    )
    rerun.add_argument("--request-id", help="idempotency key: a repeat returns the first answer")
    rerun.add_argument("--json", action="store_true", help="print the result as JSON")

    status = command(
        "status",
        "a run with its tables and errors; recent runs without RUN_ID",
        "Reads the run ledger (the export's progress is what the last poll saw).",
    )
    status.add_argument("run_id", nargs="?", help=RUN_ID_HELP)
    status.add_argument(
        "--watch",
        action="store_true",
        help="follow the run until it closes (progress bar while exporting); exit 0 if it "
        "SUCCEEDED, 1 if not",
    )
    status.add_argument(
        "--interval", type=float, default=10.0, help="seconds between reads (--watch)"
    )
    status.add_argument(
        "--timeout", type=float, default=24 * 3600.0, help="give up watching after this many s"
    )
    status.add_argument("--limit", type=int, default=10, help="how many recent runs")
    status.add_argument(
        "--json", action="store_true", help="print JSON (with --watch: a line per change)"
    )

    doctor = command(
        "doctor",
        "preflight: is each cloud wired correctly?",
        "Checks, each PASS / WARN / FAIL with the fix: AWS credentials (web identity: which trust\n"
        "condition fails), source, bucket, KMS key, export role, export slots, DTS reader keys,\n"
        "DTS configs against the tables file, destination tables, topic, run ledger, Slack.",
    )
    doctor.add_argument("--send-test", action="store_true", help="post a test message to Slack")
    doctor.add_argument(
        "--impersonate",
        metavar="SERVICE_ACCOUNT",
        default="",
        help="try the web-identity path with this function account's ID token (needs "
        "roles/iam.serviceAccountTokenCreator on it), as the function runs it",
    )
    doctor.add_argument("--json", action="store_true", help="print the results as JSON")

    for name in PASS_THROUGH:
        # Their own parsers (devstack) read the rest of the command line, --help included.
        commands.add_parser(name, add_help=False)
    return parser


def apply_settings_flags(args: argparse.Namespace, environ: Any = None) -> None:
    """Each settings flag given becomes its environment variable (the one source of truth)."""
    env = os.environ if environ is None else environ
    for f in FIELDS:
        value = getattr(args, _dest(f.name), None)
        if value is not None:
            env[f.env] = value


# --------------------------------------------------------------------------- running


class _CliFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _CliHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The CLI's log handler on stderr (replaced, not added again, by each ``main`` call)."""


def _setup_logging(debug: bool, verbose: bool) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _CliHandler)]:
        root.removeHandler(handler)
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    handler = _CliHandler(sys.stderr)
    handler.setFormatter(_CliFormatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    # Their DEBUG lines carry request bodies (an ID token, a secret key): never below WARNING.
    for noisy in ("urllib3", "botocore", "boto3", "s3transfer", "google", "grpc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Cli:
    """One invocation: the parsed arguments, settings and wiring built on first use."""

    def __init__(
        self,
        args: argparse.Namespace,
        build: Callable[[Settings], Wiring] | None,
        sleep: Callable[[float], None],
        monotonic: Callable[[], float],
    ) -> None:
        self.args = args
        self._build = build
        self.sleep = sleep
        self.monotonic = monotonic
        self.open_line = False  # --watch has drawn a progress line without its newline

    @cached_property
    def settings(self) -> Settings:
        return load_settings(needs=NEEDS.get(self.args.command))

    @cached_property
    def wiring(self) -> Wiring:
        if self._build is not None:
            return self._build(self.settings)
        from orchestrator.wiring import Wiring

        return Wiring(self.settings)

    def out(self, text: str) -> None:
        print(redact(text), flush=True)

    def json(self, payload: Any, indent: int | None = 2) -> None:
        data = json.loads(http.to_json(payload))
        print(redact(json.dumps(data, indent=indent, ensure_ascii=False)), flush=True)


def main(
    argv: Sequence[str] | None = None,
    *,
    build: Callable[[Settings], Wiring] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """Run one command; return its exit code (never raises, never calls sys.exit)."""
    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
        if rest and args.command not in PASS_THROUGH:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.command in PASS_THROUGH:
        apply_settings_flags(args)
        return _devstack(args.command, rest)
    debug = bool(getattr(args, "debug", False))
    apply_settings_flags(args)
    _setup_logging(debug, bool(getattr(args, "verbose", False)))
    cli = Cli(args, build, sleep, monotonic)
    try:
        return int(COMMANDS[args.command](cli))
    except KeyboardInterrupt:
        if cli.open_line:
            print(flush=True)  # end the progress line, so the message starts on its own
        print("rds2bq: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ModuleNotFoundError as exc:  # a package imported lazily, on the command's path
        if not is_dependency(exc):
            return report_error(exc, debug, cli)
        print(missing_dependency(exc.name or ""), file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (`status --json | head -2`): stop quietly, as Unix tools do.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line and an exit code
        return report_error(exc, debug, cli)


__all__ = ["PROG", "Cli", "build_parser", "cli_words", "main"]


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (captured in tests)
        pass


def _devstack(name: str, argv: Sequence[str]) -> int:
    try:
        module = importlib.import_module(f"devstack.{name}")
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("devstack"):
            raise
        print(
            f"rds2bq: error: `{name}` needs the source checkout: the devstack package (the local "
            "stack) is not part of a deployment. Run it from a clone of the repository: "
            f"make {'demo' if name == 'demo' else 'stack'}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    result = module.main(list(argv))
    return int(result or 0)


# --------------------------------------------------------------------------- commands

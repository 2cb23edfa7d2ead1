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
import re
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from functools import cached_property
from typing import TYPE_CHECKING, Any

from orchestrator.config import FIELDS, LEDGER_NEEDS, Settings, load_settings
from orchestrator.core.errors import (
    BadRequestError,
    ConfigError,
    ConflictError,
    NotFoundError,
    Rds2bqError,
    TransientError,
)
from orchestrator.faces import http
from orchestrator.faces.dependencies import is_dependency, missing_dependency
from orchestrator.logs import redact
from orchestrator.present import terminal as render

if TYPE_CHECKING:
    from orchestrator.wiring import Wiring

PROG = "python -m orchestrator"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TRANSIENT = 3
EXIT_REFUSED = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a program stopped by Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports `yes | head -1`
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
    rerun.add_argument("--failed", action="store_true", help="every failed table of RUN_ID")
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


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (captured in tests)
        pass


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
CLI_WORDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
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


def cmd_start(cli: Cli) -> int:
    # The HTTP function's policy (http.scheduled_slot): no slot is taken from the clock, or two
    # calls a minute apart would start two exports.
    if not cli.args.slot:
        raise BadRequestError(
            "no slot: pass --slot with the daily slot to start, e.g. --slot 2026-11-27T15:00:00Z "
            "(a repeat with the same slot adopts the run; to export again now, use "
            "`rerun --export`)"
        )
    run = cli.wiring.service.start_export(http.parse_time(cli.args.slot, "--slot"))
    if cli.args.json:
        cli.json({"run": run})
    else:
        cli.out(
            f"run {run.run_id}: {run.state.value}, export {run.export_task_id} of "
            f"{len(run.tables)} table(s)"
            + (f" (cause: {run.failure_cause})" if run.failure_cause else "")
        )
    return EXIT_OK


def cmd_poll(cli: Cli) -> int:
    report = asdict(cli.wiring.service.poll())
    if cli.args.json:
        cli.json(report)
    else:
        cli.out(render.poll_text(report))
    actions = {entry["action"] for entry in report["runs"]}
    if "failed" in actions:
        return EXIT_FAILED
    return EXIT_TRANSIENT if "retry-later" in actions else EXIT_OK


def cmd_sync(cli: Cli) -> int:
    from orchestrator.app import sync

    outcome = sync.sync(
        cli.settings,
        cli.wiring.config_store(),
        cli.wiring.destination_tables,
        cli.wiring.secrets,
        prune=cli.args.prune,
        dry_run=cli.args.dry_run,
    )
    cli.out(sync.render_plan(outcome.plan))
    if outcome.result is None:
        cli.out("Dry run: nothing changed.")
        return EXIT_OK
    if not outcome.plan.is_noop:
        cli.out(sync.render_result(outcome.result))
    return EXIT_OK if outcome.result.ok else EXIT_FAILED


def rerun_body(args: argparse.Namespace) -> dict[str, Any]:
    """The HTTP body the arguments mean: the CLI and the function validate the same thing."""
    body: dict[str, Any] = {}
    if args.run_id:
        body["run_id"] = args.run_id
    if args.tables:
        body["tables"] = [t.strip() for chunk in args.tables for t in chunk.split(",") if t.strip()]
    for flag in ("failed", "dry_run", "force"):
        if getattr(args, flag):
            body[flag] = True
    if args.export:
        body["mode"] = "export"
    if args.as_of:
        body["as_of"] = args.as_of
    if args.request_id:
        body["request_id"] = args.request_id
    return body


def cmd_rerun(cli: Cli) -> int:
    from orchestrator.app.rerun_request import RerunRequest

    request = RerunRequest.from_body(rerun_body(cli.args))
    result = cli.wiring.reruns.rerun(request)
    if cli.args.json:
        cli.json(result)
    else:
        cli.out(render.rerun_text(result, cli.settings.timezone))
    if result.refused_by_dts:
        return EXIT_FAILED
    return EXIT_TRANSIENT if result.not_started else EXIT_OK


def cmd_status(cli: Cli) -> int:
    args = cli.args
    reader = cli.wiring.status
    tz = cli.settings.timezone
    if not args.run_id:
        if args.watch:
            raise BadRequestError("--watch needs a RUN_ID")
        view = reader.recent(args.limit)
        if args.json:
            cli.json(view)
        else:
            cli.out(render.recent_text(view, tz))
        return EXIT_OK
    if not args.watch:
        view = reader.run(args.run_id)
        if args.json:
            cli.json(view)
        else:
            cli.out(render.status_text(view, tz))
        return EXIT_OK
    return _watch(cli, args.run_id)


def _watch(cli: Cli, run_id: str) -> int:
    args = cli.args
    tty = sys.stdout.isatty() and not args.json
    deadline = cli.monotonic() + args.timeout
    last = ""
    while True:
        view = cli.wiring.status.run(run_id)
        line = render.watch_line(view)
        if line != last:
            if args.json:
                cli.json(view, indent=None)
            elif tty:
                print("\r\033[K" + line, end="", flush=True)
                cli.open_line = True
            else:
                cli.out(line)
            last = line
        if not view["open"]:
            break
        if cli.monotonic() >= deadline:
            if cli.open_line:
                print()
                cli.open_line = False
            print(
                f"rds2bq: error (transient: try again): run {run_id} is still "
                f"{view['state']} after {args.timeout:g}s of watching",
                file=sys.stderr,
            )
            return EXIT_TRANSIENT
        cli.sleep(max(0.0, args.interval))
    if cli.open_line:
        print()
        cli.open_line = False
    if not args.json:
        cli.out("")
        cli.out(render.status_text(view, cli.settings.timezone))
    return EXIT_OK if view["state"] == "SUCCEEDED" else EXIT_FAILED


def cmd_doctor(cli: Cli) -> int:
    from orchestrator.app import doctor

    s = cli.settings
    ctx = cli.wiring.doctor_context(send_test=cli.args.send_test, impersonate=cli.args.impersonate)
    if not cli.args.json:
        cli.out(
            f"rds2bq doctor: env {s.env}, {len(s.tables)} tables, source {s.source_kind} "
            f"{s.source_id} in {s.aws_region}, project {s.gcp_project} ({s.bq_location})"
        )

    def show(result: doctor.CheckResult) -> None:
        if not cli.args.json:
            cli.out(render.check_text(result))

    results = doctor.run_checks(ctx, on_result=show, debug=bool(getattr(cli.args, "debug", False)))
    if cli.args.json:
        cli.json({"ok": not any(r.failed for r in results), "checks": results})
    else:
        cli.out(render.doctor_summary(results))
    return EXIT_FAILED if any(r.failed for r in results) else EXIT_OK


NEEDS: Mapping[str, frozenset[str]] = {"status": LEDGER_NEEDS}
"""Settings a command needs, when not all: ``status`` reads only the run ledger."""

COMMANDS: Mapping[str, Callable[[Cli], int]] = {
    "start": cmd_start,
    "poll": cmd_poll,
    "sync": cmd_sync,
    "rerun": cmd_rerun,
    "status": cmd_status,
    "doctor": cmd_doctor,
}

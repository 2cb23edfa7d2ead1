"""The CLI's commands: each reads its flags, calls one service through the wiring, and prints."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from orchestrator.config import LEDGER_NEEDS
from orchestrator.core.errors import (
    BadRequestError,
    NotFoundError,
)
from orchestrator.faces import http
from orchestrator.faces.cli_errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TRANSIENT,
    cli_words,
)
from orchestrator.present import terminal as render

if TYPE_CHECKING:
    from orchestrator.faces.cli import Cli


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
        cli.json({"run": cli.wiring.status.view(run)})  # the view status returns, as over HTTP
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
    from orchestrator.app.sync_schemas import SchemaSource

    wiring = cli.wiring
    outcome = sync.sync(
        cli.settings,
        wiring.config_store(),
        wiring.destination_tables,
        wiring.secrets,
        prune=cli.args.prune,
        dry_run=cli.args.dry_run,
        # new tables get the latest export's columns, if the ledger and AWS can be read
        schemas=SchemaSource(lambda: wiring.ledger, wiring.exporter),
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
        # Its notes name the HTTP API's fields (the re-export to ask for): here, the flags.
        shown = replace(result, notes=tuple(cli_words(n) for n in result.notes))
        cli.out(render.rerun_text(shown, cli.settings.timezone))
    if result.refused_by_dts:
        return EXIT_FAILED
    return EXIT_TRANSIENT if result.not_started else EXIT_OK


def cmd_status(cli: Cli) -> int:
    args = cli.args
    reader = cli.wiring.status
    tz = cli.settings.timezone
    if not args.run_id and args.watch:
        # follow the latest run: what an operator who just started one wants
        latest = reader.recent(1)["runs"]
        if not latest:
            raise NotFoundError("no run in the ledger yet: start one, or name a RUN_ID")
        return _watch(cli, latest[0]["run_id"])
    if args.run_id and args.watch:
        return _watch(cli, args.run_id)
    if args.run_id:
        view, text = reader.run(args.run_id), render.status_text
    else:
        view, text = reader.recent(args.limit), render.recent_text
    if args.json:
        cli.json(view)
    else:
        cli.out(text(view, tz))
    return EXIT_OK


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

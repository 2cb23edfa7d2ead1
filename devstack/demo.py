"""``make demo``: one whole day of rds2bq on this machine, in about a minute, shown readably.

The local stack (devstack/stack.py) runs every function under functions-framework against moto,
the Firestore and Pub/Sub emulators and the DTS, BigQuery and Slack stand-ins. This script plays
Cloud Scheduler and RDS: it calls start_export and poll, moves the export along, and watches
what the product does by itself (hand-off, DTS runs, notifications, Slack, the run ledger).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from devstack.aws import realistic_layout
from devstack.day import HELD_COLUMN, HELD_TABLE, NEW_COLUMN, NEW_COLUMN_TABLE, today
from devstack.stack import (
    EMPTY_TABLE,
    FAILING_MESSAGE,
    FAILING_TABLE,
    ROOT,
    SKIPPED_REASON,
    SKIPPED_TABLE,
    LocalStack,
    call,
    start_stack,
    wait_for,
)

TOKYO = ZoneInfo("Asia/Tokyo")
WORK_DIR = ROOT / ".demo"  # git-ignored; emptied at each start, its logs kept for reading


class Screen:
    """Everything the demo prints goes through here, one block at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self.slack_posts = 0

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self._start:5.1f}s]"

    def step(self, text: str) -> None:
        with self._lock:
            print(f"{self._stamp()} {text}", flush=True)

    def block(self, title: str, body: str) -> None:
        with self._lock:
            bar = "─" * max(10, 72 - len(title))
            print(f"\n┌─ {title} {bar}", flush=True)
            for line in body.rstrip().splitlines():
                print(f"│ {line}", flush=True)
            print("└" + "─" * 76 + "\n", flush=True)

    def slack(self, payload: dict[str, Any]) -> None:
        from orchestrator.present.slack_blocks import render_text

        self.slack_posts += 1
        self.block(f"Slack message #{self.slack_posts}", render_text(payload))


def local(dt: datetime) -> str:
    """The product's one time format: local time with its zone, UTC in brackets."""
    from orchestrator.present.formatting import format_time

    return f"{format_time(dt, TOKYO)} ({dt.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"


def _shown(path: Path) -> Path:
    """``path`` relative to the checkout when it is inside it (``.demo/logs``)."""
    resolved = path.resolve()
    return resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved


def poll_action_text(entry: dict[str, Any]) -> str:
    from orchestrator.present.terminal import poll_action_text as words

    return words(entry)


def product_status(run_id: str) -> str:
    """What ``python -m orchestrator status RUN_ID`` prints: the product's own view."""
    import contextlib
    import io

    from orchestrator.faces import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(["status", run_id])
    return out.getvalue()


def play_day(stack: LocalStack, screen: Screen) -> None:
    stack.apply_env()
    book = stack.ledger()
    slot = datetime.now(UTC).replace(second=0, microsecond=0)
    stack.dts.set_outcome(FAILING_TABLE.replace(".", "__"), "FAILED", FAILING_MESSAGE, code=3)

    screen.step(f"Cloud Scheduler calls start_export for the slot {local(slot)}")
    status, body = call(
        stack,
        "start_export",
        headers={"X-CloudScheduler-ScheduleTime": f"{slot:%Y-%m-%dT%H:%M:%SZ}"},
    )
    run = body["run"]
    screen.step(
        f"  -> HTTP {status}: run {run['run_id']}, export task {run['export']['task_id']} "
        f"of {run['counts']['tables']} tables from the live Aurora cluster"
    )
    status, _ = call(
        stack,
        "start_export",
        headers={"X-CloudScheduler-ScheduleTime": f"{slot:%Y-%m-%dT%H:%M:%SZ}"},
    )
    screen.step(
        f"  the scheduler retries the same call: HTTP {status}, still one export task "
        f"({sum(1 for t in stack.control.tasks() if t.endswith(run['run_id']))})"
    )
    task = run["export"]["task_id"]

    for percent in (0, 35, 80):
        if percent:
            stack.control.progress(task, percent, gb=percent // 10)
        _, report = call(stack, "poll")
        screen.step(f"poll: {poll_action_text(report['runs'][0])}")

    tables, skipped = realistic_layout(
        stack.tables, {SKIPPED_TABLE: SKIPPED_REASON}, empty=[EMPTY_TABLE]
    )
    files = sum(len(v) for v in tables.values())
    stack.control.complete(task, tables, skipped, data=today(stack.tables))
    screen.step(
        f"RDS completes the export: {files} files in S3 for {len(tables)} tables "
        f"(batch folders 1/ 2/ 4/ for some, the old naming for one; no data file for "
        f"{EMPTY_TABLE}, whose load will match nothing); {SKIPPED_TABLE} skipped by AWS"
    )
    screen.step(
        f"  since yesterday the source gained {NEW_COLUMN_TABLE}.{NEW_COLUMN[0]}, and "
        f"{HELD_TABLE}.{HELD_COLUMN} changed from an integer to text: the poll's preflight "
        "reads the files' Parquet footers and compares them with BigQuery"
    )
    _, report = call(stack, "poll")
    for entry in report["runs"]:
        screen.step(f"poll: {poll_action_text(entry)}")
    if not any(e["action"] == "handed-off" for e in report["runs"]):
        _, report = call(stack, "poll")
        screen.step(f"poll: {poll_action_text(report['runs'][0])}")

    screen.step("DTS runs load the tables and publish to Pub/Sub; notify records each outcome")
    run_id = run["run_id"]

    def closed() -> bool:
        current = book.get_run(run_id)
        return current is not None and not current.is_open

    wait_for(closed, 90, "the run to close")
    time.sleep(2.0)  # the summary travels topic -> notify -> Slack
    screen.block(f"python -m orchestrator status {run_id}", product_status(run_id))
    rerun_failed(stack, screen, book, run_id)


def rerun_failed(stack: LocalStack, screen: Screen, book: Any, run_id: str) -> None:
    if "rerun" not in stack.functions:
        screen.step("(rerun is not available in this build: skipped)")
        return
    stack.dts.clear_outcomes()
    # By name: the held table is reloaded only when named (that accepts its schema change), and
    # "failed": true would skip the empty load anyway (its export holds no data file: only a
    # re-export can load that one).
    tables = [FAILING_TABLE, HELD_TABLE]
    screen.step(
        f"The on-call engineer fixes the column type of {FAILING_TABLE}; the data owner says "
        f"{HELD_TABLE}.{HELD_COLUMN} is text now on purpose. Both reload from the same export: "
        f'POST rerun {{"run_id": "{run_id}", "tables": {json.dumps(tables)}}}'
    )
    status, body = call(stack, "rerun", {"run_id": run_id, "tables": tables})
    screen.step(f"  -> HTTP {status}: {summarize(body)}")

    def closed_again() -> bool:
        current = book.get_run(run_id)
        return (
            current is not None
            and not current.is_open
            and current.closed_at is not None
            and all(
                t.state.is_final and t.dts_run
                for t in book.tables(run_id)
                if t.key in (FAILING_TABLE, HELD_TABLE)
            )
            and any(t.attempts > 1 for t in book.tables(run_id))
        )

    wait_for(closed_again, 60, "the rerun to finish")
    time.sleep(2.0)
    screen.block(f"python -m orchestrator status {run_id}", product_status(run_id))


def summarize(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("message") or body)
    return str(body)[:200]


NEXT_STEPS = """What to try next:
  make stack                        keep this stack up and poke it with curl and the CLI
  .venv/bin/rds2bq --help           every command: start, poll, sync, rerun, status, doctor
  make test                         every test, on the same local stack
  docs/deploy.md                    from two empty accounts to the first daily run
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator demo", description="Play one whole day locally."
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=WORK_DIR,
        help="where the logs, tables file and emulator data go, emptied first (default: .demo)",
    )
    args = parser.parse_args(argv)
    screen = Screen()
    screen.step("rds2bq demo: one day, on the local stack (no cloud account needed)")
    started = time.monotonic()
    stack = start_stack(
        on_slack=screen.slack, log=lambda m: screen.step(f"… {m}"), work_dir=args.work_dir
    )
    logs = _shown(stack.log_dir)
    try:
        screen.step(
            f"stack ready: {len(stack.functions)} functions, tables: {', '.join(stack.tables)}"
        )
        screen.step(f"each process logs to {logs}/NAME.log (the functions, both emulators)")
        play_day(stack, screen)
    except KeyboardInterrupt:
        screen.step("interrupted: stopping everything")
        return 130
    finally:
        stack.stop()
    screen.step(
        f"done in {time.monotonic() - started:.0f}s; every process it started is "
        f"stopped. {screen.slack_posts} Slack messages. Logs: {logs}/ (replaced by the next run)"
    )
    print("\n" + NEXT_STEPS)
    return 0


if __name__ == "__main__":
    sys.exit(main())

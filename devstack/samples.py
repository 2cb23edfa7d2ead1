"""The sample output in docs/operations.md and the README's operations section, produced on the
local stack instead of edited by hand.

``python -m devstack.samples`` (``make docs-samples``) starts the stack as ``make stack`` does
(the same day: ``shop.payments`` fails on its first load, ``shop.audit_log`` is skipped by AWS,
the export writes no data file for ``shop.coupons`` so its load is EMPTY, Cloud Scheduler's
stand-in polls), plays the operator's day, runs every sample command through
bash exactly as shown, and rewrites each block between ``<!-- sample: NAME -->`` and
``<!-- /sample -->``. ``--check`` changes nothing: it says which samples no longer have the
documented shape (the same lines once run ids, times, ids, ports and durations are masked), and
exits 1 if any; tests/e2e/test_operations_samples.py runs it.

RDS's progress is driven here (as the demo does) so that "the export is at 35 %" is a sample
that can be taken; everything else is the stack's own doing.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devstack.aws import realistic_layout
from devstack.day import today
from devstack.stack import (
    EMPTY_TABLE,
    FAILING_TABLE,
    ROOT,
    SKIPPED_REASON,
    SKIPPED_TABLE,
    LocalStack,
    SchedulerStandIn,
    call,
    start_stack,
    wait_for,
)

DOCS = (ROOT / "docs" / "operations.md", ROOT / "README.md")
CLI = "python -m orchestrator"
_BLOCK = re.compile(
    r"(<!-- sample: (?P<name>[a-z0-9-]+) -->\n```[a-z]*\n)(?P<body>.*?)(\n```\n<!-- /sample -->)",
    re.DOTALL,
)
# What changes from one stack to the next: masked before comparing shapes.
_VOLATILE = (
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)"), "<TIME>"),
    (re.compile(r"\d{4}-\d\d-\d\d( \d\d:\d\d(:\d\d)?)?"), "<TIME>"),
    (re.compile(r"\b\d\d-\d\d \d\d:\d\d:\d\d\b"), "<TIME>"),
    (re.compile(r"\b\d\d:\d\d\b"), "<TIME>"),
    (re.compile(r"\b\d{12}(\d\d)?\b"), "<RUN>"),  # a daily run's id, or a re-export's
    (re.compile(r"[0-9a-f]{8}(-[0-9a-f]{1,12}){0,4}…?"), "<ID>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "<HOST>"),
    (re.compile(r"\b\d+(\.\d+)?s\b"), "<DUR>"),
    (re.compile(r'"seconds": \d+'), '"seconds": <N>'),  # how long something took, as JSON
    (re.compile(r"\b\d+ of 5 concurrent"), "<N> of 5 concurrent"),
    (re.compile(r"[ \t]+"), " "),
)


@dataclass
class Sample:
    name: str
    text: str  # the block's body: each command after "$ ", then its output


@dataclass
class Day:
    """The stack, its env for the commands, and the samples taken so far."""

    stack: LocalStack
    env: dict[str, str]
    samples: dict[str, Sample] = field(default_factory=dict)

    def run(self, command: str) -> tuple[int, str]:
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        )
        return done.returncode, done.stdout.rstrip("\n")

    def take(self, name: str, *commands: str, code: bool = True, head: int = 0) -> None:
        """Run each command as shown; keep what it printed (its first ``head`` lines, then
        "…"), and its exit code as ``echo $?`` would show it."""
        parts = []
        for command in commands:
            status, out = self.run(command)
            lines = out.splitlines()
            if head and len(lines) > head:
                lines = [*lines[:head], "  …"]
            parts.append("\n".join([f"$ {command}", *lines]))
            if code:
                parts[-1] += f"\n$ echo $?\n{status}"
        self.samples[name] = Sample(name, "\n\n".join(parts))


def command_env(stack: LocalStack) -> dict[str, str]:
    """What ``source .stack/env`` gives a shell: the stack's settings and function URLs, with the
    virtualenv's ``python`` first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDS2BQ_")}
    env.update(stack.env)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "100"
    for name in ("start_export", "poll", "rerun", "status"):
        env[f"{name.upper()}_URL"] = stack.url(name)
    return env


def play(day: Day) -> None:
    stack = day.stack
    ledger = stack.ledger()
    # The daily slot a few minutes ago: a rerun asked now gets a minute (a run id) of its own.
    slot = (datetime.now(UTC) - timedelta(minutes=3)).replace(second=0, microsecond=0)
    status, body = call(
        stack,
        "start_export",
        headers={"X-CloudScheduler-ScheduleTime": f"{slot:%Y-%m-%dT%H:%M:00Z}"},
    )
    assert status == 200, body
    run_id = body["run"]["run_id"]
    task = body["run"]["export"]["task_id"]

    # ---- while the export runs
    stack.control.progress(task, 35, gb=4)

    def at_35() -> bool:
        # A new run's first poll may only move it to EXPORTING: poll until the ledger has 35 %.
        call(stack, "poll")
        run = ledger.get_run(run_id)
        return run is not None and run.percent == 35

    wait_for(at_35, 30, "the export's 35 % to reach the ledger")
    day.take("status-recent-exporting", f"{CLI} status", code=False)
    day.take("status-exporting", f"{CLI} status {run_id}", code=False)

    # ---- the export completes; the scheduler's poll hands off; DTS loads; notify closes
    tables, skipped = realistic_layout(
        stack.tables, {SKIPPED_TABLE: SKIPPED_REASON}, empty=[EMPTY_TABLE]
    )
    stack.control.progress(task, 100, gb=12)
    call(stack, "poll")
    stack.control.complete(task, tables, skipped, data=today(stack.tables))
    stack.control.task(task).total_extracted_data_in_gb = 12

    def closed() -> bool:
        run = ledger.get_run(run_id)
        return run is not None and not run.is_open

    wait_for(closed, 120, "the day's run to close")
    day.take("status-partial", f"{CLI} status {run_id}", code=False)
    day.take("readme-status", f"{CLI} status {run_id}", code=False, head=12)

    # ---- re-transfer the failed tables: the failed one is reloaded, the empty one skipped
    day.take("rerun-failed-dry-run", f"{CLI} rerun {run_id} --failed --dry-run")
    stack.dts.finish_delay = None  # DTS holds the new run, so that the repeat meets it running
    day.take("rerun-failed", f"{CLI} rerun {run_id} --failed")
    day.take("rerun-repeated", f"{CLI} rerun {run_id} --table {FAILING_TABLE}")
    first = day.samples["rerun-failed"].text.splitlines()
    day.samples["readme-rerun"] = Sample("readme-rerun", "\n".join([*first[:5], "  …"]))
    # DTS finishes the re-transfer while status --watch follows it.
    finisher = threading.Timer(3.0, stack.dts.finish_pending)
    finisher.start()
    day.take("status-watch", f"{CLI} status {run_id} --watch --interval 1")
    finisher.join()
    stack.dts.finish_delay = 1.0
    day.take(
        "status-http",
        f'curl -s "$STATUS_URL?run_id={run_id}" | python3 -m json.tool | head -60',
        code=False,
    )

    # ---- re-export, and as of a day
    as_of = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    day.take("rerun-export-dry-run", f"{CLI} rerun {run_id} --export --failed --dry-run")
    day.take("rerun-as-of-dry-run", f"{CLI} rerun --as-of {as_of} --table shop.orders --dry-run")
    day.take("status-recent", f"{CLI} status")

    # ---- refusals
    day.take(
        "refusals",
        f"{CLI} rerun {run_id} --table shop.nope",
        f"{CLI} rerun 202001010000 --failed",
        f"{CLI} rerun {run_id} --table {SKIPPED_TABLE}",
        f"{CLI} rerun {run_id} --table {EMPTY_TABLE}",
        f"{CLI} rerun {run_id} --failed",
        f"{CLI} rerun --as-of 2020-01-01 --table shop.orders",
    )
    day.take(
        "readme-rerun-as-of",
        f"{CLI} rerun --as-of {as_of} --table shop.orders --table shop.customers",
    )
    post = (
        "curl -s -w '\\nHTTP %{http_code}\\n' -X POST \"$RERUN_URL\" "
        "-H 'Content-Type: application/json'"
    )
    day.take(
        "refusals-http",
        f'{post} -d \'{{"run_id": "{run_id}", "tables": ["shop.orders"], "dry_run": true}}\'',
        f'{post} -d \'{{"run_id": "{run_id}", "tables": ["shop.nope"]}}\'',
        code=False,
    )
    day.take("status-recent-re-export", f"{CLI} status", code=False)

    # ---- doctor, wired and with one misconfiguration
    day.take("doctor", f"{CLI} doctor --send-test")
    day.take("readme-doctor", f"{CLI} doctor --send-test", code=False, head=6)
    kms = stack.account.client("kms")
    key_id = stack.account.kms_key_arn.split("/")[-1]  # moto's KMS takes the id, not the ARN
    kms.disable_key(KeyId=key_id)
    try:
        day.take("doctor-kms-disabled", f"{CLI} doctor")
    finally:
        kms.enable_key(KeyId=key_id)


_WATCH_LINE = re.compile(r"^<RUN> [A-Z_]+ (\d+/\d+ tables done|\[)")


def shape(text: str) -> list[str]:
    """The lines of ``text`` with what differs between stacks masked. The progress lines of
    ``status --watch`` count as one: how many it prints depends on when its reads fall."""
    lines: list[str] = []
    for line in text.splitlines():
        for pattern, mask in _VOLATILE:
            line = pattern.sub(mask, line)
        line = line.strip()
        if _WATCH_LINE.match(line):
            line = "<WATCH PROGRESS>"
            if lines and lines[-1] == line:
                continue
        lines.append(line)
    return lines


def blocks(text: str) -> dict[str, str]:
    return {m.group("name"): m.group("body") for m in _BLOCK.finditer(text)}


def rewrite(text: str, samples: dict[str, Sample]) -> str:
    def replace(match: re.Match[str]) -> str:
        sample = samples.get(match.group("name"))
        if sample is None:
            return match.group(0)
        return match.group(1) + sample.text + match.group(4)

    return _BLOCK.sub(replace, text)


def differences(docs: Iterable[Path], samples: dict[str, Sample]) -> list[str]:
    problems = []
    seen = set()
    for path in docs:
        for name, body in blocks(path.read_text()).items():
            seen.add(name)
            sample = samples.get(name)
            if sample is None:
                problems.append(f"{path.name}: sample {name} is not produced by the script")
                continue
            want, got = shape(body), shape(sample.text)
            if want != got:
                first = next(
                    (i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b),
                    min(len(want), len(got)),
                )
                problems.append(
                    f"{path.name}: sample {name} differs at line {first + 1}:\n"
                    f"  documented: {want[first] if first < len(want) else '(end)'}\n"
                    f"  now:        {got[first] if first < len(got) else '(end)'}"
                )
    problems += [f"sample {n} is in no document" for n in sorted(set(samples) - seen)]
    return problems


def take_samples(log: Callable[[str], None] = print) -> dict[str, Sample]:
    import tempfile

    from devstack.stack import play_the_day

    with tempfile.TemporaryDirectory(prefix="rds2bq-samples-") as work:
        stack = start_stack(log=log, work_dir=Path(work) / "stack")
        try:
            stack.apply_env()  # this process's own reads of the ledger, as the demo's
            # RDS and DTS as on the demo's day; every export is moved here, by the samples, so
            # the day's export autopilot is stopped at once (it would reset the progress shown)
            play_the_day(stack, export_seconds=3600.0).stop()
            scheduler = SchedulerStandIn(stack, 1.0, stack.log_dir / "scheduler.log").start()
            try:
                day = Day(stack, command_env(stack))
                play(day)
                return day.samples
            finally:
                scheduler.stop()
        finally:
            stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.samples",
        description="Take the operations samples on the local stack and write them into the docs.",
    )
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a sample changed shape"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    samples = take_samples(log=lambda m: print(f"… {m}", file=sys.stderr, flush=True))
    if args.check:
        problems = differences(DOCS, samples)
        for problem in problems:
            print(problem)
        print(
            f"{len(samples)} samples taken in {time.monotonic() - started:.0f}s; "
            f"{len(problems)} problem(s)"
        )
        return 1 if problems else 0
    for path in DOCS:
        path.write_text(rewrite(path.read_text(), samples))
    print(f"{len(samples)} samples written in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

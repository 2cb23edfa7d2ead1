"""``make demo`` speaks in words, in one time format, says where its logs are, and leaves
nothing behind: every file it writes is under its work directory, nothing in the temp dir."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
INTERNAL_NAMES = re.compile(r"\b(export-[a-z_]+|handed-off|handoff-[a-z-]+|retry-later)\b")
ISO_TIMES = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
LOCAL_WITH_UTC = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d JST \(\d{4}-\d\d-\d\d \d\d:\d\d UTC\)")


def test_the_demo_speaks_in_words_and_leaves_nothing_behind(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    work = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "devstack.demo", "--work-dir", str(work)],
        cwd=ROOT,
        env={**_environ(), "TMPDIR": str(temp)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    steps = "\n".join(line for line in out.splitlines() if line.startswith("["))
    # words, not the product's internal names (Slack and status blocks are the product's own)
    assert not INTERNAL_NAMES.search(steps), steps
    assert "poll: the export is in progress, 35% done" in steps
    assert "poll: handed off: 10 transfer run(s) started" in steps  # not the held table
    # the preflight: a column added before the load, a table held with the fix, both reported
    assert "⏸️ shop.reviews: held for a schema change" in out
    assert "column rating changed type: INT64 -> STRING" in out
    assert "--table shop.reviews" in out
    assert "shop.customers: `added column loyalty_tier STRING`" in out
    # the rerun that accepts the change loads the held table: nothing is left held at the end
    final_status = out.rsplit("python -m orchestrator status", 1)[1]
    assert "HELD" not in final_status and "10 loaded" in final_status
    # the day's empty load is posted as its own kind, with the data path that matched nothing
    assert "📭 shop.coupons: load empty" in out
    assert re.search(r"No new files found matching s3://\S+/shop/shop\.coupons/\*\.parquet", out)
    # one time format: local with its zone, UTC in brackets
    assert not ISO_TIMES.search(steps), steps
    assert LOCAL_WITH_UTC.search(steps), steps
    # where the logs are, and that they are there
    assert f"each process logs to {work / 'logs'}/NAME.log" in steps
    assert f"Logs: {work / 'logs'}/" in steps
    logs = {p.name for p in (work / "logs").iterdir()}
    for name in ("firestore", "pubsub", "start_export", "poll", "rerun", "status", "notify"):
        assert f"{name}.log" in logs, logs
    assert list(temp.iterdir()) == []


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "TMPDIR"}

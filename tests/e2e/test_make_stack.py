"""``make stack`` is a small copy of production: its scheduler polls, its day has a failing, a
skipped and an empty table (``rerun --failed`` reloads the first and skips the last), its settings
(secrets included) are in .stack/env so that doctor passes and sync --dry-run works, and it
leaves nothing in the temp dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_make_stack_runs_the_day_by_itself_and_every_command_works(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    work = tmp_path / "stack"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDS2BQ_")}
    env["TMPDIR"] = str(temp)
    argv = ["--work-dir", str(work), "--poll-seconds", "1", "--export-seconds", "4"]
    printed = tmp_path / "stack.out"
    with printed.open("w") as out:
        stack = subprocess.Popen(
            [sys.executable, "-m", "devstack.stack", *argv],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def shell(command: str) -> tuple[int, str]:
        done = subprocess.run(
            ["bash", "-c", f"source {work / 'env'} && {command}"],
            cwd=ROOT,
            env={**env, "PATH": "/usr/bin:/bin"},  # .stack/env puts the virtualenv first
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.returncode, done.stdout + done.stderr

    try:
        deadline = time.monotonic() + 120
        while "Logs:" not in printed.read_text():
            assert stack.poll() is None, printed.read_text()
            assert time.monotonic() < deadline, "make stack did not come up"
            time.sleep(0.5)
        assert "source " in printed.read_text() and "export RDS2BQ" not in printed.read_text()
        env_text = (work / "env").read_text()
        assert "RDS2BQ_SECRET_RDS2BQ_SLACK_WEBHOOK" in env_text and "STATUS_URL" in env_text
        # GIVEN the daily job fired at start WHEN only the scheduler polls THEN the run closes
        run_id = ""
        while time.monotonic() < deadline:
            code, out = shell("rds2bq status --json")
            runs = json.loads(out)["runs"] if code == 0 else []
            if runs and runs[0]["state"] == "PARTIAL":
                run_id = runs[0]["run_id"]
                break
            time.sleep(1)
        assert run_id, out
        code, out = shell(f"rds2bq status {run_id}")
        assert "shop.payments     FAILED" in out and "shop.audit_log    SKIPPED_BY_EXPORT" in out
        # the export wrote no data file for shop.coupons: its load is EMPTY, in status and Slack
        assert "shop.coupons      EMPTY" in out and "No new files found matching" in out, out
        assert "📭 shop.coupons: load empty" in printed.read_text()
        assert shell("rds2bq doctor")[0] == 0
        code, out = shell("rds2bq sync --dry-run")
        assert code == 0 and "Dry run: nothing changed." in out, out
        code, out = shell(f"rds2bq rerun {run_id} --failed")
        assert code == 0, out
        assert "shop.payments  started" in out and "shop.coupons   skipped" in out, out
        assert f"rerun {run_id} --export --table shop.coupons`" in out, out
        code, out = shell(f"rds2bq status {run_id} --watch --interval 1 --timeout 60")
        assert code == 1 and "shop.payments     SUCCEEDED           2" in out, out
        assert "shop.coupons      EMPTY               1" in out, out
        # nothing left to re-transfer but the empty load: refused, with the re-export to ask for
        code, out = shell(f"rds2bq rerun {run_id} --failed")
        assert code == 4 and "nothing to re-transfer" in out, out
        code, out = shell('curl -s "$STATUS_URL?run_id=' + run_id + '"')
        assert '"state": "PARTIAL"' in out or '"state":"PARTIAL"' in out, out
    finally:
        os.killpg(stack.pid, signal.SIGINT)
        stack.wait(60)
    assert stack.returncode == 0
    logs = {p.name for p in (work / "logs").iterdir()}
    assert {"scheduler.log", "poll.log", "firestore.log", "pubsub.log"} <= logs
    assert "poll: HTTP 200" in (work / "logs" / "scheduler.log").read_text()
    assert list(temp.iterdir()) == []

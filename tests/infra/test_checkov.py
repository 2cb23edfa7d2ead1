"""checkov over every Terraform file of the repository: no failure, and no skip without a reason.

A skip is written next to the resource as ``#checkov:skip=CKV_ID:reason``; the reason is the
review record of why the check does not apply, so a bare skip counts as a failure here.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import ROOT

SKIP_RE = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")
MIN_REASON_WORDS = 6
# checkov's first start on a cold machine (imports, policy graph) can be slow.
pytestmark = pytest.mark.timeout(900)
TF_FILES = [ROOT / "scheduler.tf", *sorted((ROOT / "infra" / "aws").glob("*.tf"))]


@pytest.fixture(scope="module")
def report(checkov: Path) -> dict[str, Any]:
    # --skip-download: no call to the Prisma Cloud API (this machine has no network and the
    # policies are all local anyway).
    result = subprocess.run(
        [
            str(checkov),
            "--directory",
            str(ROOT),
            "--framework",
            "terraform",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    # checkov exits 1 when a check fails; anything else is a crash.
    assert result.returncode in (0, 1), result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert isinstance(data, dict) and data["check_type"] == "terraform", result.stdout[:500]
    return data


def _where(check: dict[str, Any]) -> str:
    return f"{check['check_id']} {check['resource']} ({check['file_path']})"


def test_every_terraform_file_was_scanned(report: dict[str, Any]) -> None:
    assert report["results"]["parsing_errors"] == []
    scanned = {
        c["file_path"].lstrip("/")
        for kind in ("passed_checks", "failed_checks", "skipped_checks")
        for c in report["results"][kind]
    }
    with_resources = {
        str(p.relative_to(ROOT))
        for p in TF_FILES
        if re.search(r'^resource "', p.read_text(encoding="utf-8"), re.M)
    }
    assert "scheduler.tf" in with_resources
    assert with_resources <= scanned


def test_no_check_fails(report: dict[str, Any]) -> None:
    failed = report["results"]["failed_checks"]
    assert not failed, "checkov failures:\n" + "\n".join(
        f"  {_where(c)}: {c['check_name']}" for c in failed
    )


def test_every_skip_gives_its_reason(report: dict[str, Any]) -> None:
    skipped = report["results"]["skipped_checks"]
    assert skipped, "expected the documented skips (see infra/aws/*.tf, scheduler.tf)"
    for check in skipped:
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(reason.split()) >= MIN_REASON_WORDS, f"skip without a reason: {_where(check)}"


def test_skip_comments_are_well_formed() -> None:
    # A malformed skip comment is silently ignored by checkov; catch it here.
    for path in TF_FILES:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "checkov" not in line:
                continue
            match = SKIP_RE.search(line)
            assert match, f"{path.name}:{number}: not a '#checkov:skip=CKV_ID:reason' comment"
            check_id, reason = match.groups()
            assert re.fullmatch(r"CKV2?_(AWS|GCP)_\d+", check_id), f"{path.name}:{number}"
            assert reason and len(reason.split()) >= MIN_REASON_WORDS, (
                f"{path.name}:{number}: {check_id} is skipped without a reason"
            )

"""The samples in docs/operations.md and the README's operations section: each command still
runs, as shown, on the local stack, and still prints what the document shows (the same lines
once run ids, times, ids, ports and durations are masked). Regenerate them with
``make docs-samples`` after a change of output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devstack import samples

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_every_documented_sample_still_runs_and_has_its_documented_shape() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "devstack.samples", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "0 problem(s)" in done.stdout


def test_every_sample_command_in_the_docs_is_one_the_script_runs() -> None:
    # GIVEN the documents' sample blocks WHEN their names are read THEN each is one the script
    # takes, and the README's operations commands are all inside such blocks.
    names = {n for path in samples.DOCS for n in samples.blocks(path.read_text())}
    assert {"status-partial", "doctor-kms-disabled", "readme-status", "readme-doctor"} <= names
    readme = (ROOT / "README.md").read_text()
    operations = readme.split("## Operations", 1)[1].split("\n## ", 1)[0]
    outside = samples._BLOCK.sub("", operations)
    assert "$ python -m orchestrator" not in outside


def test_the_shape_masks_what_changes_between_stacks_and_nothing_else() -> None:
    a = "$ rds2bq status 202612011924\n  export  rds2bq-demo-202612011924  12 GB  1s"
    b = "$ rds2bq status 202611280630\n  export  rds2bq-demo-202611280630  12 GB  14s"
    assert samples.shape(a) == samples.shape(b)
    assert samples.shape(a) != samples.shape(a.replace("12 GB", "3 GB"))
    assert samples.shape("12 tables: 10 loaded") != samples.shape("12 tables: 11 loaded")

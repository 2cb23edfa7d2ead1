"""``rds2bq``, the installed command: declared in pyproject.toml, installed by ``make`` into
.venv, the same as ``python -m orchestrator``; without the project's packages, one line."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "rds2bq"


def test_pyproject_declares_the_command() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"rds2bq": "orchestrator.__main__:run"}
    makefile = (ROOT / "Makefile").read_text()
    assert "--editable ." in makefile and "pyproject.toml" in makefile.split("\n$(STAMP):")[1]


@pytest.mark.skipif(not SCRIPT.exists(), reason="not run from the virtualenv `make` builds")
@pytest.mark.parametrize("argv", [["--help"], ["rerun", "--help"], ["status", "x", "--bogus"]])
def test_the_installed_command_is_python_m_orchestrator(tmp_path: Path, argv: list[str]) -> None:
    # From another directory: the command must not depend on the checkout being the cwd.
    def run(*command: str) -> tuple[int, str, str]:
        done = subprocess.run(
            [*command, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        return done.returncode, done.stdout, done.stderr

    module = run(sys.executable, "-m", "orchestrator")
    assert run(str(SCRIPT)) == module
    assert module[0] in (0, 2)


def test_without_its_packages_help_still_works() -> None:
    # the CLI's own modules import no third-party package: only the commands need them
    done = subprocess.run(
        [sys.executable, "-S", "-m", "orchestrator", "--help"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.startswith("usage:"), done.stderr


@pytest.mark.parametrize("argv", [["status"], ["status", "--json"]])
def test_without_its_packages_it_says_in_one_line_what_to_do(argv: list[str]) -> None:
    # -S: no site-packages, as a system Python outside the virtualenv.
    done = subprocess.run(
        [sys.executable, "-S", "-m", "orchestrator", *argv],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "RDS2BQ_GCP_PROJECT": "acme"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("rds2bq: error: this Python")
    assert ".venv/bin/rds2bq" in done.stderr and "source .venv/bin/activate" in done.stderr

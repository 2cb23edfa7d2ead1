"""What the ``rds2bq`` command says when its Python lacks the project's packages.

Only the standard library: ``orchestrator.__main__`` imports this before anything that needs a
third-party package.
"""

from __future__ import annotations

import sys

EXIT_USAGE = 2  # as orchestrator.faces.cli.EXIT_USAGE: a configuration error


def missing_dependency(module: str) -> str:
    """One line for a Python that lacks one of the project's packages."""
    return (
        f"rds2bq: error: this Python ({sys.executable}) lacks the package that provides "
        f"{module!r}: run the rds2bq that `make` installs, .venv/bin/rds2bq (or `source "
        ".venv/bin/activate` first), or `pip install -r requirements.txt` into this Python"
    )


def is_dependency(exc: ModuleNotFoundError) -> bool:
    """Whether the missing module is a third-party package (not one of ours)."""
    top = (exc.name or "").partition(".")[0]
    return bool(top) and top not in ("orchestrator", "devstack")

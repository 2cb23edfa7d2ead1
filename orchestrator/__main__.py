"""``python -m orchestrator`` and the ``rds2bq`` command: see ``orchestrator.cli``.

Only the standard library here, so that a Python without the project's packages (outside the
virtualenv) gets one line saying what to do instead of a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import sys

EXIT_USAGE = 2  # as orchestrator.cli.EXIT_USAGE: a configuration error


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


def run() -> int:
    try:
        from orchestrator.cli import main
    except ModuleNotFoundError as exc:
        if not is_dependency(exc):
            raise
        print(missing_dependency(exc.name or ""), file=sys.stderr)
        return EXIT_USAGE
    return main()


if __name__ == "__main__":
    sys.exit(run())

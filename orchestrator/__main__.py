"""``python -m orchestrator`` and the ``rds2bq`` command: see ``orchestrator.faces.cli``.

Only the standard library here, so that a Python without the project's packages (outside the
virtualenv) gets one line saying what to do instead of a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import sys

from orchestrator.faces.dependencies import EXIT_USAGE, is_dependency, missing_dependency


def run() -> int:
    try:
        from orchestrator.faces.cli import main
    except ModuleNotFoundError as exc:
        if not is_dependency(exc):
            raise
        print(missing_dependency(exc.name or ""), file=sys.stderr)
        return EXIT_USAGE
    return main()


if __name__ == "__main__":
    sys.exit(run())

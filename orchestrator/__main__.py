"""``python -m orchestrator``: see ``orchestrator.faces.cli``."""

from __future__ import annotations

import sys

from orchestrator.faces.cli import main

if __name__ == "__main__":
    sys.exit(main())

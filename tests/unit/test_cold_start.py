"""Cold start: each entry point's path imports the SDKs it uses and no other.

An SDK is imported only inside the builder that needs it (``orchestrator.wiring`` and the
adapters); ``main.py`` and the pure core import none. Each case builds, in a fresh interpreter,
what one path builds, and lists the SDKs that got loaded (see bench/ for what that costs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_config import VALID

ROOT = Path(__file__).resolve().parents[2]
SDKS = {
    "firestore": "google.cloud.firestore_v1",
    "pubsub": "google.cloud.pubsub_v1",
    "dts": "google.cloud.bigquery_datatransfer_v1",
    "secret manager": "google.cloud.secretmanager_v1",
    "bigquery": "google.cloud.bigquery",
    "boto3": "boto3",
    "botocore": "botocore",
    "pyarrow": "pyarrow",
}

PROGRAM = """
import json, sys
import main
from orchestrator import wiring
w = wiring.get()
{build}
print(json.dumps(sorted(name for name, module in {sdks}.items() if module in sys.modules)))
"""

PATHS = {
    # main.py alone: the framework and our pure code
    "import main": ("", []),
    # poll with no open run: one ledger query
    "idle poll": ("w.service; w.ledger", ["firestore"]),
    # notify recording an outcome, with nothing to publish or post
    "notify": ("w.notify_service; w.ledger", ["firestore"]),
    # notify recording a SUCCEEDED run: its transfer logs say whether it loaded anything
    "notify, a run succeeded": ("w.notify_service; w.ledger; w.transfers()", ["dts", "firestore"]),
    # notify when it publishes an event
    "notify, publishing": (
        "w.notify_service; w.ledger; w.events._get()",
        ["firestore", "pubsub"],
    ),
    # notify when it posts to Slack: the webhook URL comes from Secret Manager
    "notify, posting": (
        "w.notify_service; w.ledger; w.notifier; w.secrets._get()",
        ["firestore", "secret manager"],
    ),
    # the poll that hands a completed export off to DTS
    "hand-off poll": ("w.service; w.ledger; w.transfers()", ["dts", "firestore"]),
    # the poll that sees an export COMPLETE: its preflight reads the Parquet footers (one is
    # enough to load pyarrow: here an empty file, which is no Parquet)
    "preflight's footers": (
        "w.service; w.ledger; e = w.exporter()\n"
        "from orchestrator.adapters.parquet_footers import read_footer\n"
        "from orchestrator.core.errors import PermanentError\n"
        "try:\n    read_footer(lambda first, last: b'', 0, 'empty.parquet')\n"
        "except PermanentError:\n    pass",
        ["boto3", "botocore", "firestore", "pyarrow"],
    ),
    # start_export: the ledger and AWS (no pyarrow: the footers are read at COMPLETE only)
    "start_export": ("w.service; w.ledger; w.exporter()", ["boto3", "botocore", "firestore"]),
    # status reads the ledger only
    "status": ("w.status; w.ledger", ["firestore"]),
}


def _run(program: str, tmp_path: Path) -> list[str]:
    tables = tmp_path / "tables.txt"
    tables.write_text("shop.orders\n")
    env = {
        **os.environ,
        **VALID,
        "RDS2BQ_TABLES_FILE": str(tables),
        "GOOGLE_CLOUD_PROJECT": "acme",
        "RDS2BQ_SECRETS_BACKEND": "secret-manager",
        # no call is made, but a client asks for credentials when it is built: local peers take
        # none (the SDK module loaded is the same)
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:1",
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:1",
        "RDS2BQ_DTS_ENDPOINT": "127.0.0.1:1",
        "RDS2BQ_SECRETS_ENDPOINT": "127.0.0.1:1",
    }
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize("path", sorted(PATHS))
def test_each_path_loads_only_the_sdks_it_uses(path: str, tmp_path: Path) -> None:
    build, expected = PATHS[path]
    assert _run(PROGRAM.format(build=build, sdks=SDKS), tmp_path) == sorted(expected)


# Our own modules that cost the most to import (their dataclasses and protocols), and the paths
# that must not load them: an idle poll advances no run (no state machine, no event, no port),
# status reads the ledger (and renders the digest), neither poll nor notify renders a Slack
# message or a digest, or loads the webhook client, unless it posts one, only notify parses
# messages (the hand-off publishes one), and doctor's probe ports are doctor's alone.
OWN = {
    "events": "orchestrator.core.events",
    "machine": "orchestrator.core.machine",
    "slack presenter": "orchestrator.present.slack",
    "slack webhook": "orchestrator.adapters.slack_webhook",
    "ports": "orchestrator.app.ports",
    "digest": "orchestrator.core.digest",
    "message parser": "orchestrator.core.notifications",
    "probe ports": "orchestrator.app.probe_ports",
}
OWN_PATHS = {
    "idle poll": ("w.service; w.ledger", []),
    "status": ("w.status; w.ledger", ["digest"]),
    "notify": ("w.notify_service; w.ledger", ["events", "machine", "message parser", "ports"]),
    "hand-off poll": (
        # its fan-out, and the bus it publishes HANDOFF_DONE on
        "w.service; w.ledger; w.transfers(); w.service.runs; w.events._get()",
        ["events", "machine", "ports"],
    ),
}


@pytest.mark.parametrize("path", sorted(OWN_PATHS))
def test_each_path_loads_only_our_modules_it_uses(path: str, tmp_path: Path) -> None:
    build, expected = OWN_PATHS[path]
    assert _run(PROGRAM.format(build=build, sdks=OWN), tmp_path) == sorted(expected)

"""An entry point imports only the SDKs its path needs: building every service for the functions
loads Firestore, and never boto3, Pub/Sub, Secret Manager, DTS or BigQuery until used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.unit.test_config import VALID

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "boto3",
    "botocore",
    "google.cloud.pubsub_v1",
    "google.cloud.secretmanager",
    "google.cloud.bigquery_datatransfer_v1",
    "google.cloud.bigquery",
)

PROGRAM = """
import json, sys
import main
from orchestrator import wiring
w = wiring.get()
w.service, w.notify_service, w.status, w.reruns  # every service the functions use
w.service.events.publish([])  # an empty publish must not build the Pub/Sub client
print(json.dumps([m for m in {heavy} if m in sys.modules]))
"""


def test_building_the_services_imports_no_sdk_beyond_firestore(tmp_path: Path) -> None:
    tables = tmp_path / "tables.txt"
    tables.write_text("shop.orders\n")
    env = {
        **os.environ,
        **VALID,
        "RDS2BQ_TABLES_FILE": str(tables),
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
        "GOOGLE_CLOUD_PROJECT": "acme",
    }
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(heavy=HEAVY)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []

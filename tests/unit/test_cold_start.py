"""Cold start: the functions' paths load no gRPC stack at all.

Building every service and every Google adapter the functions use (Firestore, Pub/Sub, DTS,
Secret Manager, over REST) loads neither grpc, protobuf, google-api-core nor any
``google-cloud-*`` SDK, nor requests or cryptography; boto3 only when AWS is called."""

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
    "grpc",
    "google.protobuf",
    "proto",
    "google.api_core",
    "google.cloud.firestore",
    "google.cloud.firestore_v1",
    "google.cloud.pubsub_v1",
    "google.cloud.bigquery_datatransfer_v1",
    "google.cloud.bigquery",
    "google.cloud.secretmanager",
    "requests",
    "cryptography",
)

PROGRAM = """
import json, sys
import main
from orchestrator import wiring
w = wiring.get()
w.service, w.notify_service, w.status, w.reruns  # every service the functions use
w.ledger, w.transfers(), w.secrets._get()  # and every Google adapter on their paths
from orchestrator.adapters.pubsub import build_event_bus
build_event_bus(w.settings)
print(json.dumps([m for m in {heavy} if m in sys.modules]))
"""


def test_building_every_service_and_google_adapter_loads_no_grpc_stack(tmp_path: Path) -> None:
    tables = tmp_path / "tables.txt"
    tables.write_text("shop.orders\n")
    env = {
        **os.environ,
        **VALID,
        "RDS2BQ_TABLES_FILE": str(tables),
        "GOOGLE_CLOUD_PROJECT": "acme",
        "K_SERVICE": "poll",  # as on Cloud Functions: tokens from the metadata server
        "RDS2BQ_SECRETS_BACKEND": "secret-manager",
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

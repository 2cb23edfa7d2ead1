"""Builders shared by integration and e2e tests: settings and adapters on the local stack."""

from __future__ import annotations

import os
import uuid
from typing import Any

from devstack.aws import Account
from orchestrator.config import Settings, load_settings

GCP_PROJECT = "rds2bq-test"


def settings_for(account: Account, tables: list[str], **env: str) -> Settings:
    base = {
        **account.settings_env(),
        "RDS2BQ_AWS_AUTH": "default",
        "RDS2BQ_GCP_PROJECT": GCP_PROJECT,
        "RDS2BQ_BQ_DATASET": "rds_shop",
        "RDS2BQ_SECRETS_BACKEND": "env",
        "RDS2BQ_LEDGER_COLLECTION": f"runs_{uuid.uuid4().hex[:8]}",
        # a distinct env per test keeps export ids apart on the shared moto server
        "RDS2BQ_ENV": "t" + uuid.uuid4().hex[:8],
        **env,
    }
    return load_settings(base, read_text=lambda _: "\n".join(tables))


def firestore_client(emulator_host: str) -> Any:
    """A Firestore client on the emulator (``build_ledger`` goes there too when
    ``FIRESTORE_EMULATOR_HOST`` is set, which this also sets for code under test)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator_host
    return firestore.Client(project=GCP_PROJECT, credentials=AnonymousCredentials())

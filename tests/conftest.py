"""Shared fixtures. Wire peers are started once per session, lazily, only when a test asks."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devstack import processes

GCP_PROJECT = "rds2bq-test"


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[processes.Service]:
    service = processes.start_firestore_emulator()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[processes.Service]:
    service = processes.start_pubsub_emulator(GCP_PROJECT)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[object]:
    """moto's server over real HTTP; ``.endpoint`` is its URL."""
    from devstack.aws import start_moto

    server = start_moto()
    yield server
    server.stop()

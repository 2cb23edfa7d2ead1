"""Shared fixtures. Wire peers are started once per session, lazily, only when a test asks."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from devstack import processes

GCP_PROJECT = "rds2bq-test"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # A CI timeout or a `kill` sends SIGTERM: stop as on Ctrl-C, so that every fixture still
    # tears down the emulators and function processes it started instead of leaving them behind.
    signal.signal(signal.SIGTERM, _interrupt)


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

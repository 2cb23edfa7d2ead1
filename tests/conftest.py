"""Shared fixtures. Wire peers are started once per session, lazily, only when a test asks."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from types import FrameType

import pytest
from hypothesis import HealthCheck, settings

from devstack import processes

GCP_PROJECT = "rds2bq-test"

# Property tests (hypothesis): a fixed, modest budget and no per-example deadline, so that the
# suite's time is predictable on a loaded machine (CI, or two shared cores) and the same every run.
settings.register_profile(
    "rds2bq",
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,  # no example database: every run tries the same examples, and writes nothing
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("RDS2BQ_HYPOTHESIS_PROFILE", "rds2bq"))


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


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Handlers a test installs (the CLI's on stderr, the JSON one that importing main adds)
    are removed after it: one left behind writes into that test's captured stream, closed by the
    next test, or into the next test's output."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in saved]:
        root.removeHandler(handler)
    root.setLevel(level)


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

"""Bounded retries of transient errors with exponential backoff and full jitter."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from orchestrator.core.errors import TransientError

T = TypeVar("T")

# Our own generator: jitter neither draws from nor disturbs the global one, which tests and
# libraries may seed (Hypothesis reseeds it for every example and flags draws made beside its own).
_JITTER = random.Random()


@dataclass(frozen=True)
class Backoff:
    attempts: int = 5
    base_seconds: float = 0.5
    cap_seconds: float = 8.0
    budget_seconds: float = 60.0  # total time spent sleeping, whatever the attempts left

    def delay(self, attempt: int, rng: Callable[[], float] = _JITTER.random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        return float(rng()) * min(self.cap_seconds, self.base_seconds * 2.0**attempt)


DEFAULT_BACKOFF = Backoff()


def call_with_retry(
    fn: Callable[[], T],
    backoff: Backoff = DEFAULT_BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``; retry only ``TransientError``, at most ``attempts`` times in all."""
    slept = 0.0
    for attempt in range(backoff.attempts):
        try:
            return fn()
        except TransientError:
            pause = backoff.delay(attempt)
            if attempt + 1 >= backoff.attempts or slept + pause > backoff.budget_seconds:
                raise
            sleep(pause)
            slept += pause
    raise AssertionError("unreachable")  # pragma: no cover

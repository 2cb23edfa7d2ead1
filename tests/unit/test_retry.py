"""Back-off jitter: bounded, and drawn from our own generators, never the global ``random``.

The global generator is shared state: Hypothesis reseeds it for every example and warns when
something draws from it while a strategy runs (a worker thread's retry did, now and then), and a
library or test that seeds it would make every instance's jitter the same.
"""

from __future__ import annotations

import ast
import random
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.core.errors import TransientError
from orchestrator.core.retry import Backoff, call_with_retry

PACKAGE = Path(__file__).resolve().parents[2] / "orchestrator"
# The module's functions that are methods of its hidden global instance (``random.Random`` is not).
_GLOBAL = random.random.__self__
GLOBAL_DRAWS = {n for n in dir(random) if getattr(getattr(random, n), "__self__", None) is _GLOBAL}


@given(
    attempt=st.integers(min_value=0, max_value=40),
    base=st.floats(min_value=0, max_value=10),
    cap=st.floats(min_value=0, max_value=60),
)
def test_full_jitter_stays_within_the_capped_exponential(
    attempt: int, base: float, cap: float
) -> None:
    backoff = Backoff(base_seconds=base, cap_seconds=cap)
    assert 0.0 <= backoff.delay(attempt) <= min(cap, base * 2.0**attempt)


def test_retrying_leaves_the_global_generator_alone() -> None:
    # GIVEN the global generator's state, and a call that fails transiently until its last try
    before = random.getstate()
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise TransientError("try again")
        return "done"

    slept: list[float] = []
    # WHEN it is retried with jitter
    result = call_with_retry(flaky, Backoff(attempts=4, base_seconds=0.5), slept.append)
    # THEN it succeeded after three pauses, all jittered, and the global state is as it was
    assert result == "done" and len(slept) == 3
    assert all(0.0 <= pause <= 0.5 * 2**i for i, pause in enumerate(slept))
    assert random.getstate() == before


def test_seeding_the_global_generator_does_not_fix_the_jitter() -> None:
    # WHEN the global generator is seeded alike before each of two delays
    state = random.getstate()
    try:
        random.seed(7)
        first = [Backoff().delay(3) for _ in range(5)]
        random.seed(7)
        second = [Backoff().delay(3) for _ in range(5)]
    finally:
        random.setstate(state)
    # THEN the jitter does not follow it
    assert first != second


def test_no_production_module_draws_from_the_global_generator() -> None:
    # GIVEN every module of the package
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            # THEN none calls random.<draw> (random.Random() instances are fine) ...
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "random"
                and node.attr in GLOBAL_DRAWS
            ):
                offenders.append(
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno} random.{node.attr}"
                )
            # ... nor imports a draw from it by name
            if isinstance(node, ast.ImportFrom) and node.module == "random":
                offenders += [
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno} from random import {a.name}"
                    for a in node.names
                    if a.name in GLOBAL_DRAWS
                ]
    assert offenders == []

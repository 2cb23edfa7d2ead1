"""Fault injection and the record of every call (what tests assert on)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from devstack.dts.errors import RpcFault, _status


@dataclass
class CallRecord:
    method: str
    code: str  # canonical status name, "OK" on success
    at: float = field(default_factory=time.monotonic)


class Faults:
    """Fault injection, settable at runtime from tests (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latency = 0.0  # seconds added before every call
        self._failures: deque[tuple[str | None, str, str]] = deque()
        self._slow: deque[tuple[str | None, float]] = deque()
        self._starts_left: int | None = None
        self._starts_code = "UNAVAILABLE"

    def fail_next(
        self,
        n: int = 1,
        code: str = "UNAVAILABLE",
        method: str | None = None,
        message: str = "",
    ) -> None:
        """The next ``n`` calls (of ``method``, or of any method) fail with status ``code`` (a
        canonical name such as ``"UNAVAILABLE"``), with no effect."""
        text = message or f"injected {_status(code)}"
        with self._lock:
            self._failures.extend([(method, code, text)] * n)

    def slow_next(self, n: int = 1, seconds: float = 1.0, method: str | None = None) -> None:
        """The next ``n`` calls take effect, then answer ``seconds`` late: a client deadline
        shorter than that sees DEADLINE_EXCEEDED although the call went through."""
        with self._lock:
            self._slow.extend([(method, seconds)] * n)

    def fail_after_starts(self, n: int, code: str = "UNAVAILABLE") -> None:
        """Allow ``n`` more successful StartManualTransferRuns, then fail every later one."""
        with self._lock:
            self._starts_left = n
            self._starts_code = _status(code)

    def clear(self) -> None:
        with self._lock:
            self.latency = 0.0
            self._failures.clear()
            self._slow.clear()
            self._starts_left = None

    def _take(self, queue: deque[Any], method: str) -> Any:
        for index, entry in enumerate(queue):
            if entry[0] in (None, method):
                del queue[index]
                return entry
        return None

    def take_failure(self, method: str) -> tuple[str, str] | None:
        with self._lock:
            entry = self._take(self._failures, method)
        return None if entry is None else (entry[1], entry[2])

    def take_slow(self, method: str) -> float:
        with self._lock:
            entry = self._take(self._slow, method)
        return 0.0 if entry is None else float(entry[1])

    def claim_start(self) -> None:
        with self._lock:
            if self._starts_left is None:
                return
            if self._starts_left <= 0:
                raise RpcFault(self._starts_code, "injected: no more runs may start")
            self._starts_left -= 1

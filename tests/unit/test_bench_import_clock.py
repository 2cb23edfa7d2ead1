"""The cold-start child's import clock (``bench/_coldstart_child.py``, ``ImportClock``) bills each
import the processor time of the thread that made it, less its nested imports', and keeps the
nesting of each thread apart: two threads importing at once do not corrupt each other's
self-times, as ``-X importtime``'s interpreter-wide counters do (bench/README.md, "Why processor
time"). A fake clock, one counter per thread, makes the times exact."""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench._coldstart_child import ImportClock
from bench.coldstart import merged


class ThreadClocks:
    """A processor-time clock per thread, advanced by hand (in ns)."""

    def __init__(self) -> None:
        self.now: dict[int, int] = {}

    def __call__(self) -> int:
        return self.now.get(threading.get_ident(), 0)

    def spend(self, us: int) -> None:
        ident = threading.get_ident()
        self.now[ident] = self.now.get(ident, 0) + us * 1000


def module(clocks: ThreadClocks, own_us: int, *inner: Callable[[], None]) -> Callable[..., Any]:
    """A loader for one module: ``own_us`` of its own work around its nested imports."""

    def load(name: str, *args: Any) -> str:
        clocks.spend(own_us // 2)
        for nested in inner:
            nested()
        clocks.spend(own_us - own_us // 2)
        return name

    return load


def test_a_module_is_billed_its_own_time_less_its_nested_imports() -> None:
    clocks = ThreadClocks()
    clock = ImportClock(clocks)

    def leaf() -> None:
        clock.timed(module(clocks, 300), "pkg.leaf")

    def sub() -> None:
        clock.timed(module(clocks, 200, leaf), "pkg.sub")

    clock.timed(module(clocks, 1000, sub), "pkg")
    assert [(name, us) for name, us, _ in clock.imports] == [
        ("pkg.leaf", 300),
        ("pkg.sub", 200),
        ("pkg", 1000),
    ]
    assert all(in_main for _, _, in_main in clock.imports)


def test_imports_running_at_once_in_two_threads_keep_their_own_times() -> None:
    clocks = ThreadClocks()
    clock = ImportClock(clocks)
    inside, resume = threading.Event(), threading.Event()

    def wait_for_the_other_thread() -> None:
        inside.set()  # the worker imports now, while this import is under way
        assert resume.wait(5)

    def worker() -> None:
        assert inside.wait(5)

        def worker_leaf() -> None:
            clock.timed(module(clocks, 700), "worker.leaf")

        clock.timed(module(clocks, 400, worker_leaf), "worker.pkg")
        resume.set()

    thread = threading.Thread(target=worker)
    thread.start()

    def main_leaf() -> None:
        clock.timed(module(clocks, 50), "main.leaf")

    clock.timed(module(clocks, 900, wait_for_the_other_thread, main_leaf), "main.pkg")
    thread.join(5)
    got = {name: (us, in_main) for name, us, in_main in clock.imports}
    assert got == {
        "worker.leaf": (700, False),
        "worker.pkg": (400, False),
        "main.leaf": (50, True),
        "main.pkg": (900, True),
    }


def test_a_module_already_loaded_is_not_timed() -> None:
    clocks = ThreadClocks()
    clock = ImportClock(clocks)
    assert clock.timed(module(clocks, 500), "sys") == "sys"  # importlib.import_module("sys")
    assert clock.imports == []


def test_start_and_stop_put_the_clock_on_every_import_and_take_it_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "clock_probe_first.py").write_text("import clock_probe_nested\n")
    (tmp_path / "clock_probe_nested.py").write_text("VALUE = 1\n")
    (tmp_path / "clock_probe_after.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("clock_probe_first", "clock_probe_nested", "clock_probe_after"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    clock = ImportClock()
    clock.start()
    try:
        import json  # loaded already: not timed

        importlib.import_module("clock_probe_first")
    finally:
        clock.stop()
    importlib.import_module("clock_probe_after")
    assert json.loads("1") == 1
    assert [name for name, _, _ in clock.imports] == ["clock_probe_nested", "clock_probe_first"]
    for name in ("clock_probe_first", "clock_probe_nested", "clock_probe_after"):
        sys.modules.pop(name, None)


def test_a_module_two_threads_asked_for_is_one_entry_with_their_time_summed() -> None:
    # the loading thread's time, and the other's before it saw the module loading
    assert merged([["a", 5], ["pkg", 900], ["a", 2], ["pkg", 40]]) == [("a", 7), ("pkg", 940)]

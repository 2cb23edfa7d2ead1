"""One cold interpreter: an entry point's path, or a set of imports, its imports timed.

Run by ``bench.coldstart`` as ``python bench/_coldstart_child.py SPEC_JSON``. Before the import
clock starts (``ImportClock``), only the standard library and functions_framework are loaded, and
the framework has served two stub requests (the Cloud Functions runtime has loaded
functions_framework, and its per-request code, before it loads ``main.py``). While it runs:

- ``kind: "path"``: the function is loaded from ``main.py`` with ``functions_framework.create_app``
  and (unless ``call`` is false) called once through the framework's test client, so every import
  its path makes, at module level or lazily, in any thread, is timed;
- ``kind: "imports"``: ``main.py`` is loaded if ``source`` is given (the eager baseline), then each
  module of ``modules`` is imported, in order (the SDKs alone, or every SDK). With ``tolerant``, a
  module that cannot be imported by its name is skipped and reported (column (a) replays every
  third-party module a path loaded, and a few are registered under a name no file has).

Everything timed runs ``depth`` frames deeper than the child's own code (``at_depth``), threads
started meanwhile too: each repetition of the bench asks for another depth.

Network waits are not imports, and the clock counts processor time: they do not count. Then the
child reports each import's own processor time (``imports``), which SDKs are loaded, every module
loaded meanwhile (in the order ``sys.modules`` got them), the time the cyclic garbage collector
ran, each full pass with the imports under way when it ran (it is in the self-time of the
innermost one), the modules imported outside the main thread, and its peak RSS (``VmHWM``).

This file is a script, not a module of the ``bench`` package, so that nothing of the harness is
imported into the measured process.
"""

from __future__ import annotations

import gc
import importlib._bootstrap as bootstrap
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# What the bench calls an SDK, and the module whose presence in sys.modules says it was loaded.
SDKS = {
    "boto3": "boto3",
    "botocore": "botocore",
    "grpc": "grpc",
    "firestore": "google.cloud.firestore_v1",
    "pubsub": "google.cloud.pubsub_v1",
    "dts": "google.cloud.bigquery_datatransfer_v1",
    "bigquery": "google.cloud.bigquery",
    "secretmanager": "google.cloud.secretmanager_v1",
    "id token": "google.oauth2.id_token",
}
CLOUD_EVENT_HEADERS = {
    "ce-id": "warm-up",
    "ce-specversion": "1.0",
    "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
    "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
}


def peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class GcTimer:
    """Time spent in the cyclic garbage collector, and its full (generation 2) passes: each with
    the imports under way when it ran (``full_passes``: innermost first, to find the module
    whose self-time holds it). Processor time of the thread that ran the pass, as
    ``ImportClock`` counts, so that a pass taken out of a self-time is in the same unit."""

    def __init__(self) -> None:
        self.ms = 0.0
        self.full = 0
        self.full_ms = 0.0
        self.full_passes: list[tuple[list[str], float]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
            return
        took = (time.thread_time() - self._started) * 1000
        self.ms += took
        if info.get("generation") == 2:
            self.full += 1
            self.full_ms += took
            self.full_passes.append((importing(), took))


class ImportClock:
    """The processor time each import took in the thread that made it, less its nested imports'
    (a wrapper around importlib's ``_find_and_load``, which every import statement,
    ``__import__`` and ``importlib.import_module`` go through for a module not loaded yet).

    Not ``-X importtime``: its self-times are wall-clock, so an import in a thread that shares the
    interpreter with running threads is billed their time too, and its nesting counters
    (``import_level``, ``accumulated`` in CPython's ``Python/import.c``) are one per interpreter,
    not per thread, so imports running at once in two threads corrupt each other's self-times
    (bench/README.md, "Why processor time"). ``time.thread_time_ns`` counts this thread's
    processor time only: a thread waiting for the GIL, or for another thread to finish loading
    the same module, is billed nothing."""

    def __init__(self, clock: Callable[[], int] = time.thread_time_ns) -> None:
        self.clock = clock
        self.main = threading.get_ident()
        self.imports: list[tuple[str, int, bool]] = []  # (module, self µs, in the main thread)
        self._nested = threading.local()
        self._original: Callable[..., Any] | None = None

    def timed(self, load: Callable[..., Any], name: str, *args: Any) -> Any:
        if name in sys.modules:
            # Loaded, or being loaded by another thread that this one will wait for (its CPU
            # time is that thread's): ``importlib.import_module`` comes here for either.
            return load(name, *args)
        stack: list[int] = self._nested.__dict__.setdefault("stack", [])
        stack.append(0)
        started = self.clock()
        try:
            return load(name, *args)
        finally:
            took = self.clock() - started
            nested = stack.pop()
            if stack:
                stack[-1] += took
            self.imports.append(
                (name, max(0, took - nested) // 1000, threading.get_ident() == self.main)
            )

    def start(self) -> None:
        original = self._original = bootstrap._find_and_load
        bootstrap._find_and_load = lambda name, *args: self.timed(original, name, *args)

    def stop(self) -> None:
        bootstrap._find_and_load = self._original


def importing() -> list[str]:
    """The modules being imported, innermost first (none outside any import): the names
    importlib's ``_find_and_load`` frames were given. ``ImportClock`` bills each module its own
    time less its nested imports', so a pass is in the self-time of the innermost one. Walked
    for the few full passes only: the walk's own time is billed like the pass's."""
    names: list[str] = []
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_find_and_load" and "importlib" in code.co_filename:
            names.append(str(frame.f_locals.get("name", "")))
        frame = frame.f_back
    return names


def at_depth(frames: int, fn: Callable[[], Any]) -> Any:
    """``fn()``, called ``frames`` Python frames deeper than this call. Each repetition of a
    cold start runs at another depth: on Python 3.11 and 3.12 a loop whose calls cross a boundary
    between two chunks of the interpreter's frame stack maps and unmaps a chunk on every call
    (python/cpython#142183), so where the boundaries fall, which the depth decides, can make one
    import cost several times its usual time (bench/README.md, "Stack depth")."""
    return fn() if frames <= 0 else at_depth(frames - 1, fn)


@contextmanager
def threads_at_depth(frames: int) -> Iterator[None]:
    """Threads started meanwhile (the hand-off's workers) run their target ``frames`` frames
    deeper too, as ``at_depth`` runs the main thread's."""
    run = threading.Thread.run
    threading.Thread.run = lambda thread: at_depth(frames, lambda: run(thread))  # type: ignore[method-assign]
    try:
        yield
    finally:
        threading.Thread.run = run  # type: ignore[method-assign]


def measured(spec: dict[str, Any], create_app: Any, failed: list[str]) -> tuple[int, str]:
    """What the clock times: load and call the path, or make the imports; (status, reply)."""
    if spec["kind"] == "imports":
        if spec.get("source"):
            create_app(spec["target"], spec["source"], "http")
        for name in spec["modules"]:
            # ``__import__``, as an import statement does (and the path's imports do).
            if spec.get("tolerant"):
                try:
                    __import__(name)
                except Exception:  # reported, not fatal
                    failed.append(name)
            else:
                __import__(name)
        # Tried again once the others are in: a name no file has (an alias, a Cython
        # artefact) fails again, a module that cannot be imported before its package is
        # complete (``grpc._simple_stubs``) does not.
        for name in [name for name in failed if name not in sys.modules]:
            failed.remove(name)
            try:
                __import__(name)
            except Exception:
                failed.append(name)
        return 0, ""
    app = create_app(spec["target"], spec["source"], spec["signature"])
    if not spec.get("call", True):
        return 0, ""
    response = app.test_client().open(
        "/",
        method=spec.get("method", "POST"),
        json=spec.get("json"),
        headers=spec.get("headers") or {},
    )
    return response.status_code, response.get_data(as_text=True)[:4000]


def main() -> None:
    spec = json.loads(sys.argv[1])
    import functions_framework

    create_app: Any = functions_framework.create_app  # untyped upstream
    stub = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_platform_stub.py")
    create_app("http_stub", stub, "http").test_client().post("/", json={})
    create_app("event_stub", stub, "cloudevent").test_client().post(
        "/", json={"message": {}}, headers=CLOUD_EVENT_HEADERS
    )
    failed: list[str] = []
    before = set(sys.modules)
    timer = GcTimer()
    gc.callbacks.append(timer)
    clock = ImportClock()

    depth = int(spec.get("depth", 0))
    with threads_at_depth(depth):
        clock.start()
        status, body = at_depth(depth, lambda: measured(spec, create_app, failed))
        clock.stop()
    gc.callbacks.remove(timer)
    result = {
        "status": status,
        "body": body,
        "sdks": {name: module in sys.modules for name, module in SDKS.items()},
        "peak_rss_mib": peak_rss_mib(),
        "new_modules": [name for name in list(sys.modules) if name not in before],
        "failed_imports": failed,
        "gc_ms": timer.ms,
        "gc_full": timer.full,
        "gc_full_ms": timer.full_ms,
        "gc_full_passes": timer.full_passes,
        "imports": [[name, us] for name, us, _ in clock.imports],
        "threaded_imports": sorted({name for name, _, main in clock.imports if not main}),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

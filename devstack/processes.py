"""Start and stop the local wire peers on free ports: moto's server and the gcloud emulators."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 60.0, alive: Callable[[], bool] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"process serving port {port} exited before it was ready")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f}s")


# Every process group started here and not yet stopped. At exit, whatever is left is ended: a
# teardown cut short (Ctrl-C or SIGTERM while fixtures stop things) must not leave emulators or
# functions running. Only SIGKILL of this process escapes it.
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


@atexit.register
def _stop_leftovers() -> None:
    for process in list(_LIVE.values()):
        if process.poll() is None:  # still ours: its pid (and group) cannot have been reused
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
    _LIVE.clear()


@dataclass
class Service:
    """A process we started; ``stop`` ends its whole process group."""

    name: str
    port: int
    process: subprocess.Popen[bytes] | None
    log_path: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.process is not None:
            _LIVE[self.process.pid] = self.process

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process is None:
            return
        _LIVE.pop(self.process.pid, None)
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


def require_gcloud() -> str:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise RuntimeError(
            "the gcloud CLI is not on PATH: install the Google Cloud SDK with the "
            "Pub/Sub and Firestore emulators (see README, Prerequisites)"
        )
    return gcloud


def _spawn(
    name: str, args: list[str], port: int, timeout: float = 90.0, work_dir: Path | None = None
) -> Service:
    """Start ``args``, its output in ``work_dir/NAME.log`` (a temporary file without one)."""
    if work_dir is not None:
        log = work_dir / f"{name}.log"
    else:
        log = Path(tempfile.mkstemp(prefix=f"rds2bq-{name}-", suffix=".log")[1])
    with log.open("ab") as out:  # a restart on the same log appends
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    service = Service(name, port, process, log)
    try:
        wait_for_port(port, timeout, alive=lambda: process.poll() is None)
    except Exception:
        service.stop()
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{name} did not start; its log ends with:\n{tail}") from None
    return service


def _on_a_free_port(start: Callable[[int], Service], port: int | None, tries: int = 3) -> Service:
    """``start`` on ``port``, or on a free port picked here. A picked port can be taken by another
    process before the emulator binds it (the emulator then exits): pick another and try again."""
    if port:
        return start(port)
    for attempt in range(tries):
        try:
            return start(free_port())
        except RuntimeError:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def start_firestore_emulator(
    port: int | None = None, import_data: str = "", work_dir: Path | None = None
) -> Service:
    """``import_data``: the ``*.overall_export_metadata`` file of an export to load on start;
    ``work_dir``: where its log goes (else a temporary file)."""
    gcloud = require_gcloud()

    def start(chosen: int) -> Service:
        args = [gcloud, "emulators", "firestore", "start", f"--host-port=127.0.0.1:{chosen}"]
        args.append("--quiet")
        if import_data:
            args.append(f"--import-data={import_data}")
        return _spawn("firestore", args, chosen, work_dir=work_dir)

    return _on_a_free_port(start, port)


def start_pubsub_emulator(
    project: str,
    port: int | None = None,
    work_dir: Path | None = None,
    data_dir: Path | None = None,
) -> Service:
    """``work_dir``: where its log goes; ``data_dir``: its data (else temporary ones)."""
    gcloud = require_gcloud()
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
    data = str(data_dir) if data_dir is not None else tempfile.mkdtemp(prefix="rds2bq-pubsub-")

    def start(chosen: int) -> Service:
        args = [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{chosen}"]
        args += [f"--project={project}", f"--data-dir={data}", "--quiet"]
        return _spawn("pubsub", args, chosen, work_dir=work_dir)

    return _on_a_free_port(start, port)

"""A local stand-in for a Slack incoming webhook.

It accepts ``POST /services/...`` with a JSON payload, checks it against Slack's limits with
``orchestrator.present.slack_blocks.validate_payload`` (answering ``400 invalid_payload`` as Slack
does), records the accepted payloads, and can be told to fail the next posts (429 with
Retry-After, 500, 400...) so retry behaviour is tested over real HTTP.

In process::

    standin = start()
    standin.url            # http://127.0.0.1:PORT/services/T000/B000/XXXX
    standin.fail_next(429, 1, retry_after=1)
    standin.payloads       # accepted payloads, in order
    standin.stop()

For the demo: ``python -m devstack.slack_standin --port 8099`` prints each message as text.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from orchestrator.present.slack_blocks import render_text, validate_payload

DEFAULT_PATH = "/services/T000/B000/XXXX"
MAX_BODY_BYTES = 2 * 1024 * 1024

# What Slack answers for each status (its documented webhook error strings).
_BODIES = {
    400: "invalid_payload",
    403: "action_prohibited",
    404: "no_service",
    410: "channel_is_archived",
    429: "rate_limited",
    500: "rollup_error",
    503: "service_unavailable",
}


@dataclass
class _Failure:
    status: int
    retry_after: float | None


@dataclass
class SlackStandIn:
    """A running stand-in. Thread-safe: the server answers from its own threads."""

    server: ThreadingHTTPServer
    path: str = DEFAULT_PATH
    on_payload: Callable[[dict[str, Any]], None] | None = None
    _payloads: list[dict[str, Any]] = field(default_factory=list)
    _statuses: list[int] = field(default_factory=list)
    _failures: list[_Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = self.server.server_address[0]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{self.server.server_port}"

    @property
    def url(self) -> str:
        return self.base_url + self.path

    @property
    def payloads(self) -> list[dict[str, Any]]:
        """Accepted payloads (a copy)."""
        with self._lock:
            return list(self._payloads)

    @property
    def statuses(self) -> list[int]:
        """The status answered to every POST, in order (failed ones included)."""
        with self._lock:
            return list(self._statuses)

    def fail_next(self, status: int, n: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``n`` posts with ``status`` (and ``Retry-After`` when given)."""
        with self._lock:
            self._failures.extend(_Failure(status, retry_after) for _ in range(n))

    def reset(self) -> None:
        with self._lock:
            self._payloads.clear()
            self._statuses.clear()
            self._failures.clear()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # Called by the handler.
    def _answer(self, path: str, body: bytes) -> tuple[int, str, dict[str, str]]:
        if not path.startswith("/services/"):
            return self._record(404, "no_service")
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            headers = {}
            if failure.retry_after is not None:
                headers["Retry-After"] = f"{failure.retry_after:g}"
            return self._record(failure.status, _BODIES.get(failure.status, "error"), headers)
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return self._record(400, "invalid_payload")
        if not isinstance(payload, dict) or validate_payload(payload):
            return self._record(400, "invalid_payload")
        with self._lock:
            self._payloads.append(payload)
        if self.on_payload is not None:
            self.on_payload(payload)
        return self._record(200, "ok")

    def _record(
        self, status: int, text: str, headers: dict[str, str] | None = None
    ) -> tuple[int, str, dict[str, str]]:
        with self._lock:
            self._statuses.append(status)
        return status, text, headers or {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: SlackStandIn


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(400, "invalid_payload", {"Connection": "close"})
            return
        body = self.rfile.read(length)
        status, text, headers = self.server.standin._answer(self.path, body)
        self._send(status, text, headers)

    def do_GET(self) -> None:
        self._send(405, "invalid_method", {})

    def _send(self, status: int, text: str, headers: dict[str, str]) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the request line holds the webhook path, which stands for a secret


def start(
    host: str = "127.0.0.1",
    port: int = 0,
    path: str = DEFAULT_PATH,
    on_payload: Callable[[dict[str, Any]], None] | None = None,
) -> SlackStandIn:
    """Serve on ``host:port`` (0: a free port) in a daemon thread."""
    server = _Server((host, port), _Handler)
    standin = SlackStandIn(server=server, path=path, on_payload=on_payload)
    server.standin = standin
    thread = threading.Thread(target=server.serve_forever, name="slack-standin", daemon=True)
    standin._thread = thread
    thread.start()
    return standin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local Slack incoming-webhook stand-in.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--path", default=DEFAULT_PATH)
    args = parser.parse_args(argv)

    def show(payload: dict[str, Any]) -> None:
        print(render_text(payload), "\n", flush=True)

    standin = start(args.host, args.port, args.path, on_payload=show)
    print(f"Slack stand-in listening on {standin.url}", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

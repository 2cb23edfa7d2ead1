"""Fault injection at the wire, for the drills: a throttling proxy in front of moto's server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

THROTTLE_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error><Type>Sender</Type>'
    b"<Code>Throttling</Code><Message>Rate exceeded</Message></Error>"
    b"<RequestId>drill</RequestId></ErrorResponse>"
)


class ThrottlingProxy:
    """Forwards every request to ``upstream`` except the next N, which get AWS's Throttling error
    (HTTP 400 ``Throttling``, as the Query APIs such as RDS answer it)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._lock = threading.Lock()
        self._throttle = 0
        self.throttled = 0
        self.forwarded = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy._take():
                    self.send_response(400)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(THROTTLE_BODY)))
                    self.end_headers()
                    self.wfile.write(THROTTLE_BODY)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                reply = requests.request(
                    self.command,
                    proxy.upstream + self.path,
                    data=body,
                    headers=headers,
                    timeout=30,
                    allow_redirects=False,
                )
                content = reply.content
                self.send_response(reply.status_code)
                for key, value in reply.headers.items():
                    if key.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def throttle_next(self, n: int) -> None:
        with self._lock:
            self._throttle = n

    def _take(self) -> bool:
        with self._lock:
            if self._throttle > 0:
                self._throttle -= 1
                self.throttled += 1
                return True
            self.forwarded += 1
            return False

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

"""The HTTP server: connections, one REST call's dispatch (faults, parsing, the handler, the call
record), and the stand-in's lifecycle."""

from __future__ import annotations

import logging
import threading
import time
from concurrent import futures
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from devstack.dts.errors import RpcFault
from devstack.dts.faults import CallRecord, Faults
from devstack.dts.notifications import _Notifier
from devstack.dts.rest import ROUTES, Route, encode_error, encode_response, parse_request
from devstack.keepalive import KeepAliveHandler, KeepAliveServer

log = logging.getLogger("devstack.dts")


class _Server(KeepAliveServer):
    def __init__(self, address: tuple[str, int], standin: ServerMixin) -> None:
        super().__init__(address, _Handler)
        self.standin = standin

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("DTS stand-in: connection from %s ended abruptly", client_address)


class _Handler(KeepAliveHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("DTS stand-in: " + format, *args)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload = self.server.standin.dispatch(self.command, self.path, body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client stopped waiting (a slow answer): as the real service, done
            self.close_connection = True

    do_GET = do_POST = do_PATCH = do_DELETE = _serve


class ServerMixin:
    """Serving DtsStandin over HTTP: lifecycle, dispatch, the call record."""

    host: str
    port: int
    faults: Faults
    calls: list[CallRecord]
    _lock: threading.RLock
    _gate: threading.BoundedSemaphore
    _server: _Server | None
    _thread: threading.Thread | None
    _finishers: futures.ThreadPoolExecutor
    _notifier: _Notifier

    # ------------------------------------------------------------------ lifecycle

    @property
    def endpoint(self) -> str:
        """``http://host:port``: what ``RDS2BQ_DTS_ENDPOINT`` and the official client's
        ``api_endpoint`` take."""
        return f"http://{self.host}:{self.port}"

    @property
    def target(self) -> str:
        """The stand-in's address as ``RDS2BQ_DTS_ENDPOINT`` takes it (the endpoint)."""
        return self.endpoint

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> Self:
        server = _Server((host, port), self)
        self.host, self.port = host, int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="dts-http",
            daemon=True,
        )
        self._thread.start()
        self._server = server
        return self

    def stop(self, grace: float = 0.5) -> None:
        """Stop serving: no new connections, and open keep-alive ones are closed so that no
        pooled client talks to a stopped stand-in."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            if self._thread is not None:
                self._thread.join(grace + 1)
        self._finishers.shutdown(wait=False, cancel_futures=True)
        self._notifier.close()

    def calls_of(self, method: str) -> list[CallRecord]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    # ------------------------------------------------------------------ REST plumbing

    def dispatch(self, verb: str, raw_path: str, body: bytes) -> tuple[int, bytes]:
        """Serve one HTTP request: its status code and JSON body."""
        url = urlsplit(raw_path)
        path = unquote(url.path)
        for route in ROUTES:
            variable = route.match(verb, path)
            if variable is not None:
                break
        else:
            unknown = RpcFault("NOT_FOUND", f"{verb} {url.path}: no such DTS method (DTS stand-in)")
            return unknown.http_code, encode_error(unknown)
        with self._gate:
            try:
                response, int_enums = self._call(route, variable, url.query, body)
            except RpcFault as fault:
                return fault.http_code, encode_error(fault)
            except Exception as exc:  # a stand-in bug: say so, as a 500 would
                log.exception("DTS stand-in: %s failed", route.method)
                bug = RpcFault("INTERNAL", f"DTS stand-in: {type(exc).__name__}: {exc}")
                return bug.http_code, encode_error(bug)
        return 200, encode_response(response, int_enums)

    def _record(self, method: str, code: str) -> None:
        with self._lock:
            self.calls.append(CallRecord(method, code))

    def _call(self, route: Route, variable: str, query: str, body: bytes) -> tuple[Any, bool]:
        method = route.method
        if self.faults.latency:
            time.sleep(self.faults.latency)
        injected = self.faults.take_failure(method)
        if injected is not None:
            self._record(method, injected[0])
            raise RpcFault(*injected)
        try:
            request, int_enums = parse_request(route, variable, query, body)
            response = getattr(self, route.handler)(request)
        except RpcFault as fault:
            self._record(method, fault.code)
            raise
        late = self.faults.take_slow(method)
        if late:
            time.sleep(late)
        self._record(method, "OK")
        return response, int_enums

"""The stand-ins' HTTP server: threaded, keep-alive (pooled clients reuse their connections, as
they do with Google's front ends), and on stop every open connection is closed, so that no pooled
client talks to a stopped stand-in."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class KeepAliveServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of clients connecting at once must not see refusals

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.connections: set[Any] = set()
        self.connections_lock = threading.Lock()

    def stop(self) -> None:
        """Stop serving, then close the connections clients keep open."""
        self.shutdown()
        self.server_close()
        with self.connections_lock:
            open_connections = list(self.connections)
        for connection in open_connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class KeepAliveHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle and the client's delayed
    # ACK add ~40 ms to every answer.
    disable_nagle_algorithm = True
    server: KeepAliveServer

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):  # the client is gone
            super().finish()

"""moto's server on a free port, in this process, so tests and the demo can drive export tasks.

moto completes every export at once, refuses live-cluster sources and keeps lowercase statuses. Real
RDS exports take hours and report UPPERCASE statuses. ``install_export_patch`` makes moto's exports
behave like the real ones on the wire (STARTING first, UPPERCASE, cluster sources accepted) and
``ExportControl`` lets the harness drive them through their states, as the test plan asks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from moto.server import ThreadedMotoServer

from devstack.processes import free_port

ACCOUNT_ID = "123456789012"
REGION = "ap-northeast-1"


@dataclass
class MotoServer:
    server: ThreadedMotoServer
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop()


def start_moto() -> MotoServer:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return MotoServer(server, port)

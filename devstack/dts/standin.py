"""The stand-in itself, assembled from its concerns, and how to start it and talk to it."""

from __future__ import annotations

import os
import threading
from concurrent import futures
from typing import Any

from google.cloud.bigquery_datatransfer_v1 import types

from devstack.dts.configs import ConfigsMixin
from devstack.dts.faults import CallRecord, Faults
from devstack.dts.notifications import Notification, NotificationsMixin, _Notifier
from devstack.dts.rest import MAX_PAGE_SIZE
from devstack.dts.runs import Outcome, RunRecord, RunsMixin
from devstack.dts.server import ServerMixin, _Server


class DtsStandin(ServerMixin, ConfigsMixin, RunsMixin, NotificationsMixin):
    """Configs and runs in memory, the HTTP server serving them, and the test-facing controls."""

    def __init__(
        self,
        *,
        s3_endpoint: str | None = None,
        pubsub_host: str | None = None,
        finish_delay: float | None = 0.0,
        s3_region: str = "us-east-1",
        max_workers: int = 32,
        bigquery: Any = None,
    ) -> None:
        self.s3_endpoint = s3_endpoint
        self.s3_region = s3_region
        # A devstack.bigquery_standin.BigQueryStandin: a SUCCEEDED run loads its files' rows and
        # schema into its destination table there (devstack.dts.loads); None: runs load nothing.
        self.bigquery = bigquery
        # None: runs stay PENDING until finish_pending(); a number: each run finishes on its own
        # that many seconds after it started.
        self.finish_delay = finish_delay
        self.faults = Faults()
        self.max_page_size = MAX_PAGE_SIZE  # lower it to force pagination
        self.calls: list[CallRecord] = []
        self.notifications: list[Notification] = []
        self._lock = threading.RLock()
        self._configs: dict[str, types.TransferConfig] = {}  # by name, with secrets
        self._runs: dict[str, RunRecord] = {}  # by run name, in start order
        self._outcomes: dict[str, Outcome] = {}
        self._s3_clients: dict[tuple[str, str], Any] = {}
        self._notifier = _Notifier(pubsub_host or os.environ.get("PUBSUB_EMULATOR_HOST"))
        self._finishers = futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="dts-finish")
        self._pending_finishes: set[futures.Future[Any]] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # At most this many calls are served at once; more wait their turn, as with a server's
        # worker pool.
        self._gate = threading.BoundedSemaphore(max_workers)
        self.host = "127.0.0.1"
        self.port = 0


def start(
    port: int = 0,
    s3_endpoint: str | None = None,
    pubsub_host: str | None = None,
    *,
    finish_delay: float | None = 0.0,
    s3_region: str = "us-east-1",
    bigquery: Any = None,
) -> DtsStandin:
    """Serve a stand-in on 127.0.0.1:``port`` (0: a free port); ``.port``, ``.stop()``.
    ``bigquery``: the BigQuery stand-in its runs load into."""
    return DtsStandin(
        s3_endpoint=s3_endpoint,
        pubsub_host=pubsub_host,
        finish_delay=finish_delay,
        s3_region=s3_region,
        bigquery=bigquery,
    ).serve(port)


def _endpoint(target: str) -> str:
    return target if "://" in target else f"http://{target}"


def client_for(target: str) -> Any:
    """The official ``DataTransferServiceClient`` (REST transport, anonymous credentials) talking
    to a stand-in at ``target`` (``http://host:port`` or ``host:port``)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery_datatransfer_v1 as dts

    return dts.DataTransferServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": _endpoint(target)},
    )

"""One small JSON-over-HTTPS client for the Google REST APIs on the functions' paths: Firestore,
Pub/Sub, BigQuery Data Transfer and Secret Manager.

Why not the ``google-cloud-*`` SDKs here: cold start (issue 7). Each SDK loads grpc, protobuf,
proto-plus and google-api-core before its first call; on every path that was more than half of
the time of importing everything. These four APIs are plain REST + JSON, documented and stable,
and we use a dozen of their methods. This client is urllib3 (which botocore loads anyway), one
pool per process, no retries of its own (retries are the caller's, ``orchestrator.retry``), and
every call bounded by a timeout.

Errors come back as ``ApiError`` with Google's canonical status (``NOT_FOUND``,
``ALREADY_EXISTS``, ``FAILED_PRECONDITION``, ...); ``translated`` turns them into ours at the
adapter boundary. A request whose answer never came (read timeout, connection dropped after
sending) is ``DEADLINE_EXCEEDED``: its outcome is unknown, and a caller starting something must
look before it retries.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import urllib3

from orchestrator.errors import PermanentError, TransientError

TIMEOUT = 30.0
POOL_SIZE = 32  # above the hand-off's concurrency: every worker thread keeps its connection
USER_AGENT = "rds2bq"

_STATUS_OF_CODE = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
TRANSIENT_STATUSES = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL"}
)


class ApiError(Exception):
    """A Google API's refusal (``code`` is the HTTP status), or no answer at all (``code`` 0)."""

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}" if message else status)
        self.code = code
        self.status = status
        self.message = message

    @property
    def transient(self) -> bool:
        return self.status in TRANSIENT_STATUSES


class TokenSource(Protocol):
    """Bearer tokens for Google APIs; ``None`` sends no Authorization header (emulators)."""

    def token(self) -> str | None: ...


class NoToken:
    def token(self) -> str | None:
        return None


class FixedToken:
    """A constant token: the Firestore emulator's ``owner`` (full access, rules bypassed)."""

    def __init__(self, value: str) -> None:
        self._value = value

    def token(self) -> str | None:
        return self._value


# Connections idle longer than this are dropped before the next call rather than reused. Between
# two polls a Cloud Functions instance sits idle for minutes, and Google's front ends close idle
# keep-alive connections on their own schedule: a request sent on a connection being closed gets
# no answer, which for a write means an unknown outcome. A fresh connection costs one handshake.
IDLE_RESET_SECONDS = 60.0

_POOL: urllib3.PoolManager | None = None
_LAST_USED = 0.0
_POOL_LOCK = threading.Lock()
_clock = time.monotonic


def shared_pool() -> urllib3.PoolManager:
    """One connection pool per process, shared by every Google API client; emptied after an
    idle spell (``IDLE_RESET_SECONDS``)."""
    global _POOL, _LAST_USED
    with _POOL_LOCK:
        now = _clock()
        if _POOL is None:
            _POOL = urllib3.PoolManager(maxsize=POOL_SIZE, retries=False)
        elif now - _LAST_USED > IDLE_RESET_SECONDS:
            _POOL.clear()  # closes the idle connections; calls in flight are not affected
        _LAST_USED = now
        return _POOL


def _error_from(code: int, payload: bytes) -> ApiError:
    status, message = _STATUS_OF_CODE.get(code, "UNKNOWN"), ""
    try:
        body = json.loads(payload or b"null")
    except ValueError:
        body = None
    if isinstance(body, list) and body:  # streaming methods (runQuery) answer with a list
        body = body[0]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        status = str(error.get("status") or status)
        message = str(error.get("message") or "")
    elif payload and body is None:
        message = payload[:200].decode("utf-8", "replace").strip()
    return ApiError(code, status, message or f"HTTP {code}")


class GoogleHttp:
    """Calls one API at ``base_url`` (e.g. ``https://firestore.googleapis.com/v1/``)."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenSource | None = None,
        *,
        timeout: float = TIMEOUT,
        pool: urllib3.PoolManager | None = None,
    ) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._tokens = tokens or NoToken()
        self._timeout = timeout
        self._pool = pool

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int | bool | list[str]] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The decoded JSON answer (``{}`` when empty); ``ApiError`` otherwise. ``path`` is
        relative to ``base_url`` and already escaped where it needs to be (see ``quote_path``)."""
        url = self.base_url + path.lstrip("/")
        if params:
            url += "?" + urlencode(
                {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items()},
                doseq=True,
            )
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        token = self._tokens.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # A person's ADC login (the CLI) bills API quota to a project it names; without the
        # header some APIs refuse user credentials outright. Only AdcCredentials has one.
        quota_project = getattr(self._tokens, "quota_project", "")
        if quota_project:
            headers["x-goog-user-project"] = quota_project
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        pool = self._pool or shared_pool()
        try:
            reply = pool.request(
                method,
                url,
                body=data,
                headers=headers,
                timeout=urllib3.Timeout(
                    connect=min(10.0, timeout or self._timeout), read=timeout or self._timeout
                ),
                retries=False,
                redirect=False,
            )
        except (
            urllib3.exceptions.NewConnectionError,
            urllib3.exceptions.ConnectTimeoutError,
        ) as exc:
            raise ApiError(0, "UNAVAILABLE", f"cannot connect to {self.base_url}: {exc}") from exc
        except urllib3.exceptions.HTTPError as exc:
            # Sent, but no (complete) answer: the outcome is unknown.
            raise ApiError(
                0, "DEADLINE_EXCEEDED", f"no answer from {self.base_url}: {exc}"
            ) from exc
        if reply.status >= 300:
            raise _error_from(reply.status, reply.data)
        if not reply.data:
            return {}
        try:
            return json.loads(reply.data)
        except ValueError as exc:
            raise ApiError(reply.status, "UNKNOWN", f"not JSON from {url}") from exc


def google_api(
    production_url: str,
    local: str = "",
    local_path: str = "",
    local_tokens: TokenSource | None = None,
    environ: Mapping[str, str] | None = None,
) -> GoogleHttp:
    """The client every Google adapter builds: ``local`` (an emulator or stand-in, ``host:port``
    or a URL; no credentials unless ``local_tokens``) with ``local_path`` below it, when set;
    otherwise ``production_url`` with the default credentials (``google_tokens``)."""
    if local:
        base = (local if "://" in local else f"http://{local}").rstrip("/") + "/"
        if local_path and not base.endswith(local_path):
            base += local_path
        return GoogleHttp(base, local_tokens)
    from orchestrator.adapters.google_tokens import default_credentials

    return GoogleHttp(production_url, default_credentials(environ))


def quote_path(segment: str) -> str:
    """One path segment escaped for a URL (document ids may hold ``:`` or spaces)."""
    return quote(segment, safe="")


@contextmanager
def translated(service: str, what: str) -> Iterator[None]:
    """``ApiError`` -> TransientError (worth retrying) or PermanentError, with the service's own
    message: it says what is wrong. The ``ApiError`` stays as ``__cause__`` for callers that
    treat one status apart (``NOT_FOUND`` on a delete, ``DEADLINE_EXCEEDED`` on a start)."""
    try:
        yield
    except ApiError as exc:
        text = f"{service} {what}: {exc.message or exc.status}"
        if exc.transient:
            raise TransientError(text) from exc
        raise PermanentError(text) from exc


def cause_status(exc: BaseException) -> str:
    """The Google status behind one of our errors raised by ``translated`` ("" if none)."""
    cause = exc.__cause__
    return cause.status if isinstance(cause, ApiError) else ""

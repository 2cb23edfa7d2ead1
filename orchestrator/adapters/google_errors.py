"""google.api_core and google.auth errors -> ours, for every Google adapter alike.

Transient: unavailable, throttled (429 / RESOURCE_EXHAUSTED), timeouts, 5xx, aborted
(contention), and a transport failure while fetching credentials. Everything else the API
answered is permanent, with the service's own message: it says what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from orchestrator.errors import PermanentError, TransientError

TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.TooManyRequests,  # ResourceExhausted is one
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.GatewayTimeout,
    gexc.Aborted,
    auth_exc.TransportError,
)


def message(exc: Exception) -> str:
    return str(getattr(exc, "message", None) or exc)


@contextmanager
def translated(service: str, what: str) -> Iterator[None]:
    try:
        yield
    except TRANSIENT as exc:
        raise TransientError(f"{service} {what}: {message(exc)}") from exc
    except (gexc.GoogleAPICallError, auth_exc.GoogleAuthError) as exc:
        raise PermanentError(f"{service} {what}: {message(exc)}") from exc

"""What every Google adapter shares: vendor errors translated into ours, and the options that point
an SDK client at a local stand-in.

Errors. The SDKs raise ``google.api_core.exceptions`` for answers, ``google.auth.exceptions`` for
credentials, and, on the REST transport (DTS, Secret Manager), ``requests`` exceptions for a call
that got no answer at all: the generated REST transports do not wrap those. Transient: unavailable,
throttled, timeouts, 5xx, aborted (contention), and a transport failure. Everything else the API
answered is permanent, with the service's own message: it says what is wrong. The vendor error
stays as ``__cause__``, so a caller can treat one status apart (``NOT_FOUND`` on a delete).

A call whose answer never came has an unknown outcome (``outcome_unknown``): a caller starting
something must look before it retries (docs/platform.md, "Errors and unknown outcomes").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from orchestrator.core.errors import PermanentError, TransientError
from orchestrator.core.redaction import redact

_REST_PREFIX = re.compile(r"^(?:GET|POST|PUT|PATCH|DELETE) \S+: ")
TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.TooManyRequests,  # ResourceExhausted is one
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.GatewayTimeout,
    gexc.Aborted,
    # Over REST a 409 is ABORTED or ALREADY_EXISTS, which HTTP cannot tell apart; an adapter that
    # expects ALREADY_EXISTS catches it itself, so a 409 that reaches here is contention.
    gexc.Conflict,
    gexc.RetryError,
    auth_exc.TransportError,
    requests.ConnectionError,
    requests.Timeout,
)


def message(exc: BaseException) -> str:
    """The vendor's own words, scrubbed where they enter (a DTS error may echo a key id), without
    the method and URL the REST transports put before them."""
    text = str(getattr(exc, "message", None) or exc)
    return redact(_REST_PREFIX.sub("", text, count=1))


def outcome_unknown(exc: BaseException) -> bool:
    """Whether the failed call may still have been carried out: it was sent and no answer came
    (a deadline, a read timeout, a connection lost). Only a timed-out connect surely was not; a
    refused one is counted as unknown too, which costs a caller one look it did not need."""
    cause = exc.__cause__ if isinstance(exc, TransientError | PermanentError) else exc
    # 504 (GatewayTimeout; DeadlineExceeded over gRPC): a front end stopped waiting for the service
    if isinstance(cause, gexc.GatewayTimeout | requests.ReadTimeout):
        return True
    return isinstance(cause, requests.ConnectionError) and not isinstance(
        cause, requests.ConnectTimeout
    )


@contextmanager
def translated(service: str, what: str) -> Iterator[None]:
    try:
        yield
    except TRANSIENT as exc:
        raise TransientError(f"{service} {what}: {message(exc)}") from exc
    except (gexc.GoogleAPICallError, auth_exc.GoogleAuthError) as exc:
        raise PermanentError(f"{service} {what}: {message(exc)}") from exc


def is_cause(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether one of our errors raised by ``translated`` stands for a vendor error of ``kind``."""
    return isinstance(exc.__cause__, kind)


def local_client_options(endpoint: str) -> dict[str, Any]:
    """Keyword arguments that point an SDK client at a local stand-in (``host:port`` or a URL),
    with anonymous credentials; ``{}`` for production (the default endpoint and credentials)."""
    if not endpoint:
        return {}
    from google.auth.credentials import AnonymousCredentials

    url = (endpoint if "://" in endpoint else f"http://{endpoint}").rstrip("/")
    return {
        "credentials": AnonymousCredentials(),  # type: ignore[no-untyped-call]
        "client_options": {"api_endpoint": url},
    }

"""Google credentials for our REST calls: access tokens, and ID tokens for AWS web identity.

- On Cloud Functions (gen2 runs on Cloud Run, which sets ``K_SERVICE``) both come from the
  metadata server: one plain HTTP GET each, cached until shortly before expiry. This is what
  google-auth's compute-engine credentials do, without importing google-auth's transports (they
  load requests and cryptography: a quarter of a cold start).
- Anywhere else (the CLI on a laptop, CI) Application Default Credentials through google-auth:
  ``gcloud auth application-default login``, a service-account key, or impersonation.

``GCE_METADATA_HOST`` (google-auth's own override) points the metadata client elsewhere: the
local stack's metadata stand-in.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import urlencode

import urllib3

from orchestrator.adapters.google_http import shared_pool
from orchestrator.errors import PermanentError, TransientError

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
METADATA_HOST = "metadata.google.internal"
TIMEOUT = 10.0
EARLY_REFRESH = 300.0  # seconds before expiry: a token is never sent in its last minutes


class Credentials(Protocol):
    def token(self) -> str | None: ...

    def id_token(self, audience: str) -> str: ...


def jwt_claims(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified (whoever receives the token verifies it); {} if unreadable."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):  # binascii.Error is a ValueError
        return {}
    return claims if isinstance(claims, dict) else {}


def _jwt_expiry(token: str) -> float:
    try:
        return float(jwt_claims(token)["exp"])
    except (KeyError, ValueError, TypeError):
        return time.time() + 600.0  # unknown: keep it ten minutes at most


class MetadataCredentials:
    """The function's own service account, from the metadata server."""

    def __init__(
        self,
        host: str = "",
        pool: urllib3.PoolManager | None = None,
        clock: Any = time.time,
    ) -> None:
        self._base = (
            f"http://{host or METADATA_HOST}/computeMetadata/v1/instance/service-accounts/default/"
        )
        self._pool = pool
        self._clock = clock
        self._lock = threading.Lock()
        self._access: tuple[str, float] | None = None
        self._ids: dict[str, tuple[str, float]] = {}

    def _get(self, path: str, params: Mapping[str, str]) -> bytes:
        url = self._base + path + ("?" + urlencode(params) if params else "")
        pool = self._pool or shared_pool()
        try:
            reply = pool.request(
                "GET",
                url,
                headers={"Metadata-Flavor": "Google"},
                timeout=urllib3.Timeout(total=TIMEOUT),
                retries=False,
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(f"metadata server unreachable for {path}: {exc}") from exc
        if reply.status >= 500:
            raise TransientError(f"metadata server answered {reply.status} for {path}")
        if reply.status != 200:
            raise PermanentError(f"metadata server refused {path}: HTTP {reply.status}")
        return bytes(reply.data)

    def token(self) -> str | None:
        with self._lock:
            if self._access and self._clock() < self._access[1]:
                return self._access[0]
            try:
                answer = json.loads(self._get("token", {}))
                value, ttl = str(answer["access_token"]), float(answer["expires_in"])
            except (ValueError, KeyError, TypeError) as exc:
                raise TransientError("metadata server sent an unreadable access token") from exc
            self._access = (value, self._clock() + max(ttl - EARLY_REFRESH, 30.0))
            return value

    def id_token(self, audience: str) -> str:
        with self._lock:
            hit = self._ids.get(audience)
            if hit and self._clock() < hit[1]:
                return hit[0]
            value = self._get("identity", {"audience": audience, "format": "full"}).decode()
            expires = _jwt_expiry(value) - EARLY_REFRESH
            self._ids[audience] = (value, max(expires, self._clock() + 30.0))
            return value


class AdcCredentials:
    """Application Default Credentials via google-auth (imported on first use)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._creds: Any = None
        self.quota_project = ""  # the project a user's login bills quota to, once known

    def token(self) -> str | None:
        import google.auth
        import google.auth.transport.requests

        with self._lock, _auth_errors("an access token"):
            if self._creds is None:
                self._creds, _ = google.auth.default(scopes=list(SCOPES))
                self.quota_project = str(getattr(self._creds, "quota_project_id", None) or "")
            if not self._creds.valid:
                self._creds.refresh(google.auth.transport.requests.Request())
            return str(self._creds.token)

    def id_token(self, audience: str) -> str:
        import google.auth.transport.requests
        import google.oauth2.id_token

        with _auth_errors(f"an ID token for {audience}"):
            token = google.oauth2.id_token.fetch_id_token(  # type: ignore[no-untyped-call]
                google.auth.transport.requests.Request(), audience
            )
        return str(token)


@contextmanager
def _auth_errors(what: str) -> Iterator[None]:
    from google.auth import exceptions as auth_exc

    try:
        yield
    except auth_exc.TransportError as exc:
        raise TransientError(f"Google credentials: could not fetch {what}: {exc}") from exc
    except auth_exc.GoogleAuthError as exc:
        raise PermanentError(f"Google credentials: no {what} ({exc})") from exc


_SHARED: dict[tuple[bool, str], Credentials] = {}
_SHARED_LOCK = threading.Lock()


def default_credentials(environ: Mapping[str, str] | None = None) -> Credentials:
    """The metadata server on Cloud Functions (``K_SERVICE`` is set) or wherever
    ``GCE_METADATA_HOST`` points; Application Default Credentials elsewhere. One instance per
    source and process, so every API shares its cached tokens."""
    env = os.environ if environ is None else environ
    metadata_host = env.get("GCE_METADATA_HOST", "")
    key = (bool(env.get("K_SERVICE") or metadata_host), metadata_host)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = MetadataCredentials(metadata_host) if key[0] else AdcCredentials()
        return _SHARED[key]

"""Secrets: Secret Manager in the cloud; environment variables on the local stack.

Every value read is registered with ``logs.register_secret`` so that even a careless log line
cannot carry it. Values are cached per instance for a few minutes: a rotated secret is picked up
without a redeploy, and a warm instance does not call Secret Manager per request.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Mapping

from orchestrator.adapters.google_http import ApiError, GoogleHttp, google_api
from orchestrator.errors import NotFoundError, PermanentError, TransientError
from orchestrator.logs import register_secret

CACHE_SECONDS = 300.0
ENDPOINT = "https://secretmanager.googleapis.com/v1/"


class SecretManagerSecrets:
    """``versions.access`` over Secret Manager's REST API (see ``google_http`` for why not the
    SDK)."""

    def __init__(
        self, http: GoogleHttp, project: str, cache_seconds: float = CACHE_SECONDS
    ) -> None:
        self._http = http
        self._project = project
        self._cache: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self._ttl = cache_seconds

    def _path(self, name: str) -> str:
        if name.startswith("projects/"):
            return name if "/versions/" in name else f"{name}/versions/latest"
        return f"projects/{self._project}/secrets/{name}/versions/latest"

    def get(self, name: str) -> str:
        with self._lock:
            hit = self._cache.get(name)
            if hit and time.monotonic() - hit[0] < self._ttl:
                return hit[1]
        try:
            answer = self._http.call("GET", f"{self._path(name)}:access", timeout=15.0)
        except ApiError as exc:
            if exc.status == "NOT_FOUND":
                raise NotFoundError(
                    f"secret {name} (or its latest version) does not exist"
                ) from exc
            if exc.status in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
                raise PermanentError(
                    f"no roles/secretmanager.secretAccessor on secret {name}"
                ) from exc
            if exc.transient:
                raise TransientError(f"Secret Manager unavailable reading {name}") from exc
            raise PermanentError(f"Secret Manager refused reading {name}: {exc.status}") from exc
        try:
            value = base64.b64decode(answer["payload"]["data"]).decode("utf-8")
        except (KeyError, TypeError, ValueError) as exc:
            # Never echo the answer: it may hold the secret.
            raise PermanentError(f"secret {name}: Secret Manager sent no readable payload") from exc
        register_secret(value)
        with self._lock:
            self._cache[name] = (time.monotonic(), value)
        return value


def secret_manager(project: str, environ: Mapping[str, str] | None = None) -> SecretManagerSecrets:
    return SecretManagerSecrets(google_api(ENDPOINT, environ=environ), project)


class EnvSecrets:
    """``RDS2BQ_SECRET_<NAME>`` (name upper-cased, ``-`` and ``/`` as ``_``). Local use only."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if environ is None else environ

    @staticmethod
    def variable(name: str) -> str:
        tail = name.rsplit("/secrets/", 1)[-1].split("/versions/")[0]
        return "RDS2BQ_SECRET_" + tail.upper().replace("-", "_").replace("/", "_")

    def get(self, name: str) -> str:
        value = self._env.get(self.variable(name))
        if value is None:
            raise NotFoundError(f"secret {name} is not set (local: {self.variable(name)})")
        register_secret(value)
        return value

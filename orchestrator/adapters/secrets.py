"""Secrets: Secret Manager in the cloud; environment variables on the local stack.

Every value read is registered with ``logs.register_secret`` so that even a careless log line
cannot carry it. Values are cached per instance for a few minutes: a rotated secret is picked up
without a redeploy, and a warm instance does not call Secret Manager per request.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from orchestrator.errors import NotFoundError, PermanentError, TransientError
from orchestrator.logs import register_secret

CACHE_SECONDS = 300.0


class SecretManagerSecrets:
    def __init__(self, client: Any, project: str, cache_seconds: float = CACHE_SECONDS) -> None:
        self._client = client
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
        from google.api_core import exceptions as gexc

        try:
            response = self._client.access_secret_version(
                request={"name": self._path(name)}, timeout=15.0
            )
        except gexc.NotFound as exc:
            raise NotFoundError(f"secret {name} (or its latest version) does not exist") from exc
        except gexc.PermissionDenied as exc:
            raise PermanentError(f"no roles/secretmanager.secretAccessor on secret {name}") from exc
        except (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError) as exc:
            raise TransientError(f"Secret Manager unavailable reading {name}") from exc
        value = response.payload.data.decode("utf-8")
        register_secret(value)
        with self._lock:
            self._cache[name] = (time.monotonic(), value)
        return str(value)


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

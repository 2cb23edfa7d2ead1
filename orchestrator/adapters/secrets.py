"""Secrets: Secret Manager in the cloud; environment variables on the local stack.

Every value read is registered with ``logs.register_secret`` so that even a careless log line
cannot carry it. Values are cached per instance for a few minutes: a rotated secret is picked up
without a redeploy, and a warm instance does not call Secret Manager per request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry as retries
from google.auth import exceptions as auth_exc

from orchestrator.adapters.google_errors import TRANSIENT, local_client_options
from orchestrator.config import env_secret_variable
from orchestrator.core.errors import NotFoundError, PermanentError, TransientError
from orchestrator.logs import register_secret

CACHE_SECONDS = 300.0
TIMEOUT = 15.0
RETRY_SECONDS = 20.0
# The generated transports log whole responses at DEBUG, and an access answer is the secret. Pin
# their level so that no logging setup (a DEBUG root, GOOGLE_SDK_PYTHON_LOGGING_SCOPE) emits one.
_PAYLOAD_LOGGER = "google.cloud.secretmanager_v1.services.secret_manager_service.transports"


class SecretManagerSecrets:
    """``AccessSecretVersion`` through ``SecretManagerServiceClient`` (injected)."""

    def __init__(
        self,
        client: Any,
        project: str,
        cache_seconds: float = CACHE_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        logging.getLogger(_PAYLOAD_LOGGER).setLevel(logging.INFO)
        self._client = client
        # A read: transient faults are retried by the client, within a bound of our choosing.
        self._retry = retries.Retry(
            predicate=retries.if_transient_error, initial=0.1, maximum=2.0, timeout=retry_seconds
        )
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
            response = self._client.access_secret_version(
                request={"name": self._path(name)}, retry=self._retry, timeout=TIMEOUT
            )
        except gexc.NotFound as exc:
            raise NotFoundError(f"secret {name} (or its latest version) does not exist") from exc
        except (gexc.Forbidden, gexc.Unauthorized) as exc:  # over REST: by HTTP code
            raise PermanentError(f"no roles/secretmanager.secretAccessor on secret {name}") from exc
        except TRANSIENT as exc:
            raise TransientError(f"Secret Manager unavailable reading {name}") from exc
        except gexc.GoogleAPICallError as exc:
            # Never echo more than the status: an answer about a secret is no place to guess.
            raise PermanentError(f"Secret Manager refused reading {name}: {exc.code}") from exc
        except auth_exc.GoogleAuthError as exc:
            raise PermanentError(f"no Google credentials to read secret {name}") from exc
        try:
            value = bytes(response.payload.data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PermanentError(f"secret {name}: its payload is not UTF-8 text") from exc
        register_secret(value)
        with self._lock:
            self._cache[name] = (time.monotonic(), value)
        return value


def secret_manager(project: str, endpoint: str = "") -> SecretManagerSecrets:
    """Secret Manager on its REST transport (the wire the local stand-in checks); ``endpoint``
    points it at that stand-in (local only)."""
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient(
        transport="rest", **local_client_options(endpoint)
    )
    return SecretManagerSecrets(client, project)


class EnvSecrets:
    """``RDS2BQ_SECRET_<NAME>`` (name upper-cased, ``-`` and ``/`` as ``_``). Local use only."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if environ is None else environ

    @staticmethod
    def variable(name: str) -> str:
        return env_secret_variable(name)

    def get(self, name: str) -> str:
        value = self._env.get(self.variable(name))
        if value is None:
            raise NotFoundError(f"secret {name} is not set (local: {self.variable(name)})")
        register_secret(value)
        return value

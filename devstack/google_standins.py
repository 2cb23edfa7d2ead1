"""Local stand-ins for two small Google endpoints, speaking their real formats over HTTP:

- the metadata server (``GCE_METADATA_HOST`` and ``GCE_METADATA_IP``, the two variables google-auth
  reads): the root that google-auth pings, the default service account's description
  (``.../service-accounts/default/?recursive=true``), its access token (``.../token``) and ID tokens
  (``.../identity?audience=A&format=full``: an unsigned JWT with ``aud``, ``sub``, ``azp``,
  ``email``, ``iat`` and ``exp``, which moto's STS takes for ``AssumeRoleWithWebIdentity``). Every
  request must carry ``Metadata-Flavor: Google`` and every answer does, as on Google's runtime.
- Secret Manager's ``versions.access`` (``GET /v1/projects/P/secrets/S/versions/V:access``),
  answering ``{"name", "payload": {"data": base64}}`` or Google's JSON errors.

Both count requests (``calls``) and can be told to fail the next ones (``fail_next``).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

SERVICE_ACCOUNT = "rds2bq-functions@rds2bq-local.iam.gserviceaccount.com"
SUBJECT = "104857600000000000001"  # the account's unique id: what AWS trust policies pin
TOKEN_SECONDS = 3599
_STATUS = {
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "RS256", "kid": "local", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}.{_b64(b'not-signed')}"


class _StandIn:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._failures: list[int] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                split = urlsplit(self.path)
                with outer._lock:
                    outer.calls[split.path] += 1
                    failure = outer._failures.pop(0) if outer._failures else None
                if failure:
                    self._send(failure, _error(failure, "injected failure"))
                    return
                status, body = outer.answer(split.path, parse_qs(split.query), self.headers)
                self._send(status, body)

            def _send(self, status: int, body: bytes | str) -> None:
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                for name, value in outer.headers(data).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def fail_next(self, status: int, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    def answer(self, path: str, query: dict[str, list[str]], headers: Any) -> tuple[int, bytes]:
        raise NotImplementedError

    def headers(self, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _error(status: int, message: str) -> bytes:
    body = {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}
    return json.dumps(body).encode()


class MetadataStandIn(_StandIn):
    _BASE = "/computeMetadata/v1/instance/service-accounts/default/"

    def __init__(self, email: str = SERVICE_ACCOUNT, subject: str = SUBJECT) -> None:
        self.email = email
        self.subject = subject
        self.issued = 0
        super().__init__()

    def headers(self, body: bytes) -> dict[str, str]:
        # google-auth parses an answer as JSON only when it says so: ID tokens are plain text.
        kind = "application/json" if body[:1] in (b"{", b"[") else "text/plain"
        return {"Content-Type": kind, "Metadata-Flavor": "Google"}

    def answer(self, path: str, query: dict[str, list[str]], headers: Any) -> tuple[int, bytes]:
        if headers.get("Metadata-Flavor") != "Google":
            return 403, b"Missing required header: Metadata-Flavor"
        if path == "/":  # google-auth's ping: is there a metadata server?
            return 200, b"computeMetadata/"
        if path == self._BASE:
            account = {
                "aliases": ["default"],
                "email": self.email,
                "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
            }
            return 200, json.dumps(account).encode()
        if path == self._BASE + "token":
            self.issued += 1
            token = {
                "access_token": f"ya29.local-{self.issued}",
                "expires_in": TOKEN_SECONDS,
                "token_type": "Bearer",
            }
            return 200, json.dumps(token).encode()
        if path == self._BASE + "identity":
            audience = (query.get("audience") or [""])[0]
            if not audience:
                return 400, b"non-empty audience parameter required"
            now = int(time.time())
            claims = {
                "aud": audience,
                "azp": self.subject,
                "email": self.email,
                "email_verified": True,
                "exp": now + 3600,
                "iat": now,
                "iss": "https://accounts.google.com",
                "sub": self.subject,
            }
            return 200, unsigned_jwt(claims).encode()
        return 404, b"Not Found"


class SecretManagerStandIn(_StandIn):
    _PATH = re.compile(r"^/v1/(projects/[^/]+/secrets/([^/]+)/versions/([^/:]+)):access$")

    def __init__(self, secrets: dict[str, str] | None = None) -> None:
        self.secrets = dict(secrets or {})
        self.denied: set[str] = set()
        super().__init__()

    @property
    def url(self) -> str:
        return f"http://{self.host}/v1/"

    def answer(self, path: str, query: dict[str, list[str]], headers: Any) -> tuple[int, bytes]:
        match = self._PATH.match(path)
        if not match:
            return 404, _error(404, f"no such method: {path}")
        name, secret, _version = match.groups()
        if secret in self.denied:
            return 403, _error(403, f"Permission 'secretmanager.versions.access' denied on {name}")
        if secret not in self.secrets:
            return 404, _error(404, f"Secret Version [{name}] not found.")
        data = base64.b64encode(self.secrets[secret].encode()).decode()
        return 200, json.dumps({"name": name, "payload": {"data": data}}).encode()

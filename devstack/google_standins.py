"""Local stand-ins for three small Google endpoints, speaking their real formats over HTTP:

- the metadata server (``GCE_METADATA_HOST`` and ``GCE_METADATA_IP``, the two variables google-auth
  reads): the root that google-auth pings, the default service account's description
  (``.../service-accounts/default/?recursive=true``), its access token (``.../token``) and ID tokens
  (``.../identity?audience=A&format=full``: an unsigned JWT with ``aud``, ``sub``, ``azp``,
  ``email``, ``iat`` and ``exp``, which moto's STS takes for ``AssumeRoleWithWebIdentity``). Every
  request must carry ``Metadata-Flavor: Google`` and every answer does, as on Google's runtime.
- Secret Manager's ``versions.access`` (``GET /v1/projects/P/secrets/S/versions/V:access``),
  answering ``{"name", "payload": {"data": base64}}`` or Google's JSON errors.
- IAM Credentials' ``generateIdToken``, for the accounts a caller was granted to impersonate
  (``doctor --impersonate``).

Each counts requests (``calls``) and can be told to fail the next ones (``fail_next``).
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
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
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
                self._handle(b"")

            def do_POST(self) -> None:
                self._handle(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def _handle(self, body: bytes) -> None:
                split = urlsplit(self.path)
                with outer._lock:
                    outer.calls[split.path] += 1
                    failure = outer._failures.pop(0) if outer._failures else None
                if failure:
                    self._send(failure, _error(failure, "injected failure"))
                    return
                query = parse_qs(split.query)
                if self.command == "POST":
                    status, answer = outer.answer_post(split.path, body, self.headers)
                else:
                    status, answer = outer.answer(split.path, query, self.headers)
                self._send(status, answer)

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

    def answer_post(self, path: str, body: bytes, headers: Any) -> tuple[int, bytes]:
        return 405, _error(405, f"POST {path} is not a method here")

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
        if path == "/computeMetadata/v1/project/project-id":
            return 200, b"rds2bq-local"
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


class IamCredentialsStandIn(_StandIn):
    """IAM Credentials' ``generateIdToken``
    (``POST /v1/projects/-/serviceAccounts/EMAIL:generateIdToken``), as google-auth's impersonated
    credentials call it: the caller (any bearer token) may mint tokens for the accounts in
    ``grants``; each token is an unsigned JWT of that account, as the metadata server's are."""

    _PATH = re.compile(r"^/v1/projects/-/serviceAccounts/([^/:]+):generateIdToken$")

    def __init__(self, accounts: dict[str, str] | None = None) -> None:
        self.accounts = dict(accounts or {})  # email -> unique id
        self.grants: set[str] = set()
        super().__init__()

    @property
    def endpoint_format(self) -> str:
        """google-auth's ``iam._IAM_IDTOKEN_ENDPOINT``, pointed here."""
        return f"http://{self.host}/v1/projects/-/serviceAccounts/{{}}:generateIdToken"

    def answer(self, path: str, query: dict[str, list[str]], headers: Any) -> tuple[int, bytes]:
        return 404, _error(404, f"no such method: GET {path}")

    def answer_post(self, path: str, body: bytes, headers: Any) -> tuple[int, bytes]:
        match = self._PATH.match(path)
        if not match:
            return 404, _error(404, f"no such method: POST {path}")
        email = match.group(1)
        if not str(headers.get("Authorization", "")).startswith("Bearer "):
            return 401, _error(401, "Request had invalid authentication credentials.")
        if email not in self.grants or email not in self.accounts:
            return 403, _error(
                403,
                "Permission 'iam.serviceAccounts.getOpenIdToken' denied on resource "
                "(or it may not exist).",
            )
        request = json.loads(body or b"{}")
        now = int(time.time())
        uid = self.accounts[email]
        claims = {
            "aud": request.get("audience", ""),
            "azp": uid,
            "email": email,
            "email_verified": True,
            "exp": now + 3600,
            "iat": now,
            "iss": "https://accounts.google.com",
            "sub": uid,
        }
        return 200, json.dumps({"token": unsigned_jwt(claims)}).encode()

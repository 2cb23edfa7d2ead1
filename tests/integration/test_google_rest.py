"""The REST plumbing every Google adapter shares, over real HTTP: errors as Google sends them,
tokens from a metadata server, Secret Manager's ``versions.access``, and the keyless AWS path
(metadata ID token -> moto's STS)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from devstack.google_standins import MetadataStandIn, SecretManagerStandIn
from devstack.processes import free_port
from orchestrator.adapters.aws_session import build_session, client, google_id_token_loader
from orchestrator.adapters.google_http import ApiError, GoogleHttp, cause_status, translated
from orchestrator.adapters.google_tokens import MetadataCredentials, default_credentials
from orchestrator.adapters.secrets import SecretManagerSecrets
from orchestrator.errors import NotFoundError, PermanentError, TransientError
from orchestrator.logs import redact

pytestmark = pytest.mark.integration
CANARY = "https://hooks.slack.com/services/T0/B0/CANARY-google-rest"


@pytest.fixture
def metadata() -> Iterator[MetadataStandIn]:
    standin = MetadataStandIn()
    yield standin
    standin.stop()


@pytest.fixture
def secret_manager() -> Iterator[SecretManagerStandIn]:
    standin = SecretManagerStandIn({"slack-webhook": CANARY})
    yield standin
    standin.stop()


class _Scripted(BaseHTTPRequestHandler):
    """Answers from ``server.script``: (status, body, delay) per request, and records headers and
    the client's port (one per connection: keep-alive reuses it)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.seen.append((self.path, dict(self.headers), self.rfile.read(length)))  # type: ignore[attr-defined]
        self.server.ports.append(self.client_address[1])  # type: ignore[attr-defined]
        status, body, delay = self.server.script.pop(0)  # type: ignore[attr-defined]
        time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    server.script = []  # type: ignore[attr-defined]
    server.seen = []  # type: ignore[attr-defined]
    server.ports = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _http(server: ThreadingHTTPServer, **kwargs: Any) -> GoogleHttp:
    return GoogleHttp(f"http://127.0.0.1:{server.server_address[1]}/v1/", **kwargs)


def test_a_google_json_error_keeps_its_status_and_message(scripted: Any) -> None:
    error = {
        "error": {"code": 409, "message": "Document already exists: x", "status": "ALREADY_EXISTS"}
    }
    scripted.script.append((409, json.dumps(error).encode(), 0))

    with pytest.raises(ApiError) as caught:
        _http(scripted).call("POST", "projects/p/things", {"a": 1}, params={"id": "x", "all": True})

    assert (caught.value.code, caught.value.status) == (409, "ALREADY_EXISTS")
    assert caught.value.message == "Document already exists: x"
    assert not caught.value.transient
    path, headers, body = scripted.seen[0]
    assert path == "/v1/projects/p/things?id=x&all=true"
    assert json.loads(body) == {"a": 1}
    assert headers["Content-Type"] == "application/json"


def test_a_streaming_methods_error_list_and_a_proxy_page_are_read_too(scripted: Any) -> None:
    listed = [{"error": {"code": 503, "message": "try later", "status": "UNAVAILABLE"}}]
    scripted.script.append((503, json.dumps(listed).encode(), 0))
    scripted.script.append((502, b"<html>Bad Gateway</html>", 0))

    for expected in ("try later", "<html>Bad Gateway</html>"):
        with (
            pytest.raises(TransientError, match="Thing read it") as caught,
            translated("Thing", "read it"),
        ):
            _http(scripted).call("GET", "x")
        assert expected in str(caught.value)
        assert cause_status(caught.value) == "UNAVAILABLE"


def test_no_answer_in_time_is_deadline_exceeded_and_nothing_listening_is_unavailable(
    scripted: Any,
) -> None:
    scripted.script.append((200, b"{}", 2.0))
    started = time.monotonic()
    with pytest.raises(ApiError) as slow:
        _http(scripted, timeout=0.3).call("POST", "start")
    assert slow.value.status == "DEADLINE_EXCEEDED" and slow.value.transient
    assert time.monotonic() - started < 1.5

    with pytest.raises(ApiError) as refused:
        GoogleHttp(f"http://127.0.0.1:{free_port()}/v1/").call("GET", "x")
    assert refused.value.status == "UNAVAILABLE" and refused.value.transient


def test_the_bearer_token_is_sent_and_an_empty_answer_is_an_empty_dict(
    scripted: Any, metadata: MetadataStandIn
) -> None:
    scripted.script.append((200, b"", 0))
    creds = MetadataCredentials(metadata.host)

    assert _http(scripted, tokens=creds).call("POST", "x") == {}
    assert scripted.seen[0][1]["Authorization"] == "Bearer ya29.local-1"


def test_metadata_tokens_are_fetched_once_and_renewed_before_they_expire(
    metadata: MetadataStandIn,
) -> None:
    now = [1_000_000.0]
    creds = MetadataCredentials(metadata.host, clock=lambda: now[0])

    assert {creds.token() for _ in range(20)} == {"ya29.local-1"}
    now[0] += 3599 - 300 - 1  # just inside the early-refresh margin: still cached
    assert creds.token() == "ya29.local-1"
    now[0] += 2
    assert creds.token() == "ya29.local-2"
    assert metadata.calls["/computeMetadata/v1/instance/service-accounts/default/token"] == 2


def test_metadata_id_tokens_are_per_audience_and_cached(metadata: MetadataStandIn) -> None:
    creds = MetadataCredentials(metadata.host)

    first = creds.id_token("rds2bq-prod")
    assert creds.id_token("rds2bq-prod") == first
    other = creds.id_token("sts.amazonaws.com")

    claims = json.loads(base64.urlsafe_b64decode(first.split(".")[1] + "=="))
    assert claims["aud"] == "rds2bq-prod" and claims["sub"] == metadata.subject
    assert other != first
    assert metadata.calls["/computeMetadata/v1/instance/service-accounts/default/identity"] == 2


def test_a_metadata_server_outage_is_transient(metadata: MetadataStandIn) -> None:
    metadata.fail_next(503)
    with pytest.raises(TransientError, match="metadata server"):
        MetadataCredentials(metadata.host).token()
    with pytest.raises(TransientError, match="unreachable"):
        MetadataCredentials(f"127.0.0.1:{free_port()}").token()


def test_cloud_functions_use_the_metadata_server_and_laptops_use_adc() -> None:
    assert isinstance(default_credentials({"K_SERVICE": "poll"}), MetadataCredentials)
    assert not isinstance(default_credentials({}), MetadataCredentials)


def test_secret_manager_reads_caches_and_registers_the_value(
    secret_manager: SecretManagerStandIn, metadata: MetadataStandIn
) -> None:
    secrets = SecretManagerSecrets(
        GoogleHttp(secret_manager.url, MetadataCredentials(metadata.host)), "rds2bq-local"
    )

    assert secrets.get("slack-webhook") == CANARY
    assert secrets.get("projects/rds2bq-local/secrets/slack-webhook") == CANARY
    assert secrets.get("slack-webhook") == CANARY
    assert sum(secret_manager.calls.values()) == 2  # the short and the full name, each once
    assert CANARY not in redact(f"posting to {CANARY}")


def test_secret_manager_refusals_say_what_to_fix(secret_manager: SecretManagerStandIn) -> None:
    secrets = SecretManagerSecrets(GoogleHttp(secret_manager.url), "rds2bq-local", cache_seconds=0)

    with pytest.raises(NotFoundError, match="does not exist"):
        secrets.get("no-such-secret")
    secret_manager.denied.add("slack-webhook")
    with pytest.raises(PermanentError, match="secretAccessor"):
        secrets.get("slack-webhook")
    secret_manager.denied.clear()
    secret_manager.fail_next(503)
    with pytest.raises(TransientError, match="unavailable"):
        secrets.get("slack-webhook")
    assert secrets.get("slack-webhook") == CANARY


def test_keyless_aws_from_a_metadata_id_token(
    metadata: MetadataStandIn, moto_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a function on Google's runtime (its metadata server here) and the web-identity role
    monkeypatch.setenv("GCE_METADATA_HOST", metadata.host)
    session = build_session(
        "web-identity",
        "ap-northeast-1",
        role_arn="arn:aws:iam::123456789012:role/rds2bq-orchestrator",
        endpoint_url=moto_server.endpoint,
        token_loader=google_id_token_loader("rds2bq-prod"),
    )

    # WHEN it calls RDS twice
    rds = client(session, "rds", moto_server.endpoint)
    rds.describe_export_tasks()
    rds.describe_export_tasks()

    # THEN one ID token was fetched and exchanged for temporary AWS credentials
    assert session.get_credentials().get_frozen_credentials().access_key.startswith("ASIA")
    assert metadata.calls["/computeMetadata/v1/instance/service-accounts/default/identity"] == 1


class _UserLogin:
    """What ``AdcCredentials`` holds after ``gcloud auth application-default login``."""

    quota_project = "acme-billing"

    def token(self) -> str | None:
        return "ya29.user"


def test_a_users_login_names_its_quota_project_and_a_service_account_does_not(
    scripted: Any, metadata: MetadataStandIn
) -> None:
    scripted.script.extend([(200, b"{}", 0), (200, b"{}", 0)])

    _http(scripted, tokens=_UserLogin()).call("GET", "x")
    _http(scripted, tokens=MetadataCredentials(metadata.host)).call("GET", "x")

    user, account = (headers for _, headers, _ in scripted.seen)
    assert user["x-goog-user-project"] == "acme-billing"
    assert "x-goog-user-project" not in account


def test_a_connection_is_reused_but_not_after_an_idle_spell(
    scripted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the process-wide pool and a clock we move
    now = [1_000.0]
    monkeypatch.setattr("orchestrator.adapters.google_http._clock", lambda: now[0])
    monkeypatch.setattr("orchestrator.adapters.google_http._POOL", None)
    scripted.script.extend([(200, b"{}", 0)] * 3)
    http = _http(scripted)

    # WHEN two calls follow each other, then one comes after longer than a poll interval's idle
    http.call("GET", "a")
    now[0] += 5
    http.call("GET", "b")
    now[0] += 61
    http.call("GET", "c")

    # THEN the second reused the first's connection, and the third opened a fresh one
    first, second, third = scripted.ports
    assert first == second
    assert third != first


def test_every_adapter_builds_its_client_one_way() -> None:
    from orchestrator.adapters.google_http import FixedToken, google_api

    prod = "https://pubsub.googleapis.com/v1/"
    assert google_api(prod, "127.0.0.1:8085", "v1/").base_url == "http://127.0.0.1:8085/v1/"
    assert google_api(prod, "http://127.0.0.1:9/v1", "v1/").base_url == "http://127.0.0.1:9/v1/"
    local = google_api(prod, "http://h:1/", "bigquery/v2/", FixedToken("owner"))
    assert (local.base_url, local._tokens.token()) == ("http://h:1/bigquery/v2/", "owner")
    cloud = google_api(prod, environ={"K_SERVICE": "poll"})
    assert cloud.base_url == prod and isinstance(cloud._tokens, MetadataCredentials)

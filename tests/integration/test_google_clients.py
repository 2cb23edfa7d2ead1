"""The official Google clients against the local stand-ins, over real HTTP: Secret Manager's
``AccessSecretVersion`` on the REST transport, and the keyless AWS path (google-auth's ID token
from a metadata server, exchanged with moto's STS)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devstack.google_standins import IamCredentialsStandIn, MetadataStandIn, SecretManagerStandIn
from orchestrator.adapters.aws_session import build_session, client, google_id_token_loader
from orchestrator.adapters.probes import unverified_claims
from orchestrator.adapters.secrets import SecretManagerSecrets, secret_manager
from orchestrator.core.errors import NotFoundError, PermanentError, TransientError
from orchestrator.logs import redact

pytestmark = pytest.mark.integration
CANARY = "https://hooks.slack.com/services/T0/B0/CANARY-google-clients"
IDENTITY = "/computeMetadata/v1/instance/service-accounts/default/identity"


@pytest.fixture
def metadata(monkeypatch: pytest.MonkeyPatch) -> Iterator[MetadataStandIn]:
    """A metadata server, where google-auth looks for one: GCE_METADATA_IP (its ping, read per
    call) and GCE_METADATA_HOST (its calls; read once when google-auth is imported, so the
    module's copy is set too)."""
    from google.auth.compute_engine import _metadata

    standin = MetadataStandIn()
    monkeypatch.setenv("GCE_METADATA_IP", standin.host)
    monkeypatch.setenv("GCE_METADATA_HOST", standin.host)
    monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", standin.host)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    yield standin
    standin.stop()


@pytest.fixture
def secret_manager_standin() -> Iterator[SecretManagerStandIn]:
    standin = SecretManagerStandIn({"slack-webhook": CANARY})
    yield standin
    standin.stop()


def test_secret_manager_reads_caches_and_registers_the_value(
    secret_manager_standin: SecretManagerStandIn,
) -> None:
    secrets = secret_manager("rds2bq-local", secret_manager_standin.host)

    assert secrets.get("slack-webhook") == CANARY
    assert secrets.get("projects/rds2bq-local/secrets/slack-webhook") == CANARY
    assert secrets.get("slack-webhook") == CANARY
    assert sum(secret_manager_standin.calls.values()) == 2  # the short and the full name, once
    assert CANARY not in redact(f"posting to {CANARY}")


def test_secret_manager_refusals_say_what_to_fix(
    secret_manager_standin: SecretManagerStandIn,
) -> None:
    client = secret_manager("rds2bq-local", secret_manager_standin.host)._client
    secrets = SecretManagerSecrets(client, "rds2bq-local", cache_seconds=0, retry_seconds=1.0)

    with pytest.raises(NotFoundError, match="does not exist"):
        secrets.get("no-such-secret")
    secret_manager_standin.denied.add("slack-webhook")
    with pytest.raises(PermanentError, match="secretAccessor"):
        secrets.get("slack-webhook")
    secret_manager_standin.denied.clear()
    secret_manager_standin.fail_next(503)  # a blip: the client retries it
    assert secrets.get("slack-webhook") == CANARY
    secret_manager_standin.fail_next(503, times=1000)  # an outage: bounded, then transient
    with pytest.raises(TransientError, match="unavailable"):
        secrets.get("slack-webhook")


def test_a_metadata_id_token_carries_what_aws_trust_policies_pin(
    metadata: MetadataStandIn,
) -> None:
    token = google_id_token_loader("rds2bq-prod")()

    claims = unverified_claims(token)
    assert claims["aud"] == "rds2bq-prod"
    assert claims["azp"] == claims["sub"] == metadata.subject
    assert unverified_claims("not a token") == {}


def test_keyless_aws_from_a_metadata_id_token(metadata: MetadataStandIn, moto_server: Any) -> None:
    # GIVEN a function on Google's runtime (its metadata server here) and the web-identity role
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
    assert metadata.calls[IDENTITY] == 1


POLL_ACCOUNT = "rds2bq-poll@rds2bq-local.iam.gserviceaccount.com"
POLL_ID = "104857600000000000042"


@pytest.fixture
def iam(metadata: MetadataStandIn, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """IAM Credentials where google-auth's impersonated credentials call it (a module constant:
    it has no override for ID tokens), and the poll function's account."""
    from google.auth import iam as google_iam

    standin = IamCredentialsStandIn({POLL_ACCOUNT: POLL_ID})
    monkeypatch.setattr(google_iam, "_IAM_IDTOKEN_ENDPOINT", standin.endpoint_format)
    yield standin
    standin.stop()


def doctor_context(moto_server: Any, impersonate: str) -> Any:
    from orchestrator.wiring import Wiring
    from tests.integration.conftest import make_settings

    settings = make_settings(
        aws_auth="web-identity",
        aws_role_arn="arn:aws:iam::123456789012:role/rds2bq-orchestrator",
        aws_endpoint_url=moto_server.endpoint,
    )
    return Wiring(settings).doctor_context(impersonate=impersonate)


def test_doctor_tries_web_identity_as_the_function_it_impersonates(
    iam: Any, moto_server: Any
) -> None:
    from orchestrator.app import doctor

    # GIVEN an operator who may mint the poll account's ID tokens
    iam.grants.add(POLL_ACCOUNT)

    # WHEN doctor checks the web-identity path as that account
    ctx = doctor_context(moto_server, POLL_ACCOUNT)
    result = doctor.check_aws_credentials(ctx)

    # THEN it assumed the role with a token of the poll account (its email and unique id)
    assert result.outcome is doctor.Outcome.PASS, result
    assert f"as {POLL_ACCOUNT}" in result.detail and "AWS sees" in result.detail
    claims = unverified_claims(ctx.id_token())
    assert (claims["email"], claims["azp"], claims["sub"]) == (POLL_ACCOUNT, POLL_ID, POLL_ID)
    assert claims["aud"] == ctx.settings.aws_audience


def test_doctor_names_the_grant_when_impersonation_is_refused(iam: Any, moto_server: Any) -> None:
    from orchestrator.app import doctor

    # GIVEN an operator without roles/iam.serviceAccountTokenCreator on the poll account
    result = doctor.check_aws_credentials(doctor_context(moto_server, POLL_ACCOUNT))

    # THEN the check fails naming IAM's refusal and the grant that fixes it
    assert result.failed
    assert "getOpenIdToken" in result.detail and POLL_ACCOUNT in result.detail
    assert "roles/iam.serviceAccountTokenCreator" in result.fix and "impersonators" in result.fix

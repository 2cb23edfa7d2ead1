"""boto3 sessions for the three ways of reaching AWS.

- ``web-identity`` (default, keyless): a Google ID token for the configured audience is exchanged
  with ``AssumeRoleWithWebIdentity``. botocore's own fetcher caches the credentials and refreshes
  them shortly before expiry, so a warm instance calls STS about once an hour, never per request.
- ``static``: an IAM user's keys from Secret Manager, optionally chained with ``AssumeRole``.
- ``default``: boto3's default chain (local stack, developer machines).

``AWS_ENDPOINT_URL`` (the local stack) applies to every client, STS included.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    AssumeRoleWithWebIdentityCredentialFetcher,
    Credentials,
    DeferredRefreshableCredentials,
)

from orchestrator.core.errors import (
    AccessDeniedError,
    ConfigError,
    PermanentError,
    TransientError,
)
from orchestrator.core.redaction import redact
from orchestrator.logs import register_secret

SESSION_NAME = "rds2bq"
CLIENT_CONFIG = Config(
    connect_timeout=10, read_timeout=30, retries={"max_attempts": 4, "mode": "standard"}
)
# S3's: the exporter reads as many Parquet footers at once as its client has connections
# (``AwsExporter.read_exported_tables``); botocore's default is 10.
S3_CONFIG = CLIENT_CONFIG.merge(Config(max_pool_connections=32))


def google_id_token_loader(audience: str) -> Callable[[], str]:
    """A loader of Google ID tokens for ``audience``: the metadata server on Cloud Functions (or
    wherever ``GCE_METADATA_HOST`` points: the local stack), a service-account credentials file
    elsewhere (``GOOGLE_APPLICATION_CREDENTIALS``). botocore calls it only when it refreshes the
    role's credentials, about once an hour."""

    def load() -> str:
        import google.auth.transport.requests
        import google.oauth2.id_token
        from google.auth import exceptions as auth_exc

        try:
            token = google.oauth2.id_token.fetch_id_token(  # type: ignore[no-untyped-call]
                google.auth.transport.requests.Request(), audience
            )
        except auth_exc.TransportError as exc:
            raise TransientError(f"Google ID token for {audience}: {exc}") from exc
        except auth_exc.GoogleAuthError as exc:
            raise PermanentError(f"no Google ID token for {audience} ({exc})") from exc
        return str(token)

    return load


def impersonated_id_token_loader(service_account: str, audience: str) -> Callable[[], str]:
    """A loader of ID tokens for ``audience`` minted *as* ``service_account`` (IAM Credentials
    ``generateIdToken``), from the caller's own Application Default Credentials: what doctor uses
    to try the web-identity path exactly as a function runs it. The caller needs
    roles/iam.serviceAccountTokenCreator on that account."""

    def load() -> str:
        import google.auth
        import google.auth.transport.requests
        from google.auth import exceptions as auth_exc
        from google.auth import impersonated_credentials

        request = google.auth.transport.requests.Request()
        try:
            source, _ = google.auth.default(
                scopes=["https://www.googleapis.com/auth/cloud-platform"]
            )
            target = impersonated_credentials.Credentials(  # type: ignore[no-untyped-call]
                source_credentials=source,
                target_principal=service_account,
                target_scopes=["https://www.googleapis.com/auth/cloud-platform"],
            )
            minted = impersonated_credentials.IDTokenCredentials(  # type: ignore[no-untyped-call]
                target, target_audience=audience, include_email=True
            )
            minted.refresh(request)
        except auth_exc.TransportError as exc:
            raise TransientError(f"ID token as {service_account}: {exc}") from exc
        except auth_exc.GoogleAuthError as exc:
            raise AccessDeniedError(
                f"no ID token as {service_account}: {redact(_first_line(exc))}"
            ) from exc
        return str(minted.token)

    return load


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def build_session(
    auth: str,
    region: str,
    role_arn: str = "",
    endpoint_url: str = "",
    token_loader: Callable[[], str] | None = None,
    static_keys: Callable[[], str] | None = None,
) -> boto3.Session:
    core = botocore.session.Session()
    core.set_config_variable("region", region)
    if auth != "default":
        _set_credentials(core, auth, region, role_arn, endpoint_url, token_loader, static_keys)
    return boto3.Session(botocore_session=core, region_name=region)


def _set_credentials(
    core: botocore.session.Session,
    auth: str,
    region: str,
    role_arn: str,
    endpoint_url: str,
    token_loader: Callable[[], str] | None,
    static_keys: Callable[[], str] | None,
) -> None:
    create_client = partial(
        core.create_client, region_name=region, endpoint_url=endpoint_url or None
    )
    if auth == "web-identity":
        if token_loader is None:
            raise ConfigError(["web-identity needs a Google ID token loader"])
        fetcher = AssumeRoleWithWebIdentityCredentialFetcher(
            client_creator=create_client,
            web_identity_token_loader=token_loader,
            role_arn=role_arn,
            extra_args={"RoleSessionName": SESSION_NAME},
        )
        core._credentials = DeferredRefreshableCredentials(
            refresh_using=fetcher.fetch_credentials, method="assume-role-with-web-identity"
        )
    elif auth == "static":
        if static_keys is None:
            raise ConfigError(["static AWS auth needs the keys secret"])
        keys = _parse_keys(static_keys())
        base = Credentials(keys["access_key_id"], keys["secret_access_key"])
        if role_arn:
            chained = AssumeRoleCredentialFetcher(
                client_creator=create_client,
                source_credentials=base,
                role_arn=role_arn,
                extra_args={"RoleSessionName": SESSION_NAME},
            )
            core._credentials = DeferredRefreshableCredentials(
                refresh_using=chained.fetch_credentials, method="assume-role"
            )
        else:
            core._credentials = base
    else:
        raise ConfigError([f"RDS2BQ_AWS_AUTH={auth!r} is not supported"])


def _parse_keys(text: str) -> dict[str, str]:
    try:
        keys: Any = json.loads(text)
    except ValueError:
        keys = None
    if (
        not isinstance(keys, dict)
        or not keys.get("access_key_id")
        or not keys.get("secret_access_key")
    ):
        # Never echo the secret's content: say only what shape it must have.
        raise ConfigError(
            ["the AWS keys secret must be JSON with access_key_id and secret_access_key"]
        )
    register_secret(str(keys["secret_access_key"]))
    return {
        "access_key_id": str(keys["access_key_id"]),
        "secret_access_key": str(keys["secret_access_key"]),
    }


def client(session: boto3.Session, service: str, endpoint_url: str = "") -> Any:
    """One client of ``session``, with our timeouts and retry policy (build it once per instance:
    a client is thread-safe, a session is not)."""
    config = S3_CONFIG if service == "s3" else CLIENT_CONFIG
    return session.client(service, endpoint_url=endpoint_url or None, config=config)

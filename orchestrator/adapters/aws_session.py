"""botocore sessions for the three ways of reaching AWS (botocore alone: boto3 adds import time
and nothing we use).

- ``web-identity`` (default, keyless): a Google ID token for the configured audience is exchanged
  with ``AssumeRoleWithWebIdentity``. botocore's own fetcher caches the credentials and refreshes
  them shortly before expiry, so a warm instance calls STS about once an hour, never per request.
- ``static``: an IAM user's keys from Secret Manager, optionally chained with ``AssumeRole``.
- ``default``: botocore's default chain (local stack, developer machines).

``AWS_ENDPOINT_URL`` (the local stack) applies to every client, STS included.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    AssumeRoleWithWebIdentityCredentialFetcher,
    Credentials,
    DeferredRefreshableCredentials,
)

from orchestrator.errors import ConfigError
from orchestrator.logs import register_secret

SESSION_NAME = "rds2bq"
CLIENT_CONFIG = Config(
    connect_timeout=10, read_timeout=30, retries={"max_attempts": 4, "mode": "standard"}
)


def google_id_token_loader(audience: str) -> Callable[[], str]:
    """A loader of Google ID tokens for ``audience``: the metadata server on Cloud Functions, a
    service-account (or impersonated) credentials file elsewhere (``google_tokens``)."""

    def load() -> str:
        from orchestrator.adapters.google_tokens import default_credentials

        return default_credentials().id_token(audience)

    return load


def build_session(
    auth: str,
    region: str,
    role_arn: str = "",
    endpoint_url: str = "",
    token_loader: Callable[[], str] | None = None,
    static_keys: Callable[[], str] | None = None,
) -> botocore.session.Session:
    core = botocore.session.Session()
    core.set_config_variable("region", region)
    if auth == "default":
        return core
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
    return core


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


def client(session: botocore.session.Session, service: str, endpoint_url: str = "") -> Any:
    return session.create_client(service, endpoint_url=endpoint_url or None, config=CLIENT_CONFIG)

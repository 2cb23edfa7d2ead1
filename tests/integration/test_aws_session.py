"""AWS credentials against moto's STS over HTTP: keyless by default, refreshed, never per call."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.adapters.aws_session import build_session, client
from orchestrator.core.errors import ConfigError

pytestmark = pytest.mark.integration
ROLE = "arn:aws:iam::123456789012:role/rds2bq-orchestrator"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJyZHMyYnEiLCJhenAiOiIxMjM0In0.c2lnbmF0dXJl"


class TokenLoader:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return TOKEN


def test_web_identity_exchanges_one_token_for_many_calls(moto_server: Any) -> None:
    loader = TokenLoader()
    session = build_session(
        "web-identity",
        "ap-northeast-1",
        role_arn=ROLE,
        endpoint_url=moto_server.endpoint,
        token_loader=loader,
    )
    rds = client(session, "rds", moto_server.endpoint)
    for _ in range(5):
        rds.describe_export_tasks()
    assert loader.calls == 1  # one STS exchange for the five calls
    credentials = session.get_credentials()
    assert credentials.method == "assume-role-with-web-identity"
    assert credentials.get_frozen_credentials().access_key.startswith("ASIA")


def test_web_identity_refreshes_before_expiry(
    moto_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loader = TokenLoader()
    session = build_session(
        "web-identity",
        "ap-northeast-1",
        role_arn=ROLE,
        endpoint_url=moto_server.endpoint,
        token_loader=loader,
    )
    credentials = session.get_credentials()
    credentials.get_frozen_credentials()
    assert loader.calls == 1
    # GIVEN 55 minutes later: moto's credentials last an hour, botocore refreshes inside the
    # last 15 minutes (the fetcher) and 10 minutes (the credentials)
    import botocore.credentials

    later = datetime.now(UTC) + timedelta(minutes=55)
    monkeypatch.setattr(botocore.credentials, "_local_now", lambda: later)
    credentials._time_fetcher = lambda: later
    credentials.get_frozen_credentials()
    assert loader.calls == 2  # WHEN used again THEN a new token was exchanged


def test_static_keys_from_the_secret_optionally_chained(moto_server: Any) -> None:
    keys = json.dumps(
        {"access_key_id": "AKIASTATIC0000000001", "secret_access_key": "static-secret-value-123456"}
    )
    plain = build_session(
        "static", "ap-northeast-1", endpoint_url=moto_server.endpoint, static_keys=lambda: keys
    )
    assert plain.get_credentials().access_key == "AKIASTATIC0000000001"
    chained = build_session(
        "static",
        "ap-northeast-1",
        role_arn=ROLE,
        endpoint_url=moto_server.endpoint,
        static_keys=lambda: keys,
    )
    frozen = chained.get_credentials().get_frozen_credentials()
    assert frozen.access_key != "AKIASTATIC0000000001" and frozen.token


def test_a_malformed_keys_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        build_session("static", "ap-northeast-1", static_keys=lambda: "hunter2-secret-text")
    assert "hunter2" not in str(caught.value)

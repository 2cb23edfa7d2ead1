"""Settings: every problem reported at once, each naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import FIELDS, load_settings, parse_tables
from orchestrator.core.errors import ConfigError

VALID = {
    "RDS2BQ_AWS_REGION": "ap-northeast-1",
    "RDS2BQ_SOURCE_ID": "shop-aurora",
    "RDS2BQ_S3_BUCKET": "acme-exports",
    "RDS2BQ_KMS_KEY_ID": "arn:aws:kms:r:1:key/k",
    "RDS2BQ_EXPORT_ROLE_ARN": "arn:aws:iam::1:role/export",
    "RDS2BQ_AWS_ROLE_ARN": "arn:aws:iam::1:role/orch",
    "RDS2BQ_GCP_PROJECT": "acme",
    "RDS2BQ_BQ_DATASET": "rds_shop",
}


def load(env: dict[str, str], tables: str = "shop.orders\n") -> object:
    return load_settings(env, read_text=lambda _: tables)


def test_valid_settings_with_defaults() -> None:
    s = load(VALID, "# comment\n\nshop.orders  # the big one\nshop.customers\n")
    assert [t.key for t in s.tables] == ["shop.orders", "shop.customers"]
    assert s.env == "prod" and s.source_kind == "cluster" and s.aws_auth == "web-identity"
    assert s.visibility_margin_minutes == 5 and s.fanout_concurrency == 16
    assert str(s.timezone) == "Asia/Tokyo"
    assert s.topic_path == "projects/acme/topics/rds2bq-events"


def test_every_problem_is_reported_at_once_naming_its_key() -> None:
    env = {
        **VALID,
        "RDS2BQ_ENV": "Prod!",
        "RDS2BQ_SOURCE_KIND": "instance",
        "RDS2BQ_S3_PREFIX": "exports/",
        "RDS2BQ_FANOUT_CONCURRENCY": "many",
        "RDS2BQ_TIMEZONE": "Mars/Olympus",
        "RDS2BQ_KMS_KEY_ID": "alias/x",
    }
    del env["RDS2BQ_BQ_DATASET"]
    with pytest.raises(ConfigError) as caught:
        load(env, "shop.orders\nshop.bad-name\nshop.orders\n")
    text = "\n".join(caught.value.problems)
    for key in (
        "RDS2BQ_ENV",
        "RDS2BQ_SOURCE_KIND",
        "RDS2BQ_S3_PREFIX",
        "RDS2BQ_FANOUT_CONCURRENCY",
        "RDS2BQ_TIMEZONE",
        "RDS2BQ_KMS_KEY_ID",
        "RDS2BQ_BQ_DATASET",
        "RDS2BQ_TABLES_FILE line 2",
        "RDS2BQ_TABLES_FILE line 3",
    ):
        assert key in text
    assert len(caught.value.problems) == 9


def test_auth_mode_requirements() -> None:
    env = {**VALID, "RDS2BQ_AWS_AUTH": "static"}
    with pytest.raises(ConfigError, match="RDS2BQ_AWS_KEYS_SECRET"):
        load(env)
    no_role = dict(VALID)
    del no_role["RDS2BQ_AWS_ROLE_ARN"]
    with pytest.raises(ConfigError, match="RDS2BQ_AWS_ROLE_ARN"):
        load(no_role)
    assert load({**no_role, "RDS2BQ_AWS_AUTH": "default"})


def test_unreadable_tables_file_is_named(tmp_path: Path) -> None:
    env = {**VALID, "RDS2BQ_TABLES_FILE": str(tmp_path / "missing.txt")}
    with pytest.raises(ConfigError, match="RDS2BQ_TABLES_FILE"):
        load_settings(env)


def test_tables_file_rules() -> None:
    tables, problems = parse_tables("app.public.users\napp.public.orders\n")
    assert [t.export_dir for t in tables] == ["app/public.users", "app/public.orders"]
    assert problems == []
    _, problems = parse_tables("shop.orders\napp.public.users\n")
    assert any("mixes" in p for p in problems)
    _, problems = parse_tables("# nothing\n")
    assert problems == ["lists no table"]
    _, problems = parse_tables("a.b.c.d\n")
    assert "not db.table" in problems[0]


def test_every_field_has_help_and_an_example() -> None:
    for f in FIELDS:
        assert f.help and f.example, f.name
        assert f.env.startswith("RDS2BQ_")

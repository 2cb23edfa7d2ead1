"""Pure sync planning: desired configs, drift, ownership, prune, rendering, key parsing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from devstack.dts import compile_data_path, render_template
from orchestrator.app.ports import AccessKeys, TransferConfig
from orchestrator.app.sync import (
    Drift,
    SyncPlan,
    apply,
    data_path_for,
    desired_configs,
    parse_access_keys,
    plan,
    render_plan,
    render_result,
)
from orchestrator.config import Settings, load_settings
from orchestrator.core.errors import PermanentError, TransientError
from orchestrator.core.keys import display_name_for, export_task_id, table_key_of
from tests.fakes import InMemoryTables

KEY_ID = "AKIACURRENT00000001"


def settings(tables: str = "shop.orders\nshop.orders_items\n", **env: str) -> Settings:
    environ = {
        "RDS2BQ_AWS_REGION": "ap-northeast-1",
        "RDS2BQ_SOURCE_ID": "shop-aurora",
        "RDS2BQ_S3_BUCKET": "acme-rds-exports",
        "RDS2BQ_KMS_KEY_ID": "arn:aws:kms:ap-northeast-1:123456789012:key/k",
        "RDS2BQ_EXPORT_ROLE_ARN": "arn:aws:iam::123456789012:role/rds2bq-export",
        "RDS2BQ_GCP_PROJECT": "acme",
        "RDS2BQ_BQ_DATASET": "rds_shop",
        "RDS2BQ_AWS_AUTH": "default",
    }
    environ.update({f"RDS2BQ_{k.upper()}": v for k, v in env.items()})
    return load_settings(environ, read_text=lambda _path: tables)


def actual(config: TransferConfig, n: int = 1, **changes: object) -> TransferConfig:
    """What DTS would list for a desired config that was created with the current keys."""
    created = replace(
        config,
        name=f"projects/acme/locations/asia-northeast1/transferConfigs/{n}",
        access_key_id=KEY_ID,
    )
    return replace(created, **changes)


# --------------------------------------------------------------------------- desired configs


def test_desired_configs_follow_the_settings() -> None:
    desired = desired_configs(settings())
    assert list(desired) == ["shop.orders", "shop.orders_items"]
    orders = desired["shop.orders"]
    assert orders.display_name == "rds2bq-prod:shop.orders"
    assert orders.destination_table == "shop__orders"
    assert orders.data_path == (
        's3://acme-rds-exports/rds2bq/rds2bq-prod-{run_time|"%Y%m%d%H%M%S"}/shop/shop.orders/'
        "*.parquet"
    )
    assert orders.notification_topic == "projects/acme/topics/rds2bq-events"
    assert (orders.file_format, orders.write_disposition, orders.auto_scheduling_disabled) == (
        "PARQUET",
        "WRITE_TRUNCATE",
        True,
    )
    assert orders.decimal_target_types == ("NUMERIC", "BIGNUMERIC", "STRING")
    assert orders.access_key_id == ""  # keys never live in a desired config


def test_postgres_tables_use_the_schema_folder() -> None:
    config = desired_configs(settings("app.public.users\n"))["app.public.users"]
    assert config.data_path.endswith("/app/public.users/*.parquet")
    assert config.destination_table == "app__public__users"


def test_an_empty_prefix_leaves_no_empty_segment() -> None:
    s = settings(s3_prefix="")
    assert data_path_for(s, s.tables[0]).startswith("s3://acme-rds-exports/rds2bq-prod-{run_time")


@pytest.mark.parametrize(
    "run_time",
    [
        datetime(2026, 11, 26, 15, 0, tzinfo=UTC),  # 00:00 Tokyo, previous UTC day
        datetime(2026, 11, 26, 23, 59, tzinfo=UTC),  # 08:59 Tokyo
        datetime(2026, 12, 31, 15, 0, tzinfo=UTC),  # New Year in Tokyo, still 2026 in UTC
    ],
)
def test_the_data_path_resolves_to_exactly_this_runs_export(run_time: datetime) -> None:
    s = settings()
    path = render_template(desired_configs(s)["shop.orders"].data_path, run_time)
    pattern = compile_data_path(path)
    root = f"rds2bq/{export_task_id('prod', run_time)}"
    assert pattern.prefix == f"{root}/shop/shop.orders/"
    assert pattern.matches(f"{root}/shop/shop.orders/3/part-00000-u-c000.gz.parquet")
    assert pattern.matches(f"{root}/shop/shop.orders/part-00000-u.parquet")
    assert not pattern.matches(f"{root}/shop/shop.orders_items/1/part-00000-u.gz.parquet")
    assert not pattern.matches(f"{root}/shop/shop.orders/1/_SUCCESS")


def test_ownership_is_by_display_name_and_env() -> None:
    assert display_name_for("prod", "shop.orders") == "rds2bq-prod:shop.orders"
    assert table_key_of("rds2bq-prod:shop.orders", "prod") == "shop.orders"
    assert table_key_of("rds2bq-prodx:shop.orders", "prod") is None
    assert table_key_of("rds2bq-staging:shop.orders", "prod") is None
    assert table_key_of("Nightly CSV load", "prod") is None
    assert table_key_of("rds2bq-prod:", "prod") is None


# --------------------------------------------------------------------------- planning


def test_nothing_there_creates_everything() -> None:
    desired = desired_configs(settings())
    result = plan(
        desired,
        [],
        KEY_ID,
        prune=False,
        env="prod",
        missing_tables=["shop__orders_items", "shop__orders"],
    )
    assert [c.table_key for c in result.create] == ["shop.orders", "shop.orders_items"]
    assert result.create_tables == ("shop__orders", "shop__orders_items")
    assert not result.is_noop


def test_what_matches_is_unchanged_and_the_plan_is_a_noop() -> None:
    desired = desired_configs(settings())
    existing = [actual(c, i) for i, c in enumerate(desired.values())]
    result = plan(desired, existing, KEY_ID, prune=True, env="prod")
    assert result == SyncPlan(unchanged=tuple(existing))
    assert result.is_noop


@pytest.mark.parametrize(
    ("changes", "drift"),
    [
        ({"data_path": "s3://acme-rds-exports/old/*.parquet"}, Drift.DATA_PATH),
        ({"notification_topic": "projects/acme/topics/old"}, Drift.TOPIC),
        ({"file_format": "CSV"}, Drift.FILE_FORMAT),
        ({"write_disposition": "WRITE_APPEND"}, Drift.WRITE_DISPOSITION),
        ({"decimal_target_types": ()}, Drift.DECIMAL_TARGET_TYPES),  # made before the param
        ({"decimal_target_types": ("BIGNUMERIC", "NUMERIC")}, Drift.DECIMAL_TARGET_TYPES),
        ({"auto_scheduling_disabled": False}, Drift.AUTO_SCHEDULING),
        ({"destination_table": "orders"}, Drift.DESTINATION_TABLE),
        ({"access_key_id": "AKIAOLDKEY000000001"}, Drift.ACCESS_KEY),
    ],
)
def test_each_drifted_field_is_named(changes: dict[str, object], drift: Drift) -> None:
    desired = desired_configs(settings("shop.orders\n"))
    current = actual(desired["shop.orders"], **changes)
    result = plan(desired, [current], KEY_ID, prune=False, env="prod")
    [update] = result.update
    assert update.drift == (drift,)
    assert update.current is current and update.desired == desired["shop.orders"]


def test_not_ours_is_counted_and_never_touched_even_with_prune() -> None:
    desired = desired_configs(settings("shop.orders\n"))
    foreign = [
        actual(desired["shop.orders"], 7, display_name="rds2bq-staging:shop.orders"),
        actual(desired["shop.orders"], 8, display_name="Nightly CSV load", table_key=""),
    ]
    result = plan(desired, foreign, KEY_ID, prune=True, env="prod")
    assert result.unmanaged == 2
    assert not result.delete and not result.update and len(result.create) == 1


def test_removed_tables_are_kept_unless_pruned() -> None:
    before = desired_configs(settings())
    existing = [actual(c, i) for i, c in enumerate(before.values())]
    after = desired_configs(settings("shop.orders\n"))
    kept = plan(after, existing, KEY_ID, prune=False, env="prod")
    assert [r.config.table_key for r in kept.kept] == ["shop.orders_items"]
    assert not kept.delete and kept.is_noop
    pruned = plan(after, existing, KEY_ID, prune=True, env="prod")
    assert [r.config.table_key for r in pruned.delete] == ["shop.orders_items"]
    assert pruned.delete[0].reason == "table not in the tables file"


def test_a_duplicate_keeps_the_first_by_name() -> None:
    desired = desired_configs(settings("shop.orders\n"))
    first, second = actual(desired["shop.orders"], 1), actual(desired["shop.orders"], 2)
    result = plan(desired, [second, first], KEY_ID, prune=True, env="prod")
    assert result.unchanged == (first,)
    assert [r.config for r in result.delete] == [second]
    assert result.delete[0].reason == f"duplicate of {first.name}"


# --------------------------------------------------------------------------- rendering, keys


def test_render_plan_names_fields_never_key_values() -> None:
    desired = desired_configs(settings())
    rotated = [
        actual(c, i, access_key_id="AKIACANARYOLD000001") for i, c in enumerate(desired.values())
    ]
    result = plan(
        desired,
        rotated[:1],
        "AKIACANARYNEW000001",
        prune=False,
        env="prod",
        missing_tables=["shop__orders_items"],
    )
    text = render_plan(result) + repr(result)
    assert "~ update  shop.orders: access key (rotated)" in text
    assert "+ create  shop.orders_items -> shop__orders_items" in text
    assert "AKIACANARY" not in text
    assert render_plan(SyncPlan()).splitlines()[-1].startswith("Nothing to do")


def test_access_keys_parse_and_errors_never_quote_the_secret() -> None:
    keys = parse_access_keys(
        '{"access_key_id": "AKIAX", "secret_access_key": "s3cr3t-value"}', "dts-keys"
    )
    assert (keys.access_key_id, keys.secret_access_key) == ("AKIAX", "s3cr3t-value")
    assert "s3cr3t" not in repr(keys) and "AKIAX" not in repr(keys)
    bad = [
        '{"access_key_id": "AKIAX", "secret_access_key": "s3cr3t-value"',
        '["s3cr3t-value"]',
        '{"access_key_id": "AKIAX", "secret_access_key": ""}',
    ]
    for text in bad:
        with pytest.raises(PermanentError, match="dts-keys") as caught:
            parse_access_keys(text, "dts-keys")
        assert "s3cr3t" not in str(caught.value) and caught.value.__cause__ is None
    with pytest.raises(PermanentError, match="lacks secret_access_key"):
        parse_access_keys('{"access_key_id": "AKIAX"}', "dts-keys")


# --------------------------------------------------------------------------- applying


class InMemoryStore:
    """A fake ConfigStore that keeps configs and can refuse one table's create."""

    def __init__(self, refuse: str = "", transient: bool = False) -> None:
        self.configs: dict[str, TransferConfig] = {}
        self.refuse = refuse
        self.transient = transient
        self.keys_seen: list[AccessKeys] = []

    def list_configs(self) -> list[TransferConfig]:
        return list(self.configs.values())

    def create_config(self, config: TransferConfig, keys: AccessKeys) -> TransferConfig:
        if config.table_key == self.refuse:
            raise (TransientError if self.transient else PermanentError)("refused by DTS")
        self.keys_seen.append(keys)
        created = replace(config, name=f"cfg/{len(self.configs)}", access_key_id=keys.access_key_id)
        self.configs[created.name] = created
        return created

    def update_config(self, name: str, config: TransferConfig, keys: AccessKeys) -> TransferConfig:
        self.configs[name] = replace(config, name=name, access_key_id=keys.access_key_id)
        return self.configs[name]

    def delete_config(self, config: TransferConfig) -> None:
        del self.configs[config.name]


@pytest.mark.parametrize("transient", [False, True])
def test_apply_isolates_failures_and_converges(transient: bool) -> None:
    keys = AccessKeys(KEY_ID, "secret")
    desired = desired_configs(settings())
    store, tables = InMemoryStore(refuse="shop.orders", transient=transient), InMemoryTables()
    first = plan(
        desired,
        store.list_configs(),
        KEY_ID,
        False,
        env="prod",
        missing_tables=tables.missing(["shop__orders", "shop__orders_items"]),
    )
    result = apply(first, store, keys, tables)
    assert result.created == ["shop.orders_items"] and not result.ok
    assert "create shop.orders" in render_result(result)
    store.refuse = ""
    second = plan(
        desired,
        store.list_configs(),
        KEY_ID,
        False,
        env="prod",
        missing_tables=tables.missing(["shop__orders", "shop__orders_items"]),
    )
    assert [c.table_key for c in second.create] == ["shop.orders"]
    assert apply(second, store, keys, tables).ok
    assert plan(desired, store.list_configs(), KEY_ID, False, env="prod").is_noop

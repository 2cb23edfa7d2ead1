"""``sync`` end to end: the DTS and BigQuery adapters on their REST stand-ins, keys from the env
secrets backend; hand edits made with the official DTS client."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from devstack.bigquery_standin import BigQueryStandin
from devstack.dts import DtsStandin
from orchestrator.adapters.bigquery import build_destination_tables
from orchestrator.adapters.dts import DtsTransfers, build_transfer_runner
from orchestrator.adapters.secrets import EnvSecrets
from orchestrator.app.ports import ExportedTable
from orchestrator.app.sync import Drift, SyncOutcome, render_plan, render_result, sync
from orchestrator.app.sync_schemas import SchemaSource
from orchestrator.config import Settings
from orchestrator.core.errors import PermanentError
from orchestrator.core.model import Run
from orchestrator.core.schema import Column
from tests.conftest import GCP_PROJECT
from tests.fakes import FakeExporter, InMemoryLedger
from tests.integration.conftest import make_settings

pytestmark = pytest.mark.integration

TABLES = "shop.orders\nshop.orders_items\n"
SECRET_VAR = EnvSecrets.variable("rds2bq-dts-reader-keys")
CHANGES = ("CreateTransferConfig", "UpdateTransferConfig", "DeleteTransferConfig")


@dataclass
class World:
    dts: DtsStandin
    bigquery: BigQueryStandin
    client: Any  # the official client: the adapter's, and for hand edits
    environ: dict[str, str]

    def keys(self, access_key_id: str, secret: str) -> None:
        self.environ[SECRET_VAR] = json.dumps(
            {"access_key_id": access_key_id, "secret_access_key": secret}
        )

    def store(self, settings: Settings) -> DtsTransfers:
        return build_transfer_runner(settings, client=self.client)

    def sync(
        self,
        tables: str = TABLES,
        *,
        prune: bool = False,
        dry_run: bool = False,
        schemas: SchemaSource | None = None,
        **env: str,
    ) -> SyncOutcome:
        settings = make_settings(tables=tables, **env)
        return sync(
            settings,
            self.store(settings),
            build_destination_tables(settings, endpoint=self.bigquery.endpoint),
            EnvSecrets(self.environ),
            prune=prune,
            dry_run=dry_run,
            schemas=schemas,
        )

    def changes(self) -> int:
        return sum(len(self.dts.calls_of(m)) for m in CHANGES)

    def tables(self) -> list[str]:
        return self.bigquery.table_ids(GCP_PROJECT, "rds_shop")


@pytest.fixture
def world(
    dts_standin: DtsStandin,
    dts_client: Any,
    bigquery_standin: BigQueryStandin,
) -> World:
    bigquery_standin.add_dataset(GCP_PROJECT, "rds_shop", "asia-northeast1")
    w = World(dts_standin, bigquery_standin, dts_client, {})
    w.keys("AKIAFIRSTKEY", "first-secret")
    return w


def foreign_config(client: Any, display_name: str) -> str:
    config = {
        "display_name": display_name,
        "data_source_id": "amazon_s3",
        "destination_dataset_id": "rds_shop",
        "params": {
            "data_path": "s3://acme-rds-exports/manual/*.csv",
            "destination_table_name_template": "manual",
            "access_key_id": "AKIAHAND",
            "secret_access_key": "hand",
            "file_format": "CSV",
        },
    }
    created = client.create_transfer_config(
        request={"parent": make_settings().dts_parent, "transfer_config": config}, timeout=5
    )
    return str(created.name)


def test_first_sync_creates_everything_and_a_second_changes_nothing(world: World) -> None:
    # WHEN sync runs on an empty project
    first = world.sync()
    # THEN one config per table and each destination table exist
    assert first.result is not None and first.result.ok
    assert sorted(first.result.created) == ["shop.orders", "shop.orders_items"]
    assert world.tables() == ["shop__orders", "shop__orders_items"]
    table = world.bigquery.table(GCP_PROJECT, "rds_shop", "shop__orders")
    assert table is not None and "schema" not in table  # no export known: preflight gives one
    assert "no schema yet: the first preflight gives it" in render_plan(first.plan)
    configs = {c.display_name: c for c in world.dts.configs()}
    orders = configs["rds2bq-prod:shop.orders"]
    assert orders.params["data_path"] == (
        's3://acme-rds-exports/rds2bq/rds2bq-prod-{run_time|"%Y%m%d%H%M%S"}/shop/shop.orders/'
        "*.parquet"
    )
    assert orders.destination_dataset_id == "rds_shop"
    assert orders.notification_pubsub_topic == f"projects/{GCP_PROJECT}/topics/rds2bq-events"
    assert orders.schedule_options.disable_auto_scheduling
    assert list(orders.params["decimal_target_types"]) == ["NUMERIC", "BIGNUMERIC", "STRING"]
    # AND a second sync plans and changes nothing
    before = world.changes()
    second = world.sync()
    assert second.plan.is_noop and len(second.plan.unchanged) == 2
    assert world.changes() == before


def test_new_tables_get_the_columns_of_the_latest_export(world: World) -> None:
    # GIVEN a ledger whose latest complete export wrote the orders table's files
    ledger, exporter = InMemoryLedger(), FakeExporter()
    run_time = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    ledger.create_run(
        Run("r1", run_time, "daily", "rds2bq-prod-1", ("shop.orders",), export_status="COMPLETE")
    )
    exporter.exported["shop/shop.orders"] = ExportedTable(
        rows=2,
        columns=(Column("id", "INT64"), Column("total", "BIGNUMERIC", "decimal128(40, 2)")),
        files=1,
    )
    # WHEN sync creates the destination tables
    schemas = SchemaSource(lambda: ledger, lambda: exporter)
    outcome = world.sync(tables="shop.orders\n", schemas=schemas)
    # THEN the table has those columns before any load
    assert outcome.result is not None and outcome.result.ok
    table = world.bigquery.table(GCP_PROJECT, "rds_shop", "shop__orders")
    assert table is not None
    fields = [(f["name"], f["type"]) for f in table["schema"]["fields"]]
    assert fields in (
        [("id", "INT64"), ("total", "BIGNUMERIC")],
        [("id", "INTEGER"), ("total", "BIGNUMERIC")],  # the legacy spelling the API may store
    )


def test_drift_is_repaired(world: World) -> None:
    world.sync()
    orders = next(c for c in world.dts.configs() if c.display_name.endswith("shop.orders"))
    # GIVEN someone edits our config by hand
    edited = type(orders).deserialize(type(orders).serialize(orders))
    edited.params = {k: v for k, v in orders.params.items() if k != "decimal_target_types"} | {
        "file_format": "CSV",
        "secret_access_key": "x",
        "write_disposition": "WRITE_APPEND",
    }
    edited.notification_pubsub_topic = "projects/p/topics/elsewhere"
    edited.schedule_options.disable_auto_scheduling = False
    world.client.update_transfer_config(
        request={
            "transfer_config": edited,
            "update_mask": {"paths": ["params", "notification_pubsub_topic", "schedule_options"]},
        },
        timeout=5,
    )
    # WHEN sync runs THEN it names the drifted fields and puts them back
    outcome = world.sync()
    [change] = outcome.plan.update
    assert set(change.drift) == {
        Drift.FILE_FORMAT,
        Drift.WRITE_DISPOSITION,
        Drift.DECIMAL_TARGET_TYPES,
        Drift.TOPIC,
        Drift.AUTO_SCHEDULING,
    }
    assert world.dts.stored_params(orders.name)["secret_access_key"] == "first-secret"
    assert list(world.dts.stored_params(orders.name)["decimal_target_types"]) == [
        "NUMERIC",
        "BIGNUMERIC",
        "STRING",
    ]
    assert world.sync().plan.is_noop


def test_key_rotation_updates_every_config(world: World) -> None:
    world.sync()
    world.keys("AKIAROTATEDKEY", "rotated-secret")
    outcome = world.sync()
    assert [u.drift for u in outcome.plan.update] == [(Drift.ACCESS_KEY,)] * 2
    for config in world.dts.configs():
        assert world.dts.stored_params(config.name)["secret_access_key"] == "rotated-secret"
    assert world.sync().plan.is_noop


def test_prune_deletes_only_our_configs_of_removed_tables(world: World) -> None:
    world.sync()
    staging = foreign_config(world.client, "rds2bq-staging:shop.orders_items")
    manual = foreign_config(world.client, "Manual CSV load")
    # WHEN a table leaves the tables file, without --prune THEN its config is only reported
    kept = world.sync(tables="shop.orders\n")
    assert [r.config.table_key for r in kept.plan.kept] == ["shop.orders_items"]
    assert kept.plan.unmanaged == 2 and kept.plan.is_noop
    assert len(world.dts.configs()) == 4
    # WITH --prune THEN it goes, and nothing that is not ours is touched
    pruned = world.sync(tables="shop.orders\n", prune=True)
    assert pruned.result is not None and len(pruned.result.deleted) == 1
    remaining = {c.name for c in world.dts.configs()}
    assert {staging, manual} < remaining and len(remaining) == 3
    assert world.sync(tables="shop.orders\n", prune=True).plan.is_noop


def test_dry_run_changes_nothing(world: World) -> None:
    outcome = world.sync(dry_run=True)
    assert outcome.result is None
    assert world.changes() == 0 and world.tables() == []
    text = render_plan(outcome.plan)
    assert "+ create  shop.orders -> shop__orders" in text
    assert "+ table   shop__orders_items" in text


def test_a_dropped_destination_table_is_recreated(world: World) -> None:
    world.sync()
    world.bigquery.drop_table(GCP_PROJECT, "rds_shop", "shop__orders")
    outcome = world.sync()
    assert outcome.plan.create_tables == ("shop__orders",) and not outcome.plan.update
    assert world.tables() == ["shop__orders", "shop__orders_items"]


def test_dataset_must_exist_in_the_configs_location(world: World) -> None:
    with pytest.raises(PermanentError, match="does not exist"):
        world.sync(bq_dataset="missing")
    world.bigquery.add_dataset(GCP_PROJECT, "us_dataset", "US")
    with pytest.raises(PermanentError, match="must match"):
        world.sync(bq_dataset="us_dataset")
    assert world.changes() == 0


def test_one_failed_step_does_not_stop_the_others(world: World) -> None:
    world.dts.faults.fail_next(
        1,
        "PERMISSION_DENIED",
        "CreateTransferConfig",
        "bigquery.transfers.update denied",
    )
    outcome = world.sync()
    assert outcome.result is not None and len(outcome.result.created) == 1
    assert "bigquery.transfers.update denied" in render_result(outcome.result)
    retry = world.sync()
    assert retry.result is not None and len(retry.result.created) == 1
    assert world.sync().plan.is_noop


def test_canary_keys_never_reach_output_or_logs(
    world: World, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    canary_id, canary_secret = "AKIACANARY0000000001", "canary-SECRET-7f3c9e1d"
    world.keys(canary_id, canary_secret)
    # every path: dry run, create, a refused update, rotation, an unreadable secret
    print(render_plan(world.sync(dry_run=True).plan))
    created = world.sync()
    print(render_plan(created.plan))
    assert created.result is not None
    print(render_result(created.result))
    world.keys("AKIACANARY0000000002", canary_secret + "-next")
    world.dts.faults.fail_next(1, "INVALID_ARGUMENT", "UpdateTransferConfig")
    rotated = world.sync()
    assert rotated.result is not None and len(rotated.result.failures) == 1
    print(render_plan(rotated.plan), render_result(rotated.result))
    print(repr(rotated))
    world.environ[SECRET_VAR] = '{"access_key_id": "AKIACANARY0000000003", "secret_access_key":'
    with pytest.raises(PermanentError) as caught:
        world.sync()
    print(caught.value, repr(caught.value.__cause__), caught.value.__context__)
    captured = capsys.readouterr()
    seen = [captured.out, captured.err, caplog.text, *(str(vars(r)) for r in caplog.records)]
    assert "access key (rotated)" in captured.out
    for text in seen:
        for canary in ("AKIACANARY", "canary-SECRET"):
            assert canary not in text

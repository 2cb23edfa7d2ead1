"""The DTS adapter (the official client on its REST transport) against the stand-in: ownership,
runs, adoption, error translation, and the secret kept out of every log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud.bigquery_datatransfer_v1 import types

from devstack.dts import HTTP_CODES, DtsStandin
from orchestrator.adapters.dts import DtsTransfers, build_transfer_runner
from orchestrator.app.ports import AccessKeys, TransferConfig
from orchestrator.app.sync import desired_configs
from orchestrator.core.errors import PermanentError, TransientError
from tests.integration.conftest import Bucket, make_settings

pytestmark = pytest.mark.integration

SETTINGS = make_settings()
PARENT = SETTINGS.dts_parent
INFO = types.TransferMessage.MessageSeverity.INFO
KEYS = AccessKeys("AKIAADAPTERTEST", "adapter-secret-value")
RUN_TIME = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)


@pytest.fixture
def transfers(dts_client: Any) -> DtsTransfers:
    return build_transfer_runner(SETTINGS, client=dts_client)


@pytest.fixture
def configs(transfers: DtsTransfers) -> dict[str, TransferConfig]:
    """Our two tables' configs, created through the adapter."""
    return {k: transfers.create_config(c, KEYS) for k, c in desired_configs(SETTINGS).items()}


def raw_config(display_name: str) -> dict[str, Any]:
    return {
        "display_name": display_name,
        "data_source_id": "amazon_s3",
        "destination_dataset_id": "elsewhere",
        "params": {
            "data_path": "s3://other/*.csv",
            "destination_table_name_template": "t",
            "access_key_id": "AKIAOTHER",
            "secret_access_key": "other",
            "file_format": "CSV",
        },
    }


def test_configs_by_table_lists_only_ours_across_pages(
    dts_standin: DtsStandin,
    dts_client: Any,
    transfers: DtsTransfers,
    configs: dict[str, TransferConfig],
) -> None:
    # GIVEN our configs next to another env's and a hand-made one, and one config per page
    for name in ("rds2bq-staging:shop.orders", "Nightly CSV load"):
        dts_client.create_transfer_config(
            request={"parent": PARENT, "transfer_config": raw_config(name)}, retry=None, timeout=5
        )
    dts_standin.max_page_size = 1
    # WHEN the fan-out asks for our configs
    found = transfers.configs_by_table()
    # THEN it sees exactly ours, as we created them
    assert found == configs
    desired = desired_configs(SETTINGS)["shop.orders"]
    orders = found["shop.orders"]
    assert (orders.data_path, orders.destination_table, orders.notification_topic) == (
        desired.data_path,
        desired.destination_table,
        desired.notification_topic,
    )
    assert (orders.file_format, orders.write_disposition, orders.auto_scheduling_disabled) == (
        "PARQUET",
        "WRITE_TRUNCATE",
        True,
    )
    assert orders.decimal_target_types == ("NUMERIC", "BIGNUMERIC", "STRING")
    assert orders.access_key_id == KEYS.access_key_id
    listed = transfers.list_configs()
    assert len(listed) == 4 and sum(1 for c in listed if not c.table_key) == 2
    assert len(dts_standin.calls_of("ListTransferConfigs")) >= 4  # paginated


def test_duplicates_resolve_to_the_first_by_name(
    transfers: DtsTransfers, configs: dict[str, TransferConfig]
) -> None:
    extra = transfers.create_config(desired_configs(SETTINGS)["shop.orders"], KEYS)
    chosen = transfers.configs_by_table()["shop.orders"]
    assert chosen.name == min(extra.name, configs["shop.orders"].name)


def test_start_run_and_find_run(
    dts_standin: DtsStandin, transfers: DtsTransfers, configs: dict[str, TransferConfig]
) -> None:
    orders = configs["shop.orders"].name
    items = configs["shop.orders_items"].name
    started = transfers.start_run(orders, RUN_TIME)
    assert started.startswith(orders + "/runs/")
    assert dts_standin.run(started).run.run_time == RUN_TIME
    assert transfers.find_run(orders, RUN_TIME) == started
    assert transfers.find_run(orders, RUN_TIME - timedelta(days=1)) is None
    assert transfers.find_run(items, RUN_TIME) is None


def test_find_run_adopts_what_a_crashed_fan_out_started(
    dts_standin: DtsStandin, transfers: DtsTransfers, configs: dict[str, TransferConfig]
) -> None:
    # GIVEN a fan-out that started the first table's run and then lost DTS
    names = [configs[k].name for k in sorted(configs)]
    dts_standin.faults.fail_after_starts(1)
    first = transfers.start_run(names[0], RUN_TIME)
    with pytest.raises(TransientError):
        transfers.start_run(names[1], RUN_TIME)
    # WHEN the next holder asks before starting again THEN it adopts one and starts the other
    dts_standin.faults.clear()
    assert transfers.find_run(names[0], RUN_TIME) == first
    assert transfers.find_run(names[1], RUN_TIME) is None


def test_deadline_exceeded_adopts_the_run_it_did_start(
    dts_standin: DtsStandin, dts_client: Any, configs: dict[str, TransferConfig]
) -> None:
    # GIVEN DTS starts the run but answers after our deadline
    transfers = DtsTransfers(dts_client, parent=PARENT, env="prod", dataset="rds_shop", timeout=0.3)
    name = configs["shop.orders"].name
    dts_standin.faults.slow_next(1, seconds=1.0, method="StartManualTransferRuns")
    # WHEN we start it THEN we get that run, not an error that a retry would turn into a second
    started = transfers.start_run(name, RUN_TIME)
    assert [r.name for r in dts_standin.runs(name)] == [started]


@pytest.mark.parametrize(
    "code", ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "INTERNAL", "ABORTED", "DEADLINE_EXCEEDED"]
)
def test_transient_faults_become_transient_errors(
    dts_standin: DtsStandin,
    transfers: DtsTransfers,
    configs: dict[str, TransferConfig],
    code: str,
) -> None:
    dts_standin.faults.fail_next(1, code, method="StartManualTransferRuns")
    with pytest.raises(TransientError) as caught:
        transfers.start_run(configs["shop.orders"].name, RUN_TIME)
    # the vendor's error stays as the cause: over REST, the HTTP code of DTS's status
    assert isinstance(caught.value.__cause__, gexc.GoogleAPICallError)
    assert caught.value.__cause__.code == HTTP_CODES[code]
    # no hidden retry (and a DEADLINE_EXCEEDED answer looked for the run instead: none was made)
    assert len(dts_standin.calls_of("StartManualTransferRuns")) == 1
    assert dts_standin.runs() == []


@pytest.mark.parametrize("code", ["PERMISSION_DENIED", "INVALID_ARGUMENT", "FAILED_PRECONDITION"])
def test_other_faults_become_permanent_errors_with_dts_message(
    dts_standin: DtsStandin, transfers: DtsTransfers, code: str
) -> None:
    dts_standin.faults.fail_next(1, code, message="The caller does not have permission")
    with pytest.raises(PermanentError, match="The caller does not have permission") as caught:
        transfers.configs_by_table()
    assert not isinstance(caught.value, TransientError)
    assert isinstance(caught.value.__cause__, gexc.GoogleAPICallError)
    assert caught.value.__cause__.code == HTTP_CODES[code]


def test_an_unauthenticated_answer_is_permanent(
    dts_standin: DtsStandin, transfers: DtsTransfers
) -> None:
    # google-auth answers a 401 by refreshing the credentials and trying once more; anonymous
    # ones (the stand-in's) cannot be refreshed, real ones would be: either way no retry loop
    dts_standin.faults.fail_next(1, "UNAUTHENTICATED")
    with pytest.raises(PermanentError) as caught:
        transfers.configs_by_table()
    assert not isinstance(caught.value, TransientError)


def test_real_refusals_are_permanent(
    transfers: DtsTransfers, configs: dict[str, TransferConfig]
) -> None:
    with pytest.raises(PermanentError, match="not found"):
        transfers.start_run(f"{PARENT}/transferConfigs/gone", RUN_TIME)
    with pytest.raises(PermanentError, match="in the future"):
        transfers.start_run(configs["shop.orders"].name, datetime.now(UTC) + timedelta(hours=1))


def test_a_slow_list_is_transient(dts_standin: DtsStandin, dts_client: Any) -> None:
    transfers = DtsTransfers(dts_client, parent=PARENT, env="prod", dataset="rds_shop", timeout=0.3)
    dts_standin.faults.slow_next(1, seconds=1.0, method="ListTransferConfigs")
    with pytest.raises(TransientError):
        transfers.configs_by_table()


def test_update_rewrites_every_managed_field_with_the_new_keys(
    dts_standin: DtsStandin, transfers: DtsTransfers, configs: dict[str, TransferConfig]
) -> None:
    current = configs["shop.orders"]
    desired = desired_configs(make_settings(topic="other-topic"))["shop.orders"]
    rotated = AccessKeys("AKIAROTATED", "rotated-secret")
    updated = transfers.update_config(current.name, desired, rotated)
    assert updated.notification_topic.endswith("/topics/other-topic")
    assert updated.access_key_id == "AKIAROTATED"
    assert dts_standin.stored_params(current.name)["secret_access_key"] == "rotated-secret"
    assert list(dts_standin.stored_params(current.name)["decimal_target_types"]) == [
        "NUMERIC",
        "BIGNUMERIC",
        "STRING",
    ]


@pytest.mark.parametrize(
    ("param", "read"),
    [
        (None, ()),  # a config made before the param: drift, which sync repairs
        ("NUMERIC, BIGNUMERIC,STRING", ("NUMERIC", "BIGNUMERIC", "STRING")),
        (["NUMERIC", "STRING"], ("NUMERIC", "STRING")),
    ],
)
def test_decimal_target_types_read_back_in_either_form(
    dts_client: Any, transfers: DtsTransfers, param: Any, read: tuple[str, ...]
) -> None:
    # GIVEN one of our configs whose decimal_target_types was left out or set by hand
    config = raw_config("rds2bq-prod:shop.legacy")
    if param is not None:
        config["params"]["decimal_target_types"] = param
    dts_client.create_transfer_config(
        request={"parent": PARENT, "transfer_config": config}, retry=None, timeout=5
    )
    # WHEN the adapter lists it THEN it reads the types in their order
    assert transfers.configs_by_table()["shop.legacy"].decimal_target_types == read


def test_an_update_moves_a_config_onto_the_configured_service_account(
    dts_standin: DtsStandin, dts_client: Any, configs: dict[str, TransferConfig]
) -> None:
    # GIVEN a config created by a person (no service account), then sync with one configured
    account = "rds2bq-transfers@acme.iam.gserviceaccount.com"
    transfers = DtsTransfers(
        dts_client, parent=PARENT, env="prod", dataset="rds_shop", service_account=account
    )
    current = configs["shop.orders"]

    # WHEN sync repairs the config
    transfers.update_config(current.name, desired_configs(SETTINGS)["shop.orders"], KEYS)

    # THEN it runs as the account from now on (the mask named it, as DTS requires)
    stored = {c.name: c for c in dts_standin.configs()}
    assert stored[current.name].owner_info.email == account


def test_delete_touches_only_ours_and_is_idempotent(
    dts_standin: DtsStandin, transfers: DtsTransfers, configs: dict[str, TransferConfig]
) -> None:
    foreign = TransferConfig(
        name=f"{PARENT}/transferConfigs/x",
        display_name="Nightly CSV load",
        table_key="",
        destination_table="t",
        data_path="",
        notification_topic="",
    )
    with pytest.raises(PermanentError, match="not an rds2bq-prod config"):
        transfers.delete_config(foreign)
    assert dts_standin.calls_of("DeleteTransferConfig") == []
    transfers.delete_config(configs["shop.orders"])
    transfers.delete_config(configs["shop.orders"])  # already gone: fine
    assert set(transfers.configs_by_table()) == {"shop.orders_items"}


def test_the_endpoint_setting_takes_a_url_or_host_port(dts_standin: DtsStandin) -> None:
    # GIVEN one of our configs in the stand-in
    made = build_transfer_runner(make_settings(dts_endpoint=dts_standin.endpoint))
    made.create_config(desired_configs(SETTINGS)["shop.orders"], KEYS)
    # WHEN RDS2BQ_DTS_ENDPOINT names it either way THEN the adapter finds it there
    host_port = dts_standin.endpoint.removeprefix("http://")
    for endpoint in (dts_standin.endpoint, host_port, dts_standin.endpoint + "/v1/"):
        runner = build_transfer_runner(make_settings(dts_endpoint=endpoint))
        assert set(runner.configs_by_table()) == {"shop.orders"}, endpoint


def test_run_outcome_reads_a_finished_run(
    dts_standin: DtsStandin, transfers: DtsTransfers, configs: dict[str, TransferConfig]
) -> None:
    run = transfers.start_run(configs["shop.orders"].name, RUN_TIME)
    pending = transfers.run_outcome(run)
    assert (pending.state, pending.started_at, pending.finished_at) == ("PENDING", None, None)
    dts_standin.finish_pending()  # the bucket does not exist: the run fails, as it would in DTS
    outcome = transfers.run_outcome(run)
    assert outcome.state == "FAILED" and outcome.error_code == 3
    assert "Failed to list files" in outcome.error_message
    record = dts_standin.run(run).run
    assert (outcome.started_at, outcome.finished_at) == (record.start_time, record.end_time)


@pytest.fixture
def all_debug_records() -> Iterator[list[logging.LogRecord]]:
    """Everything any logger emits at DEBUG (urllib3's request lines included)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    handler, level = Keep(logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield records
    root.removeHandler(handler)
    root.setLevel(level)


def test_no_log_ever_sees_the_secret(
    dts_standin: DtsStandin,
    transfers: DtsTransfers,
    all_debug_records: list[logging.LogRecord],
) -> None:
    # WHEN configs are created, updated and refused with every logger at DEBUG
    created = transfers.create_config(desired_configs(SETTINGS)["shop.orders"], KEYS)
    transfers.update_config(created.name, desired_configs(SETTINGS)["shop.orders"], KEYS)
    dts_standin.faults.fail_next(1, "INVALID_ARGUMENT", "UpdateTransferConfig")
    with pytest.raises(PermanentError):
        transfers.update_config(created.name, desired_configs(SETTINGS)["shop.orders"], KEYS)
    # THEN the requests were logged (the check is real) and the secret never was
    assert any("transferConfigs" in r.getMessage() for r in all_debug_records)
    assert not any(KEYS.secret_access_key in str(vars(r)) for r in all_debug_records)
    assert not any(KEYS.secret_access_key in r.getMessage() for r in all_debug_records)


def test_what_dts_says_is_redacted_where_it_enters(
    dts_standin: DtsStandin, transfers: DtsTransfers, configs: dict[str, TransferConfig]
) -> None:
    # GIVEN DTS errors that echo an access key id (a failed run, and a refused call)
    leaked = "AKIAIOSFODNN7EXAMPLE"
    orders = configs["shop.orders"]
    dts_standin.set_outcome(orders.name, message=f"The AWS Access Key Id {leaked} does not exist")
    run = transfers.start_run(orders.name, RUN_TIME)
    dts_standin.finish_pending()

    # WHEN the adapter reads the run and meets the refusal
    outcome = transfers.run_outcome(run)
    dts_standin.faults.fail_next(1, "PERMISSION_DENIED", message=f"key {leaked} is not allowed")
    with pytest.raises(PermanentError) as refused:
        transfers.configs_by_table()

    # THEN neither carries the key id on: every later path (ledger, Slack, status) is clean
    assert outcome.state == "FAILED" and "does not exist" in outcome.error_message
    assert leaked not in outcome.error_message
    assert "not allowed" in str(refused.value) and leaked not in str(refused.value)


def test_empty_load_reads_the_logs_of_a_run_that_matched_nothing(
    dts_standin: DtsStandin, dts_client: Any, bucket: Bucket
) -> None:
    # GIVEN our configs on an export bucket holding no file for shop.orders
    settings = make_settings(bucket=bucket.name)
    transfers = build_transfer_runner(settings, client=dts_client)
    configs = {k: transfers.create_config(c, KEYS) for k, c in desired_configs(settings).items()}
    run = transfers.start_run(configs["shop.orders"].name, RUN_TIME)
    dts_standin.finish_pending()
    record = dts_standin.run(run)
    # (and, before the line that counts, log lines over several pages)
    with dts_standin._lock:
        record.messages[:0] = [(INFO, f"Starting step {i}") for i in range(3)]
    paged = DtsTransfers(dts_client, parent=PARENT, env="prod", dataset="rds_shop", page_size=1)

    # WHEN the adapter reads the SUCCEEDED run's logs
    # THEN it is SUCCEEDED as DTS says, and the logs name the data path that matched nothing
    assert transfers.run_outcome(run).state == "SUCCEEDED"
    line = paged.empty_load(run)
    assert line == f"No new files found matching {record.data_path}"


def test_empty_load_is_blank_for_a_run_that_loaded_files(
    dts_standin: DtsStandin, dts_client: Any, bucket: Bucket
) -> None:
    settings = make_settings(bucket=bucket.name)
    transfers = build_transfer_runner(settings, client=dts_client)
    configs = {k: transfers.create_config(c, KEYS) for k, c in desired_configs(settings).items()}
    first = transfers.start_run(configs["shop.orders"].name, RUN_TIME)
    dts_standin.finish_pending()
    pattern = dts_standin.run(first).data_path.removeprefix(f"s3://{bucket.name}/")
    bucket.put(pattern.replace("*", "1/part-00000-a-c000.gz", 1))
    second = transfers.start_run(configs["shop.orders"].name, RUN_TIME)
    dts_standin.finish_pending()
    assert dts_standin.run(second).matched_keys
    assert transfers.empty_load(second) == ""

"""The DTS stand-in through the official DataTransferServiceClient over REST: what it refuses, what
each run would load from S3, how runs finish and notify, and the faults it injects. (Its REST
format itself: ``test_dts_rest_conformance``.)"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from google.api_core import exceptions as gexc
from google.cloud.bigquery_datatransfer_v1 import types

from devstack.dts import (
    DtsStandin,
    RunRecord,
    TemplateError,
    client_for,
    compile_data_path,
    render_template,
    start,
)
from tests.integration.conftest import S3_REGION, Bucket, Raw

pytestmark = pytest.mark.integration

PARENT = "projects/rds2bq-test/locations/asia-northeast1"
TOKYO = ZoneInfo("Asia/Tokyo")
EXPORT = 'rds2bq/rds2bq-prod-{run_time|"%Y%m%d%H%M"}'
CALL = {"retry": None, "timeout": 10}


def slot(days_ago: int, hour: int, minute: int = 0) -> datetime:
    """A daily slot in Tokyo, ``days_ago`` days back (always in the past), as UTC."""
    day = datetime.now(TOKYO).date() - timedelta(days=days_ago)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TOKYO).astimezone(UTC)


def export_root(run_time: datetime) -> str:
    return f"rds2bq/rds2bq-prod-{run_time:%Y%m%d%H%M}"


def s3_config(
    bucket: str, tail: str = "shop/shop.orders/*.parquet", **params: Any
) -> dict[str, Any]:
    base = {
        "data_path": f"s3://{bucket}/{EXPORT}/{tail}",
        "destination_table_name_template": "shop__orders",
        "access_key_id": "AKIATESTREADER",
        "secret_access_key": "reader-secret",
        "file_format": "PARQUET",
        "write_disposition": "WRITE_TRUNCATE",
        "decimal_target_types": ["NUMERIC", "BIGNUMERIC", "STRING"],
    }
    base.update(params)
    return {
        "display_name": "rds2bq-prod:shop.orders",
        "data_source_id": "amazon_s3",
        "destination_dataset_id": "rds_shop",
        "params": {k: v for k, v in base.items() if v is not None},
        "schedule_options": {"disable_auto_scheduling": True},
    }


def create(client: Any, config: dict[str, Any], parent: str = PARENT) -> types.TransferConfig:
    return client.create_transfer_config(
        request={"parent": parent, "transfer_config": config}, **CALL
    )


def start_run(client: Any, config_name: str, run_time: datetime) -> str:
    response = client.start_manual_transfer_runs(
        request={"parent": config_name, "requested_run_time": run_time}, **CALL
    )
    return str(response.runs[0].name)


def run_once(
    standin: DtsStandin, client: Any, config: dict[str, Any], run_time: datetime
) -> RunRecord:
    name = start_run(client, create(client, config).name, run_time)
    standin.finish_pending()
    return standin.run(name)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"parent": "projects/rds2bq-test"}, "projects/P/locations/L"),
        ({"data_source_id": "google_cloud_storage"}, "data_source_id"),
        ({"data_path": None}, "data_path"),
        ({"destination_table_name_template": None}, "destination_table_name_template"),
        ({"access_key_id": None}, "access_key_id"),
        ({"secret_access_key": None}, "secret_access_key"),
        ({"file_format": None}, "file_format"),
        ({"write_disposition": "WRITE_EMPTY"}, "write_disposition"),
        ({"decimal_target_types": ["NUMERIC", "DOUBLE"]}, "decimal_target_types"),
        ({"decimal_target_types": ["NUMERIC", "NUMERIC"]}, "at most once"),
        ({"decimal_target_types": []}, "non-empty list"),
        ({"data_path": "s3://b/{run_time|%Y}/*.parquet"}, "double quotes"),
        ({"data_path": "s3://b/{run_day}/*.parquet"}, "unknown runtime parameter"),
    ],
)
def test_create_refuses_what_the_service_refuses(
    dts_client: Any, change: dict[str, Any], expected: str
) -> None:
    # GIVEN a valid amazon_s3 config with one thing wrong
    config = s3_config("b")
    parent = change.pop("parent", PARENT)
    if "data_source_id" in change:
        config["data_source_id"] = change.pop("data_source_id")
    config["params"].update(change)
    config["params"] = {k: v for k, v in config["params"].items() if v is not None}
    # WHEN it is created THEN INVALID_ARGUMENT (HTTP 400) names the problem
    with pytest.raises(gexc.BadRequest, match=expected):
        create(dts_client, config, parent)


def test_manual_runs_are_validated(dts_standin: DtsStandin, dts_client: Any, raw: Raw) -> None:
    name = create(dts_client, s3_config("b")).name
    future = datetime.now(UTC) + timedelta(minutes=10)
    with pytest.raises(gexc.BadRequest, match="in the future"):
        start_run(dts_client, name, future)
    # a few seconds of clock skew between us and Google is tolerated
    start_run(dts_client, name, datetime.now(UTC) + timedelta(seconds=30))
    with pytest.raises(gexc.BadRequest, match="either requested_run_time"):
        dts_client.start_manual_transfer_runs(request={"parent": name}, **CALL)
    span = {"start_time": slot(3, 0), "end_time": slot(1, 0)}
    with pytest.raises(gexc.BadRequest, match="auto-scheduling disabled"):
        dts_client.start_manual_transfer_runs(
            request={"parent": name, "requested_time_range": span}, **CALL
        )
    # both at once: one oneof, refused when the body is read
    both = {"requestedRunTime": "2024-01-01T00:00:00Z", "requestedTimeRange": {}}
    code, body = raw("POST", f"{name}:startManualRuns", both)
    assert (code, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert "oneof" in body["error"]["message"]
    # a URL that names no transfer config is no DTS method at all
    code, body = raw("POST", "transferConfigs/x:startManualRuns", {"requestedRunTime": "x"})
    assert (code, body["error"]["status"]) == (404, "NOT_FOUND")
    with pytest.raises(gexc.NotFound):
        start_run(dts_client, f"{PARENT}/transferConfigs/nope", slot(1, 0))
    with pytest.raises(gexc.NotFound):
        dts_client.get_transfer_run(name=f"{name}/runs/nope", **CALL)
    assert len(dts_standin.runs()) == 1  # only the valid start made a run


def test_time_range_allowed_when_auto_scheduling_is_on(dts_client: Any) -> None:
    config = s3_config("b")
    config["schedule_options"] = {"disable_auto_scheduling": False}
    name = create(dts_client, config).name
    span = {"start_time": slot(3, 0), "end_time": slot(1, 0)}
    response = dts_client.start_manual_transfer_runs(
        request={"parent": name, "requested_time_range": span}, **CALL
    )
    assert [r.run_time for r in response.runs] == [slot(3, 0), slot(2, 0)]


def test_update_honours_the_mask_and_requires_one(dts_standin: DtsStandin, dts_client: Any) -> None:
    created = create(dts_client, s3_config("b"))
    changed = s3_config("other", file_format="CSV")
    changed.update(name=created.name, notification_pubsub_topic="projects/p/topics/t")
    # WHEN only the topic is in the mask THEN only the topic changes
    updated = dts_client.update_transfer_config(
        request={
            "transfer_config": changed,
            "update_mask": {"paths": ["notification_pubsub_topic"]},
        },
        **CALL,
    )
    assert updated.notification_pubsub_topic == "projects/p/topics/t"
    assert updated.params["file_format"] == "PARQUET"
    assert updated.params["data_path"].startswith("s3://b/")
    with pytest.raises(gexc.BadRequest, match="update_mask is required"):
        dts_client.update_transfer_config(request={"transfer_config": changed}, **CALL)
    with pytest.raises(gexc.BadRequest, match="immutable"):
        dts_client.update_transfer_config(
            request={"transfer_config": changed, "update_mask": {"paths": ["data_source_id"]}},
            **CALL,
        )
    # params are replaced whole: leaving the secret out is refused, not silently kept
    del changed["params"]["secret_access_key"]
    with pytest.raises(gexc.BadRequest, match="secret_access_key"):
        dts_client.update_transfer_config(
            request={"transfer_config": changed, "update_mask": {"paths": ["params"]}}, **CALL
        )
    assert dts_standin.stored_params(created.name)["secret_access_key"] == "reader-secret"


def test_configs_paginate_and_never_echo_the_secret(
    dts_standin: DtsStandin, dts_client: Any
) -> None:
    for i in range(5):
        create(dts_client, s3_config("b") | {"display_name": f"rds2bq-prod:shop.t{i}"})
    create(dts_client, s3_config("b"), parent="projects/rds2bq-test/locations/us")
    listed = list(
        dts_client.list_transfer_configs(request={"parent": PARENT, "page_size": 2}, **CALL)
    )
    assert sorted(c.display_name for c in listed) == [f"rds2bq-prod:shop.t{i}" for i in range(5)]
    assert len(dts_standin.calls_of("ListTransferConfigs")) == 3
    fetched = dts_client.get_transfer_config(name=listed[0].name, **CALL)
    for config in [*listed, fetched]:
        assert "secret_access_key" not in config.params
        assert config.params["access_key_id"] == "AKIATESTREADER"


def test_delete_removes_config_and_its_runs(dts_standin: DtsStandin, dts_client: Any) -> None:
    name = create(dts_client, s3_config("b")).name
    start_run(dts_client, name, slot(1, 0))
    dts_client.delete_transfer_config(name=name, **CALL)
    with pytest.raises(gexc.NotFound):
        dts_client.get_transfer_config(name=name, **CALL)
    assert dts_standin.runs() == []


# --------------------------------------------------------------------------- what a run loads


def test_one_wildcard_reads_every_file_of_the_table_and_nothing_else(
    dts_standin: DtsStandin, dts_client: Any, bucket: Bucket
) -> None:
    # GIVEN an export with batch folders 1/ 2/ 4/ (a gap), both namings, _SUCCESS markers,
    # the neighbouring table shop.orders_items, and yesterday's export of shop.orders
    run_time = slot(1, 0)
    root = export_root(run_time)
    table = f"{root}/shop/shop.orders"
    wanted = [
        f"{table}/1/part-00000-3b2f-c000.gz.parquet",
        f"{table}/1/part-00001-77aa-c000.gz.parquet",
        f"{table}/2/part-00000-19c4.gz.parquet",
        f"{table}/4/part-00000-e0d1-c000.gz.parquet",
        f"{table}/part-00000-5f0e9a1c-0d5b-4bb8-9a40-1d3e6e5b7c21.parquet",
    ]
    unwanted = [
        f"{table}/1/_SUCCESS",
        f"{table}/4/_SUCCESS",
        f"{root}/shop/shop.orders_items/1/part-00000-aaaa-c000.gz.parquet",
        f"{root}/export_info_{root.rsplit('/', 1)[1]}.json",
        f"{export_root(slot(2, 0))}/shop/shop.orders/1/part-00000-old-c000.gz.parquet",
    ]
    bucket.put(*wanted, *unwanted)
    # WHEN a run of shop.orders resolves its data path
    record = run_once(dts_standin, dts_client, s3_config(bucket.name), run_time)
    # THEN it loads exactly the table's Parquet files of this run's export
    assert record.matched_keys == sorted(wanted)
    assert record.data_path == f"s3://{bucket.name}/{table}/*.parquet"
    # and S3 was listed under the table's folder only (the slash keeps orders_items out)
    assert record.listed_keys == sorted([*wanted, f"{table}/1/_SUCCESS", f"{table}/4/_SUCCESS"])
    assert record.state == types.TransferState.SUCCEEDED
    assert record.destination_table == "shop__orders"


def test_without_the_slash_the_neighbouring_table_is_swept_in(
    dts_standin: DtsStandin, dts_client: Any, bucket: Bucket
) -> None:
    run_time = slot(1, 0)
    root = export_root(run_time)
    bucket.put(
        f"{root}/shop/shop.orders/1/part-00000-a-c000.gz.parquet",
        f"{root}/shop/shop.orders_items/1/part-00000-b-c000.gz.parquet",
    )
    record = run_once(
        dts_standin, dts_client, s3_config(bucket.name, tail="shop/shop.orders*.parquet"), run_time
    )
    assert len(record.matched_keys) == 2  # the bug the trailing slash prevents


def test_two_wildcards_stay_inside_one_segment_each(
    dts_standin: DtsStandin, dts_client: Any, bucket: Bucket
) -> None:
    run_time = slot(1, 0)
    root = export_root(run_time)
    flat = f"{root}/shop/shop.orders/part-00000-a.parquet"
    batched = f"{root}/shop/shop.orders/1/part-00000-b-c000.gz.parquet"
    bucket.put(flat, batched)
    config = s3_config(bucket.name)
    config["params"]["data_path"] = f"s3://{bucket.name}/rds2bq/rds2bq-*/shop/shop.orders/*.parquet"
    record = run_once(dts_standin, dts_client, config, run_time)
    # the second * cannot cross into the batch folder 1/
    assert record.matched_keys == [flat]
    assert compile_data_path(f"s3://{bucket.name}/x/*.parquet").matches("x/1/2/y.parquet")
    assert not compile_data_path(f"s3://{bucket.name}/*/*.parquet").matches("x/1/y.parquet")


def test_a_folder_path_loads_nothing_and_still_succeeds(
    dts_standin: DtsStandin, dts_client: Any, bucket: Bucket
) -> None:
    run_time = slot(1, 0)
    bucket.put(f"{export_root(run_time)}/shop/shop.orders/1/part-00000-a-c000.gz.parquet")
    record = run_once(
        dts_standin, dts_client, s3_config(bucket.name, tail="shop/shop.orders/"), run_time
    )
    # As the real service does: SUCCEEDED, an empty errorStatus, and only a log line says so
    assert record.matched_keys == []
    assert record.state == types.TransferState.SUCCEEDED
    assert record.run.error_status.code == 0 and not record.run.error_status.message
    logs = dts_client.list_transfer_logs(parent=record.name, **CALL)
    assert any("No new files found matching" in m.message_text for m in logs)


@pytest.mark.parametrize(("hour", "minute"), [(0, 0), (8, 59), (9, 0)])
def test_run_time_template_is_utc_around_tokyo_midnight(
    dts_standin: DtsStandin, dts_client: Any, bucket: Bucket, hour: int, minute: int
) -> None:
    # GIVEN exports for several slots of one Tokyo day; 00:00 and 08:59 JST are on the
    # previous UTC day, 09:00 JST is on the same one
    slots = [slot(1, h, m) for h, m in ((0, 0), (8, 59), (9, 0))]
    for moment in slots:
        bucket.put(f"{export_root(moment)}/shop/shop.orders/1/part-00000-x-c000.gz.parquet")
    run_time = slot(1, hour, minute)
    config = s3_config(bucket.name)
    config["params"]["destination_table_name_template"] = "shop__orders_{run_date}"
    # WHEN a run of that slot starts
    record = run_once(dts_standin, dts_client, config, run_time)
    # THEN it reads its own export, and run_date is the UTC date
    assert record.matched_keys == [
        f"{export_root(run_time)}/shop/shop.orders/1/part-00000-x-c000.gz.parquet"
    ]
    assert record.destination_table == f"shop__orders_{run_time:%Y%m%d}"
    local_day = datetime.now(TOKYO).date() - timedelta(days=1)
    assert (run_time.date() < local_day) == (hour < 9)


def test_render_template_offsets_escapes_and_errors() -> None:
    moment = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    assert render_template('{run_time|"%Y%m%d%H%M"}', moment) == "202611261500"
    assert render_template('{run_time+9h|"%Y%m%d"}', moment) == "20261127"
    assert render_template('{run_time-1.5h|"%H%M"}', moment) == "1330"
    assert render_template('{run_time+1h30m15s|"%H%M%S"}', moment) == "163015"
    assert render_template("{run_date}", moment.astimezone(TOKYO)) == "20261126"
    assert render_template(r"a\{b\}", moment) == "a{b}"
    for bad in ('{run_time+1d|"%Y"}', "{run_time}", '{run_time + 1h|"%Y"}', "a{b", "{x}"):
        with pytest.raises(TemplateError):
            render_template(bad, moment)


# --------------------------------------------------------------------------- finishing


def test_outcome_policy_and_pubsub_notification(
    moto_server: Any, bucket: Bucket, make_topic: Any, pubsub_emulator: Any
) -> None:
    topic = make_topic("dts-runs")
    standin = start(
        0, moto_server.endpoint, pubsub_emulator.host, finish_delay=None, s3_region=S3_REGION
    )
    try:
        client = client_for(standin.target)
        run_time = slot(1, 0)
        bucket.put(f"{export_root(run_time)}/shop/shop.orders/1/part-00000-a-c000.gz.parquet")
        good = s3_config(bucket.name) | {"notification_pubsub_topic": topic.path}
        bad = s3_config(bucket.name) | {
            "notification_pubsub_topic": topic.path,
            "display_name": "rds2bq-prod:shop.items",
        }
        bad["params"] = bad["params"] | {"destination_table_name_template": "shop__items"}
        standin.set_outcome("shop__items", "FAILED", "Schema mismatch in column total")
        names = {start_run(client, create(client, c).name, run_time): c for c in (good, bad)}
        standin.finish_pending()
        messages = topic.pull(2)
    finally:
        standin.stop()
    assert len(messages) == 2
    by_state: dict[str, Any] = {}
    for message in messages:
        assert dict(message.attributes) == {
            "eventType": "TRANSFER_RUN_FINISHED",
            "payloadFormat": "JSON_API_V1",
        }
        payload = json.loads(message.data)
        by_state[payload["state"]] = payload
        assert payload["name"] in names
        for key in (
            "runTime",
            "scheduleTime",
            "startTime",
            "endTime",
            "errorStatus",
            "params",
            "destinationDatasetId",
            "dataSourceId",
        ):
            assert key in payload, key
        assert payload["runTime"] == run_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert payload["dataSourceId"] == "amazon_s3"
        assert payload["destinationDatasetId"] == "rds_shop"
        assert payload["params"]["access_key_id"] == "AKIATESTREADER"  # echoed, as DTS does
        assert "secret_access_key" not in payload["params"]
    assert by_state["SUCCEEDED"]["errorStatus"] == {}
    assert by_state["FAILED"]["errorStatus"] == {
        "code": 3,
        "message": "Schema mismatch in column total",
    }


def test_runs_finish_on_their_own_when_asked(moto_server: Any, bucket: Bucket) -> None:
    standin = start(0, moto_server.endpoint, None, finish_delay=0.0, s3_region=S3_REGION)
    try:
        client = client_for(standin.target)
        name = start_run(client, create(client, s3_config(bucket.name)).name, slot(1, 0))
        standin.wait_idle()
        run = client.get_transfer_run(name=name, **CALL)
    finally:
        standin.stop()
    assert run.state == types.TransferState.SUCCEEDED and run.end_time is not None
    assert standin.notifications == []  # no topic on this config


# --------------------------------------------------------------------------- faults


def test_latency_and_failure_bursts(dts_standin: DtsStandin, dts_client: Any) -> None:
    name = create(dts_client, s3_config("b")).name
    dts_standin.faults.latency = 0.2
    began = time.monotonic()
    dts_client.get_transfer_config(name=name, **CALL)
    assert time.monotonic() - began >= 0.2
    dts_standin.faults.latency = 0.0
    dts_standin.faults.fail_next(2, "UNAVAILABLE")
    dts_standin.faults.fail_next(1, "RESOURCE_EXHAUSTED")
    with pytest.raises(ValueError, match="not a canonical error status"):
        dts_standin.faults.fail_next(1, "UNAVAILBLE")
    # (over REST the client's exception follows the HTTP code: 503, then 429)
    for error in (gexc.ServiceUnavailable, gexc.ServiceUnavailable, gexc.TooManyRequests):
        with pytest.raises(error):
            start_run(dts_client, name, slot(1, 0))
    start_run(dts_client, name, slot(1, 0))
    assert len(dts_standin.runs()) == 1  # failed calls had no effect
    codes = [c.code for c in dts_standin.calls_of("StartManualTransferRuns")]
    assert codes == ["UNAVAILABLE", "UNAVAILABLE", "RESOURCE_EXHAUSTED", "OK"]


def test_a_slow_answer_can_hide_a_started_run(dts_standin: DtsStandin, dts_client: Any) -> None:
    name = create(dts_client, s3_config("b")).name
    dts_standin.faults.slow_next(1, seconds=0.6, method="StartManualTransferRuns")
    with pytest.raises(requests.Timeout):  # no answer: the outcome is unknown
        dts_client.start_manual_transfer_runs(
            request={"parent": name, "requested_run_time": slot(1, 0)}, retry=None, timeout=0.2
        )
    assert len(dts_standin.runs(name)) == 1  # DTS started it all the same


def test_fan_out_cut_off_after_n_starts(dts_standin: DtsStandin, dts_client: Any) -> None:
    names = [
        create(dts_client, s3_config("b") | {"display_name": f"rds2bq-prod:s.t{i}"}).name
        for i in range(4)
    ]
    dts_standin.faults.fail_after_starts(2)
    started, failed = [], []
    for name in names:
        try:
            started.append(start_run(dts_client, name, slot(1, 0)))
        except gexc.ServiceUnavailable:
            failed.append(name)
    assert len(started) == 2 and failed == names[2:]
    dts_standin.faults.clear()
    start_run(dts_client, names[3], slot(1, 0))

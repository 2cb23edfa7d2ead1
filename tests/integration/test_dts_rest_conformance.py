"""The DTS stand-in speaks the real REST format (the DTS REST API v1 reference).

Two witnesses: the official client with ``transport="rest"`` (its URLs, query parameters and JSON
come from the service's own ``google.api.http`` rules and protobuf's JSON mapping), and raw HTTP
for what a client library hides (the error body, the HTTP codes, enum encoding, refusals).
The stand-in parses every body with unknown fields refused, as Google does, so the production
adapter's requests are checked against the same format whenever it talks to it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery_datatransfer_v1 as dts

from devstack.dts import DtsStandin
from tests.integration.conftest import Raw

pytestmark = pytest.mark.integration

PARENT = "projects/rds2bq-test/locations/asia-northeast1"
RUN_TIME = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)
RFC3339_UTC = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"
CALL = {"retry": None, "timeout": 10}


def config_json(display_name: str = "rds2bq-prod:shop.orders") -> dict[str, Any]:
    """A TransferConfig in the REST API's JSON."""
    return {
        "displayName": display_name,
        "dataSourceId": "amazon_s3",
        "destinationDatasetId": "rds_shop",
        "params": {
            "data_path": "s3://b/rds2bq/*.parquet",
            "destination_table_name_template": "shop__orders",
            "access_key_id": "AKIACONFORMANCE",
            "secret_access_key": "conformance-secret",
            "file_format": "PARQUET",
            "write_disposition": "WRITE_TRUNCATE",
            "decimal_target_types": ["NUMERIC", "BIGNUMERIC", "STRING"],
        },
        "scheduleOptions": {"disableAutoScheduling": True},
    }


@pytest.fixture
def rest_client(dts_standin: DtsStandin) -> dts.DataTransferServiceClient:
    return dts.DataTransferServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": dts_standin.endpoint},
    )


def test_the_official_rest_client_runs_the_whole_lifecycle(
    dts_standin: DtsStandin, rest_client: dts.DataTransferServiceClient
) -> None:
    # create
    created = rest_client.create_transfer_config(
        request={
            "parent": PARENT,
            "transfer_config": {
                "display_name": "rds2bq-prod:shop.orders",
                "data_source_id": "amazon_s3",
                "destination_dataset_id": "rds_shop",
                "params": config_json()["params"],
                "schedule_options": {"disable_auto_scheduling": True},
                "notification_pubsub_topic": "projects/rds2bq-test/topics/rds2bq-events",
            },
        },
        **CALL,
    )
    assert created.name.startswith(PARENT + "/transferConfigs/")
    assert created.schedule_options.disable_auto_scheduling
    assert created.params["access_key_id"] == "AKIACONFORMANCE"
    assert "secret_access_key" not in created.params
    assert created.update_time is not None and created.dataset_region == "asia-northeast1"
    # list, filtered by data source
    listed = list(
        rest_client.list_transfer_configs(
            request={"parent": PARENT, "data_source_ids": ["amazon_s3"]}, **CALL
        )
    )
    assert [c.name for c in listed] == [created.name]
    assert not list(
        rest_client.list_transfer_configs(
            request={"parent": PARENT, "data_source_ids": ["google_cloud_storage"]}, **CALL
        )
    )
    # start a manual run, get it, list it
    started = rest_client.start_manual_transfer_runs(
        request={"parent": created.name, "requested_run_time": RUN_TIME}, **CALL
    )
    [run] = started.runs
    assert run.name.startswith(created.name + "/runs/")
    assert run.run_time == RUN_TIME and run.state == dts.TransferState.PENDING
    got = rest_client.get_transfer_run(name=run.name, **CALL)
    assert (got.name, got.run_time, got.state) == (run.name, RUN_TIME, dts.TransferState.PENDING)
    assert got.destination_dataset_id == "rds_shop" and got.data_source_id == "amazon_s3"
    dts_standin.finish_pending()
    finished = rest_client.get_transfer_run(name=run.name, **CALL)
    assert finished.state == dts.TransferState.FAILED  # bucket "b" does not exist
    assert finished.error_status.code == 3 and finished.end_time is not None
    runs = list(
        rest_client.list_transfer_runs(
            request={"parent": created.name, "states": [dts.TransferState.FAILED]}, **CALL
        )
    )
    assert [r.name for r in runs] == [run.name]
    # delete: gone, with its runs
    rest_client.delete_transfer_config(name=created.name, **CALL)
    assert not list(rest_client.list_transfer_configs(request={"parent": PARENT}, **CALL))
    assert dts_standin.runs() == []
    methods = [c.method for c in dts_standin.calls]
    assert methods[0] == "CreateTransferConfig" and methods[-2] == "DeleteTransferConfig"


def test_bodies_are_camel_case_json_with_rfc3339_times_and_enum_names(raw: Raw) -> None:
    status, created = raw("POST", f"{PARENT}/transferConfigs", config_json())
    assert status == 200
    assert created["displayName"] == "rds2bq-prod:shop.orders"
    assert created["scheduleOptions"] == {"disableAutoScheduling": True}
    assert created["destinationDatasetId"] == "rds_shop"
    assert "display_name" not in created and "secret_access_key" not in created["params"]
    assert created["updateTime"].endswith("Z")
    status, started = raw(
        "POST", f"{created['name']}:startManualRuns", {"requestedRunTime": "2024-01-02T03:04:05Z"}
    )
    assert status == 200
    [run] = started["runs"]
    assert run["runTime"] == "2024-01-02T03:04:05Z"
    assert run["state"] == "PENDING"  # by name, unless numbers are asked for
    assert run["params"]["access_key_id"] == "AKIACONFORMANCE"
    assert re.match(RFC3339_UTC, run["scheduleTime"]), run["scheduleTime"]
    status, as_number = raw("GET", run["name"], **{"$alt": "json;enum-encoding=int"})
    assert (status, as_number["state"]) == (200, 2)
    status, page = raw("GET", f"{created['name']}/runs", pageSize="1")
    assert status == 200 and [r["name"] for r in page["transferRuns"]] == [run["name"]]
    assert "nextPageToken" not in page
    status, empty = raw("DELETE", created["name"])
    assert (status, empty) == (200, {})


def test_update_mask_takes_camel_case_and_snake_case_paths(raw: Raw) -> None:
    _, created = raw("POST", f"{PARENT}/transferConfigs", config_json())
    for mask, topic in (
        ("notificationPubsubTopic", "projects/p/topics/camel"),
        ("notification_pubsub_topic", "projects/p/topics/snake"),
    ):
        status, updated = raw(
            "PATCH",
            created["name"],
            {"displayName": "ignored: not in the mask", "notificationPubsubTopic": topic},
            updateMask=mask,
        )
        assert status == 200, updated
        assert updated["notificationPubsubTopic"] == topic
        assert updated["displayName"] == "rds2bq-prod:shop.orders"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("INVALID_ARGUMENT", 400),
        ("FAILED_PRECONDITION", 400),
        ("UNAUTHENTICATED", 401),
        ("PERMISSION_DENIED", 403),
        ("NOT_FOUND", 404),
        ("ALREADY_EXISTS", 409),
        ("ABORTED", 409),
        ("RESOURCE_EXHAUSTED", 429),
        ("INTERNAL", 500),
        ("UNAVAILABLE", 503),
        ("DEADLINE_EXCEEDED", 504),
    ],
)
def test_errors_are_google_json_errors_with_their_http_code(
    dts_standin: DtsStandin, raw: Raw, status: str, code: int
) -> None:
    dts_standin.faults.fail_next(1, status, "ListTransferConfigs", "injected for conformance")
    got, body = raw("GET", f"{PARENT}/transferConfigs")
    assert got == code
    assert body == {
        "error": {"code": code, "message": "injected for conformance", "status": status}
    }


def test_what_google_refuses_is_refused_in_its_words(raw: Raw) -> None:
    # an unknown field in the body (a misspelt camelCase name, say)
    bad = config_json() | {"notificationPubSubTopic": "projects/p/topics/t"}
    status, body = raw("POST", f"{PARENT}/transferConfigs", bad)
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert "notificationPubSubTopic" in body["error"]["message"]
    # an unknown query parameter
    status, body = raw("GET", f"{PARENT}/transferConfigs", dataSource="amazon_s3")
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert "Cannot bind query parameter" in body["error"]["message"]
    # a body that is not JSON
    status, body = raw("POST", f"{PARENT}/transferConfigs", "not an object")
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    # a missing resource, and a URL that is no DTS method
    status, body = raw("GET", f"{PARENT}/transferConfigs/nope")
    assert (status, body["error"]["status"]) == (404, "NOT_FOUND")
    status, body = raw("GET", "projects/p/somethingElse")
    assert (status, body["error"]["status"]) == (404, "NOT_FOUND")

"""Entry points through functions-framework's test client, over in-memory fakes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app

from orchestrator import wiring
from tests.unit.test_service import SLOT, World

MAIN = str(Path(__file__).resolve().parents[2] / "main.py")


class FakeWiring:
    def __init__(self, world: World) -> None:
        from orchestrator.app.status import StatusReader

        self.service = world.service
        self.status = StatusReader(world.ledger, world.clock)


@pytest.fixture
def world() -> Iterator[World]:
    w = World(["shop.orders", "shop.customers"])
    wiring.install(FakeWiring(w))  # type: ignore[arg-type]
    yield w
    wiring.reset()


def client(target: str) -> Any:
    return create_app(target, MAIN, "http").test_client()


def test_start_export_from_cloud_scheduler_header(world: World) -> None:
    headers = {"X-CloudScheduler-ScheduleTime": "2026-11-27T15:00:00Z"}
    response = client("start_export").post("/", headers=headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["run"]["run_id"] == "202611271500"
    assert body["run"]["state"] == "EXPORTING"
    again = client("start_export").post("/", headers=headers)
    assert again.status_code == 200 and world.exporter.start_calls == 1


def test_start_export_answers_with_the_view_status_returns(world: World) -> None:
    headers = {"X-CloudScheduler-ScheduleTime": "2026-11-27T15:00:00Z"}
    started = client("start_export").post("/", headers=headers).get_json()["run"]
    status = client("status")
    shown = status.get("/?run_id=202611271500").get_json()
    assert started == shown
    assert (
        started["export"]["task_id"] == "rds2bq-prod-20261127150000"
    )  # export ids carry the seconds
    text = json.dumps(started)
    for internal in ("handoff_owner", "lease", "outbox", "last_update_time"):
        assert internal not in text
    # A retry after the hand-off shows the tables, as status does.
    world.complete(["shop.orders", "shop.customers"])
    world.service.poll()
    world.clock.advance(minutes=5)
    world.service.poll()
    again = client("start_export").post("/", headers=headers).get_json()["run"]
    assert again == status.get("/?run_id=202611271500").get_json()
    assert [t["table"] for t in again["tables"]] == ["shop.customers", "shop.orders"]


def test_start_export_with_a_slot_in_the_body(world: World) -> None:
    response = client("start_export").post("/", json={"slot": "2026-11-28T00:00:00+09:00"})
    assert response.status_code == 200
    assert response.get_json()["run"]["run_id"] == "202611271500"


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        ("{not json", {}, "not valid JSON"),
        ('["a list"]', {}, "must be a JSON object"),
        ('{"slot": "2026-11-27T15:00:00Z", "tables": []}', {}, "unknown field(s): tables"),
        ('{"slot": "yesterday"}', {}, "not an RFC 3339 timestamp"),
        ('{"slot": "2026-11-27T15:00:00"}', {}, "has no time zone"),
        ('{"slot": "2030-01-01T00:00:00Z"}', {}, "in the future"),
        ("", {}, "no slot"),
        ("", {"X-CloudScheduler-ScheduleTime": "garbage"}, "X-CloudScheduler-ScheduleTime"),
    ],
)
def test_bad_requests_get_400_with_the_reason(
    world: World, body: str, headers: dict[str, str], reason: str
) -> None:
    response = client("start_export").post(
        "/", data=body, headers={"Content-Type": "application/json", **headers}
    )
    assert response.status_code == 400
    assert reason in response.get_json()["message"]
    assert world.ledger.runs == {}


def test_transient_fault_is_503_and_permanent_is_422(world: World) -> None:
    world.exporter.other_running = 5
    response = client("start_export").post("/", json={"slot": "2026-11-27T15:00:00Z"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "60"
    assert "already running" in response.get_json()["message"]
    world.exporter.other_running = 0
    world.exporter.clusters.clear()
    response = client("start_export").post("/", json={"slot": "2026-11-27T15:01:00Z"})
    assert response.status_code == 404  # the source is gone: not found, not retryable


def test_poll_replies_with_what_it_did(world: World) -> None:
    world.service.start_export(SLOT)
    world.clock.advance(minutes=1)
    response = client("poll").post("/")
    assert response.status_code == 200
    runs = response.get_json()["runs"]
    assert runs == [
        {"run_id": "202611271500", "state": "EXPORTING", "action": "export-starting", "percent": 0}
    ]
    assert client("poll").post("/", json={"x": 1}).status_code == 400


def test_an_unexpected_error_is_500_without_details(world: World) -> None:
    def boom() -> Any:
        raise RuntimeError("secret-ish internals")

    world.service.ledger.open_runs = boom  # type: ignore[method-assign]
    response = client("poll").post("/")
    assert response.status_code == 500
    assert "internals" not in json.dumps(response.get_json())

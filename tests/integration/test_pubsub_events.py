"""PubsubEventBus through the Pub/Sub emulator: what we publish is what the notify path parses."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from google.cloud import pubsub_v1

from devstack.processes import Service, free_port
from orchestrator.adapters.pubsub import PubsubEventBus, build_event_bus, build_publisher
from orchestrator.core.errors import PermanentError, TransientError
from orchestrator.core.events import Event, ExportLate, ExportStarted, RunClosed, TableFailed
from orchestrator.core.model import RunState
from orchestrator.core.notifications import (
    DtsRunState,
    PubsubMessage,
    TransferRunFinished,
    message_from_push,
    parse_message,
)
from tests.conftest import GCP_PROJECT

pytestmark = pytest.mark.integration

EVENTS = Path(__file__).resolve().parents[1] / "events"
AT = datetime(2026, 11, 27, 15, 14, 43, 250000, tzinfo=UTC)


@dataclass
class Topic:
    path: str
    subscription: str
    publisher: pubsub_v1.PublisherClient  # a plain client, to set up and to publish as DTS does
    subscriber: pubsub_v1.SubscriberClient
    bus_publisher: Any  # the client the bus under test publishes with, built as in production


@pytest.fixture
def topic(pubsub_emulator: Service) -> Iterator[Topic]:
    # The clients read the variable when they are built; conftest restores os.environ after.
    os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_emulator.host
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    suffix = uuid.uuid4().hex[:8]
    path = publisher.topic_path(GCP_PROJECT, f"rds2bq-events-{suffix}")
    subscription = subscriber.subscription_path(GCP_PROJECT, f"rds2bq-notify-{suffix}")
    publisher.create_topic(name=path, timeout=30)
    subscriber.create_subscription(name=subscription, topic=path, timeout=30)
    bus_publisher = build_publisher()
    yield Topic(path, subscription, publisher, subscriber, bus_publisher)
    subscriber.delete_subscription(subscription=subscription, timeout=30)
    publisher.delete_topic(topic=path, timeout=30)
    subscriber.close()
    bus_publisher.stop()


def pull(topic: Topic, count: int, within: float = 20.0) -> list[PubsubMessage]:
    """Pull and acknowledge until ``count`` messages arrived, as PubsubMessage."""
    found: list[PubsubMessage] = []
    deadline = time.monotonic() + within
    while len(found) < count and time.monotonic() < deadline:
        response = topic.subscriber.pull(
            subscription=topic.subscription, max_messages=max(count, 10), timeout=10
        )
        for received in response.received_messages:
            m = received.message
            found.append(PubsubMessage(m.data, dict(m.attributes), m.message_id, m.publish_time))
        if response.received_messages:
            topic.subscriber.acknowledge(
                subscription=topic.subscription,
                ack_ids=[r.ack_id for r in response.received_messages],
            )
    return found


def test_published_events_come_back_parsed_as_the_same_events(topic: Topic) -> None:
    # GIVEN events as the state machine emits them (datetimes inside their data)
    events = [
        ExportStarted(
            "202611271500",
            AT,
            export_task_id="rds2bq-prod-202611271500",
            snapshot_time=AT,
            tables=3,
        ),
        TableFailed(
            "202611271500",
            AT + timedelta(minutes=5),
            table="shop.orders",
            error_message="Access Denied <&>",
            error_code=7,
        ),
        RunClosed("202611271500", AT + timedelta(hours=1), state=RunState.PARTIAL),
    ]

    # WHEN published through the bus and pulled back from the emulator
    PubsubEventBus(topic.bus_publisher, topic.path, timeout=20).publish(events)
    messages = pull(topic, len(events))

    # THEN each parses to its event (datetimes back as datetimes), with its attributes on the wire
    parsed = [parse_message(m) for m in messages]
    assert all(isinstance(p, Event) for p in parsed)
    parsed.sort(key=lambda p: p.run_time if isinstance(p, TransferRunFinished) else p.at)
    assert [p.kind for p in parsed if isinstance(p, Event)] == [e.kind for e in events]
    assert parsed[0] == ExportStarted(
        "202611271500",
        AT,
        export_task_id="rds2bq-prod-202611271500",
        snapshot_time=datetime(2026, 11, 27, 15, 14, 43, 250000, tzinfo=UTC),
        tables=3,
    )
    assert parsed[1:] == events[1:]
    assert all(m.attributes["runId"] == "202611271500" for m in messages)
    assert all(m.message_id and m.publish_time is not None for m in messages)


def test_a_dts_notification_on_the_same_topic_parses_without_its_secrets(topic: Topic) -> None:
    # GIVEN what DTS publishes when a run fails (canaries in params)
    canonical = message_from_push(json.loads((EVENTS / "dts_run_failed.json").read_text()))
    topic.publisher.publish(topic.path, canonical.data, **canonical.attributes).result(timeout=20)

    # WHEN pulled and parsed
    (message,) = pull(topic, 1)
    note = parse_message(message)

    # THEN a typed run-finished record with DTS's error and nothing secret
    assert isinstance(note, TransferRunFinished)
    assert note.state is DtsRunState.FAILED
    assert "Access Denied" in note.error_message
    assert "CANARY" not in repr(note)


def test_build_event_bus_honours_the_emulator(topic: Topic) -> None:
    settings: Any = SimpleNamespace(topic_path=topic.path)
    bus = build_event_bus(settings, timeout=20)

    bus.publish([ExportLate("202611271500", AT, percent=40)])

    (message,) = pull(topic, 1)
    assert parse_message(message) == ExportLate("202611271500", AT, percent=40)


def test_nothing_to_publish_is_a_no_op(topic: Topic) -> None:
    PubsubEventBus(topic.bus_publisher, topic.path).publish([])


def test_a_missing_topic_is_permanent(topic: Topic) -> None:
    missing = topic.publisher.topic_path(GCP_PROJECT, "no-such-topic")
    bus = PubsubEventBus(topic.bus_publisher, missing, timeout=20)

    with pytest.raises(PermanentError, match="topic does not exist"):
        bus.publish([RunClosed("202611271500", AT, state=RunState.FAILED)])


def test_an_event_that_cannot_be_encoded_is_permanent_and_nothing_is_sent(topic: Topic) -> None:
    bus = PubsubEventBus(topic.bus_publisher, topic.path, timeout=20)
    good = RunClosed("202611271500", AT, state=RunState.FAILED)
    naive = datetime(2026, 11, 27, 15, 14)
    bad = RunClosed("202611271500", naive, state=RunState.FAILED)

    with pytest.raises(PermanentError, match="cannot be encoded"):
        bus.publish([good, bad])

    # A sentinel published afterwards arrives alone: the good event did not go out before it.
    sentinel = ExportStarted("202611271501", AT)
    bus.publish([sentinel])
    assert [parse_message(m) for m in pull(topic, 1)] == [sentinel]


def test_an_unreachable_pubsub_is_transient_and_bounded() -> None:
    # GIVEN a bus whose client points at a port where nothing listens
    os.environ["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{free_port()}"
    publisher = build_publisher()
    bus = PubsubEventBus(publisher, f"projects/{GCP_PROJECT}/topics/t", timeout=1.5)

    started = time.monotonic()
    with pytest.raises(TransientError):
        bus.publish([RunClosed("202611271500", AT, state=RunState.FAILED)])

    assert time.monotonic() - started < 5.0
    publisher.stop()


def test_more_events_than_one_publish_request_takes_all_arrive(topic: Topic) -> None:
    # GIVEN more events than topics.publish accepts in one request (1,000)
    events = [TableFailed("202611271500", AT, table=f"shop.t{i:04d}") for i in range(1_001)]

    # WHEN published at once
    PubsubEventBus(topic.bus_publisher, topic.path, timeout=30).publish(events)

    # THEN every one arrives, once
    tables = [parse_message(m).table for m in pull(topic, 1_001, within=60)]  # type: ignore[union-attr]
    assert sorted(tables) == [f"shop.t{i:04d}" for i in range(1_001)]


def test_doctors_topic_probe_reads_the_topic(topic: Topic) -> None:
    from orchestrator.adapters.probes import TopicProbe
    from orchestrator.core.errors import NotFoundError

    probe = TopicProbe(topic.bus_publisher)

    assert probe.topic(topic.path).path == topic.path
    assert probe.topic(topic.path).schema == ""
    with pytest.raises(NotFoundError, match="does not exist"):
        probe.topic(f"projects/{GCP_PROJECT}/topics/no-such-topic")
    # the emulator has no IAM (getIamPolicy fails): the probe says it could not tell (None),
    # rather than "nobody may publish" ([])
    assert probe.publishers(topic.path) is None

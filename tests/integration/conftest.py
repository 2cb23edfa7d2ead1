"""DTS and BigQuery stand-in fixtures (each test gets fresh ones: they start in milliseconds)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import grpc
import pytest
import urllib3

from devstack.bigquery_standin import BigQueryStandin, start_bigquery
from devstack.dts import DtsStandin, client_for, start
from orchestrator.config import Settings, load_settings
from tests.conftest import GCP_PROJECT

S3_REGION = "ap-northeast-1"
S3_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass
class Bucket:
    client: Any
    name: str

    def put(self, *keys: str) -> None:
        for key in keys:
            body = b"" if key.endswith("_SUCCESS") else b"PAR1"
            self.client.put_object(Bucket=self.name, Key=key, Body=body)


@pytest.fixture
def bucket(moto_server: Any) -> Bucket:
    import boto3

    client = boto3.client("s3", endpoint_url=moto_server.endpoint, region_name=S3_REGION, **S3_KEYS)
    name = f"exports-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": S3_REGION})
    return Bucket(client, name)


@pytest.fixture
def dts_standin(moto_server: Any) -> Iterator[DtsStandin]:
    """Runs stay PENDING until ``finish_pending()``; no Pub/Sub unless a test asks for one."""
    standin = start(0, moto_server.endpoint, None, finish_delay=None, s3_region=S3_REGION)
    yield standin
    standin.stop()


@pytest.fixture
def dts_client(dts_standin: DtsStandin) -> Any:
    """The official DataTransferServiceClient over REST, pointed at the stand-in: the client the
    production adapter is built on, and what a person or a script would use."""
    return client_for(dts_standin.target)


class Raw:
    """Plain HTTP against the stand-in: status code and decoded JSON body."""

    def __init__(self, endpoint: str) -> None:
        self.base = endpoint + "/v1/"
        self.pool = urllib3.PoolManager(retries=False)

    def __call__(
        self, method: str, path: str, body: Any = None, **query: str
    ) -> tuple[int, dict[str, Any]]:
        url = self.base + path + ("?" + urlencode(query) if query else "")
        reply = self.pool.request(
            method,
            url,
            body=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            timeout=10.0,
        )
        assert reply.headers["Content-Type"].startswith("application/json")
        return reply.status, json.loads(reply.data)


@pytest.fixture
def raw(dts_standin: DtsStandin) -> Raw:
    return Raw(dts_standin.endpoint)


@pytest.fixture
def bigquery_standin() -> Iterator[BigQueryStandin]:
    standin = start_bigquery()
    yield standin
    standin.stop()


@dataclass
class Topic:
    """A topic and a pull subscription on the Pub/Sub emulator."""

    path: str
    subscription: str
    subscriber: Any

    def pull(self, count: int, timeout: float = 10.0) -> list[Any]:
        received: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(received) < count and time.monotonic() < deadline:
            response = self.subscriber.pull(
                request={"subscription": self.subscription, "max_messages": 10}, timeout=5
            )
            if response.received_messages:
                self.subscriber.acknowledge(
                    request={
                        "subscription": self.subscription,
                        "ack_ids": [m.ack_id for m in response.received_messages],
                    }
                )
            received += [m.message for m in response.received_messages]
        return received


@pytest.fixture
def make_topic(pubsub_emulator: Any) -> Iterator[Callable[[str], Topic]]:
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    publisher = pubsub_v1.PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(pubsub_emulator.host))
    )
    subscriber = pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(pubsub_emulator.host))
    )

    def make(name: str) -> Topic:
        suffix = uuid.uuid4().hex[:8]
        topic = f"projects/{GCP_PROJECT}/topics/{name}-{suffix}"
        subscription = f"projects/{GCP_PROJECT}/subscriptions/{name}-{suffix}"
        publisher.create_topic(request={"name": topic}, timeout=30)
        subscriber.create_subscription(request={"name": subscription, "topic": topic}, timeout=30)
        return Topic(topic, subscription, subscriber)

    yield make
    publisher.stop()
    subscriber.close()


def make_settings(
    bucket: str = "acme-rds-exports", tables: str = "shop.orders\nshop.orders_items\n", **env: str
) -> Settings:
    """Settings as an operator would write them (only the tables file is given inline)."""
    environ = {
        "RDS2BQ_ENV": "prod",
        "RDS2BQ_AWS_REGION": S3_REGION,
        "RDS2BQ_SOURCE_ID": "shop-aurora",
        "RDS2BQ_S3_BUCKET": bucket,
        "RDS2BQ_KMS_KEY_ID": "arn:aws:kms:ap-northeast-1:123456789012:key/test",
        "RDS2BQ_EXPORT_ROLE_ARN": "arn:aws:iam::123456789012:role/rds2bq-export",
        "RDS2BQ_AWS_AUTH": "default",
        "RDS2BQ_GCP_PROJECT": GCP_PROJECT,
        "RDS2BQ_BQ_DATASET": "rds_shop",
        "RDS2BQ_SECRETS_BACKEND": "env",
    }
    environ.update({f"RDS2BQ_{k.upper()}": v for k, v in env.items()})
    return load_settings(environ, read_text=lambda _path: tables)

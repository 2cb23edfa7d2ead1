"""SlackWebhookNotifier against the Slack stand-in over real HTTP: retries, refusals, bounds, and
the webhook URL (a credential) never in a log line or an error."""

from __future__ import annotations

import logging
import socket
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from devstack import slack_standin
from devstack.processes import free_port
from orchestrator.adapters.slack_webhook import RetryPolicy, SlackWebhookNotifier
from orchestrator.core.errors import PermanentError, TransientError

pytestmark = pytest.mark.integration

CANARY = "CANARYhook7f3e9c"
SECRET_NAME = "rds2bq-slack-webhook"
PAYLOAD = {
    "text": "hello",
    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}],
}


@dataclass
class DictSecrets:
    """A Secrets port over a dict, counting reads."""

    values: dict[str, str]
    reads: list[str] = field(default_factory=list)

    def get(self, name: str) -> str:
        self.reads.append(name)
        return self.values[name]


@dataclass
class FakeTime:
    """Injected clock and sleep: waits cost nothing, yet the notifier sees time pass."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(scope="module")
def standin() -> Iterator[slack_standin.SlackStandIn]:
    server = slack_standin.start(path=f"/services/T000/B000/{CANARY}")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _clean(standin: slack_standin.SlackStandIn, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    standin.reset()
    caplog.set_level(logging.DEBUG)  # everything, third-party loggers included
    yield
    assert CANARY not in caplog.text


def notifier(url: str, fake: FakeTime, **policy: Any) -> tuple[SlackWebhookNotifier, DictSecrets]:
    secrets = DictSecrets({SECRET_NAME: url + "\n"})  # secrets often end in a newline
    return (
        SlackWebhookNotifier(
            secrets, SECRET_NAME, policy=RetryPolicy(**policy), sleep=fake.sleep, clock=fake.clock
        ),
        secrets,
    )


def assert_no_canary(exc: BaseException) -> None:
    rendered = "".join(traceback.format_exception(exc))  # the whole chain, causes included
    assert CANARY not in rendered
    assert CANARY not in repr(exc.args)


def test_posts_and_reads_the_secret_lazily_once(standin: slack_standin.SlackStandIn) -> None:
    fake = FakeTime()
    hook, secrets = notifier(standin.url, fake)
    assert secrets.reads == []  # nothing read at construction (cold start, no secret needed)

    hook.post(PAYLOAD)
    hook.post(PAYLOAD)

    assert standin.payloads == [PAYLOAD, PAYLOAD]
    assert secrets.reads == [SECRET_NAME]
    assert fake.sleeps == []


def test_429_retry_after_is_honoured(standin: slack_standin.SlackStandIn) -> None:
    fake = FakeTime()
    hook, _ = notifier(standin.url, fake)
    standin.fail_next(429, 1, retry_after=2)

    hook.post(PAYLOAD)

    assert standin.statuses == [429, 200]
    assert fake.sleeps == [2.0]
    assert standin.payloads == [PAYLOAD]


def test_429_retry_after_is_capped(standin: slack_standin.SlackStandIn) -> None:
    fake = FakeTime()
    hook, _ = notifier(standin.url, fake, retry_after_cap_seconds=5, max_total_seconds=30)
    standin.fail_next(429, 1, retry_after=3600)

    hook.post(PAYLOAD)

    assert fake.sleeps == [5.0]


def test_429_asking_for_more_than_the_budget_gives_up_at_once(
    standin: slack_standin.SlackStandIn,
) -> None:
    fake = FakeTime()
    hook, _ = notifier(standin.url, fake, retry_after_cap_seconds=60, max_total_seconds=10)
    standin.fail_next(429, 1, retry_after=30)

    with pytest.raises(TransientError, match="HTTP 429 rate_limited") as caught:
        hook.post(PAYLOAD)

    assert standin.statuses == [429]
    assert fake.sleeps == []
    assert_no_canary(caught.value)


def test_500_storm_exhausts_attempts_with_growing_jittered_backoff(
    standin: slack_standin.SlackStandIn,
) -> None:
    fake = FakeTime()
    hook, _ = notifier(standin.url, fake, max_attempts=5, max_total_seconds=60)
    standin.fail_next(500, 100)

    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        hook.post(PAYLOAD)
    elapsed = time.monotonic() - started

    assert standin.statuses == [500] * 5
    assert len(fake.sleeps) == 4
    for attempt, pause in enumerate(fake.sleeps, start=1):
        ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
        assert ceiling / 2 <= pause <= ceiling
    assert "5 attempt(s)" in str(caught.value) and "HTTP 500 rollup_error" in str(caught.value)
    assert elapsed < 2.0  # real time: the sleeps were injected
    assert_no_canary(caught.value)


def test_500_storm_is_bounded_by_total_time_before_attempts(
    standin: slack_standin.SlackStandIn,
) -> None:
    fake = FakeTime()
    hook, _ = notifier(standin.url, fake, max_attempts=100, max_total_seconds=20)
    standin.fail_next(500, 1000)

    with pytest.raises(TransientError):
        hook.post(PAYLOAD)

    assert sum(fake.sleeps) <= 20
    assert len(standin.statuses) < 100


def test_then_success_after_a_few_500s(standin: slack_standin.SlackStandIn) -> None:
    fake = FakeTime()
    hook, _ = notifier(standin.url, fake)
    standin.fail_next(500, 2)
    standin.fail_next(503, 1)

    hook.post(PAYLOAD)

    assert standin.statuses == [500, 500, 503, 200]
    assert standin.payloads == [PAYLOAD]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, "invalid_payload"),
        (403, "action_prohibited"),
        (404, "no_service"),
        (410, "channel_is_archived"),
    ],
)
def test_refusals_are_permanent_and_not_retried(
    standin: slack_standin.SlackStandIn, status: int, body: str
) -> None:
    fake = FakeTime()
    hook, _ = notifier(standin.url, fake)
    standin.fail_next(status, 1)

    with pytest.raises(PermanentError) as caught:
        hook.post(PAYLOAD)

    assert f"HTTP {status} {body}" in str(caught.value)
    assert standin.statuses == [status]
    assert fake.sleeps == []
    assert_no_canary(caught.value)


def test_a_payload_over_slack_limits_is_refused_by_the_standin(
    standin: slack_standin.SlackStandIn,
) -> None:
    fake = FakeTime()
    hook, _ = notifier(standin.url, fake)
    too_many = {"text": "x", "blocks": [{"type": "divider"}] * 51}

    with pytest.raises(PermanentError, match="HTTP 400 invalid_payload") as caught:
        hook.post(too_many)

    assert standin.payloads == []
    assert_no_canary(caught.value)


def test_a_webhook_that_never_answers_times_out(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a port that accepts connections (kernel backlog) but never answers
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/services/T000/B000/{CANARY}"
        fake = FakeTime()
        hook, _ = notifier(url, fake, max_attempts=2, timeout_seconds=0.2)

        started = time.monotonic()
        with pytest.raises(TransientError, match="2 attempt") as caught:
            hook.post(PAYLOAD)
        elapsed = time.monotonic() - started

    assert elapsed < 2.0
    assert "timed out" in str(caught.value).lower()
    assert_no_canary(caught.value)


def test_connection_refused_is_transient() -> None:
    url = f"http://127.0.0.1:{free_port()}/services/T000/B000/{CANARY}"
    fake = FakeTime()
    hook, _ = notifier(url, fake, max_attempts=3)

    with pytest.raises(TransientError, match="3 attempt") as caught:
        hook.post(PAYLOAD)

    assert len(fake.sleeps) == 2
    assert_no_canary(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"http://hooks.example.com/services/T000/B000/{CANARY}",
        f"ftp://127.0.0.1/services/{CANARY}",
        f"file:///etc/{CANARY}",
        f"not a url {CANARY}",
    ],
)
def test_a_secret_that_is_not_an_https_url_is_refused_without_quoting_it(url: str) -> None:
    hook, _ = notifier(url, FakeTime())

    with pytest.raises(PermanentError, match=SECRET_NAME) as caught:
        hook.post(PAYLOAD)

    assert_no_canary(caught.value)


def test_retries_are_logged_with_the_host_only(
    standin: slack_standin.SlackStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeTime()
    hook, _ = notifier(standin.url, fake)
    standin.fail_next(500, 1)

    hook.post(PAYLOAD)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "127.0.0.1" in warnings[0] and "HTTP 500" in warnings[0]

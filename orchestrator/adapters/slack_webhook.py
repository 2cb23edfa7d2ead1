"""Slack incoming webhook: post one Block Kit payload, retrying only what Slack says is transient.

The webhook URL is a credential (anyone holding it can post to the channel). It is read from the
Secrets port on first use, kept in memory only, and never logged or put in an error: messages name
the host, which is not secret. The stdlib client is used on purpose: requests/urllib3 and
slack_sdk log the request path (the secret part of the URL) at DEBUG level, slack_sdk even the
full URL at INFO when it retries.

Webhooks take no idempotency key: a timeout after Slack received a post may repeat the message on
retry. A repeated alert is better than a lost one.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from orchestrator.app.ports import Secrets
from orchestrator.core.errors import PermanentError, TransientError
from orchestrator.core.redaction import redact

if TYPE_CHECKING:
    from orchestrator.config import Settings

logger = logging.getLogger(__name__)

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_MAX_REPLY_BYTES = 64 * 1024
_REPLY_TEXT_LIMIT = 300


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on one ``post``: attempts AND wall time, whichever runs out first."""

    max_attempts: int = 5
    max_total_seconds: float = 30.0
    timeout_seconds: float = 10.0  # per HTTP attempt (connect and each read)
    backoff_base_seconds: float = 0.5
    backoff_cap_seconds: float = 8.0
    retry_after_cap_seconds: float = 20.0  # Slack's Retry-After is honoured up to this


@dataclass(frozen=True)
class _Reply:
    status: int  # 0: no HTTP answer (connection refused, timeout, reset)
    text: str
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def transient(self) -> bool:
        return self.status in (0, 408, 429) or self.status >= 500

    def describe(self) -> str:
        return f"HTTP {self.status} {self.text}".strip() if self.status else self.text


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook never redirects; following one would re-send the payload somewhere else."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class SlackWebhookNotifier:
    """A ``Notifier`` for one incoming webhook whose URL is held by the Secrets port."""

    def __init__(
        self,
        secrets: Secrets,
        secret_name: str,
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._secrets = secrets
        self._secret_name = secret_name
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._url: str | None = None
        self._host = ""
        self._opener = urllib.request.build_opener(_NoRedirect)

    @classmethod
    def from_settings(
        cls, settings: Settings, secrets: Secrets, **options: Any
    ) -> SlackWebhookNotifier:
        return cls(secrets, settings.slack_webhook_secret, **options)

    def post(self, payload: Mapping[str, Any]) -> None:
        url = self._webhook_url()
        # Every text of a message is scrubbed before it leaves: the ledger's text already is,
        # but a payload may quote anything (an event's data, a test message's text).
        body = json.dumps(_redacted(payload), ensure_ascii=False).encode("utf-8")
        policy = self._policy
        started = self._clock()
        attempt = 0
        reply = _Reply(0, "not attempted")
        while attempt < policy.max_attempts:
            remaining = policy.max_total_seconds - (self._clock() - started)
            if remaining <= 0:
                break
            attempt += 1
            reply = self._send(url, body, min(policy.timeout_seconds, remaining))
            if reply.ok:
                logger.debug(
                    "Slack webhook at %s accepted the message (attempt %d)", self._host, attempt
                )
                return
            if not reply.transient:
                raise PermanentError(
                    f"Slack webhook at {self._host} refused the message: {reply.describe()}"
                )
            if attempt >= policy.max_attempts:
                break
            delay = self._delay(attempt, reply)
            if self._clock() - started + delay > policy.max_total_seconds:
                break  # waiting would overrun the budget: give up now rather than late
            logger.warning(
                "Slack webhook at %s answered %s; retry %d of %d in %.1fs",
                self._host,
                reply.describe(),
                attempt + 1,
                policy.max_attempts,
                delay,
            )
            self._sleep(delay)
        elapsed = self._clock() - started
        raise TransientError(
            f"Slack webhook at {self._host} still failing after {attempt} "
            f"attempt(s) in {elapsed:.1f}s: {reply.describe()}"
        )

    # ----------------------------------------------------------------------- internals

    def _webhook_url(self) -> str:
        if self._url is None:
            url = self._secrets.get(self._secret_name).strip()
            parts = urlsplit(url)
            secure = parts.scheme == "https" or (
                parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK
            )
            if not secure or not parts.hostname:
                # Name the secret, never its value: a wrong value may still be a live webhook.
                raise PermanentError(
                    f"secret {self._secret_name!r} does not hold an https webhook URL"
                )
            self._url, self._host = url, parts.hostname
        return self._url

    def _send(self, url: str, body: bytes, timeout: float) -> _Reply:
        # The scheme was checked in _webhook_url (https, or http to loopback only).
        request = urllib.request.Request(  # noqa: S310
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "rds2bq"},
        )
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return _Reply(
                    int(response.status), self._reply_text(response.read(_MAX_REPLY_BYTES))
                )
        except urllib.error.HTTPError as exc:
            try:
                text = self._reply_text(exc.read(_MAX_REPLY_BYTES))
                retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            finally:
                exc.close()
            return _Reply(int(exc.code), text, retry_after)
        except urllib.error.URLError as exc:
            return _Reply(0, self._redact(f"{type(exc.reason).__name__}: {exc.reason}"))
        except (TimeoutError, http.client.HTTPException, OSError) as exc:
            return _Reply(0, self._redact(f"{type(exc).__name__}: {exc}"))

    def _reply_text(self, raw: bytes) -> str:
        text = " ".join(raw.decode("utf-8", "replace").split())
        text = self._redact(text)
        return text if len(text) <= _REPLY_TEXT_LIMIT else text[: _REPLY_TEXT_LIMIT - 1] + "…"

    def _redact(self, text: str) -> str:
        # Slack does not echo the URL, but a proxy or an error page might: never pass it on.
        # Slack's reply is vendor text, scrubbed here where it enters.
        also: list[str] = []
        if self._url:
            path = urlsplit(self._url).path
            also = [self._url] + ([path] if len(path) > 1 else [])
        return redact(text, also=also)

    def _delay(self, attempt: int, reply: _Reply) -> float:
        if reply.status == 429 and reply.retry_after is not None:
            return min(reply.retry_after, self._policy.retry_after_cap_seconds)
        # Exponential with "equal jitter": grows every attempt, yet callers do not retry in step.
        ceiling = min(
            self._policy.backoff_cap_seconds,
            self._policy.backoff_base_seconds * 2.0 ** (attempt - 1),
        )
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None if unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(float((when - datetime.now(UTC)).total_seconds()), 0.0)


def _redacted(value: Any) -> Any:
    """``value`` with every string in it redacted (keys and structure kept), JSON-safe."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value

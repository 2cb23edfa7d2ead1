"""The one place where settings meet clients. Everything is built lazily, once per instance.

An entry point asks for what its path needs; nothing here imports an adapter at module import,
so a cold start of ``poll`` with no open run loads google-cloud-firestore and never boto3.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from orchestrator.config import Settings, load_settings
from orchestrator.core.timestamps import now_utc

if TYPE_CHECKING:
    # Only types here: each service is imported where it is built, so a path imports its own
    # services only (cold start; see bench/).
    from orchestrator.app.checks import Context
    from orchestrator.app.daily import Orchestrator
    from orchestrator.app.missed_day import MissedDayWatch
    from orchestrator.app.notify import NotifyService
    from orchestrator.app.ports import (
        ConfigStore,
        DestinationTables,
        EventBus,
        Exporter,
        Ledger,
        Messages,
        Notifier,
        Secrets,
        TransferRunner,
    )
    from orchestrator.app.preflight import Preflight
    from orchestrator.app.probe_ports import AwsProbePort, TopicProbePort
    from orchestrator.app.reruns import Reruns
    from orchestrator.app.status import StatusReader
    from orchestrator.app.transfers import TransferRuns
    from orchestrator.core.events import Event
    from orchestrator.core.model import Run, TableRun


class SystemClock:
    def now(self) -> Any:
        return now_utc()


class _Lazy:
    """Builds the real adapter on first use: a path that never publishes or reads a secret never
    imports Pub/Sub or Secret Manager (cold start)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._real: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._real is None:
                self._real = self._build()
            return self._real


class LazyEventBus(_Lazy):
    def publish(self, events: Sequence[Event]) -> None:
        if events:
            self._get().publish(events)


class LazySecrets(_Lazy):
    def get(self, name: str) -> str:
        return str(self._get().get(name))


class LazyNotifier(_Lazy):
    """The Slack webhook adapter, imported on the first post: a notify that only records a DTS
    run never loads it."""

    def post(self, payload: Mapping[str, Any]) -> None:
        self._get().post(payload)


class LazyMessages(_Lazy):
    """The Slack presenter, imported on the first message: a poll or a notify that posts nothing
    never loads it."""

    def _messages(self) -> Messages:
        real: Messages = self._get()
        return real

    def for_event(self, event: Event, run: Run, tables: Sequence[TableRun]) -> Mapping[str, Any]:
        return self._messages().for_event(event, run, tables)

    def unknown_run(self, note: Any) -> Mapping[str, Any]:
        return self._messages().unknown_run(note)

    def slot_missed(self, slot: datetime, run_id: str, grace_minutes: int) -> Mapping[str, Any]:
        return self._messages().slot_missed(slot, run_id, grace_minutes)


class Wiring:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._exporter: Exporter | None = None
        self._transfers: TransferRunner | None = None

    @cached_property
    def secrets(self) -> Secrets:
        return LazySecrets(self._build_secrets)

    def _build_secrets(self) -> Secrets:
        from orchestrator.adapters import secrets

        if self.settings.secrets_backend == "env":
            return secrets.EnvSecrets()
        return secrets.secret_manager(self.settings.gcp_project, self.settings.secrets_endpoint)

    @cached_property
    def ledger(self) -> Ledger:
        from orchestrator.adapters.ledger import build_ledger

        return build_ledger(self.settings)

    def aws_session(self, impersonate: str = "") -> Any:
        """The AWS session of these settings; with ``impersonate`` (doctor), web identity uses
        that service account's ID tokens instead of this process's own."""
        from orchestrator.adapters import aws_session

        s = self.settings
        if impersonate:
            loader = aws_session.impersonated_id_token_loader(impersonate, s.aws_audience)
        else:
            loader = aws_session.google_id_token_loader(s.aws_audience)
        return aws_session.build_session(
            s.aws_auth,
            s.aws_region,
            role_arn=s.aws_role_arn,
            endpoint_url=s.aws_endpoint_url,
            token_loader=loader,
            static_keys=(lambda: self.secrets.get(s.aws_keys_secret)),
        )

    def exporter(self) -> Exporter:
        with self._lock:
            if self._exporter is None:
                from orchestrator.adapters.aws import build_exporter

                self._exporter = build_exporter(self.settings, self.aws_session())
            return self._exporter

    def transfers(self) -> TransferRunner:
        with self._lock:
            if self._transfers is None:
                from orchestrator.adapters.dts import build_transfer_runner

                self._transfers = build_transfer_runner(self.settings)
            return self._transfers

    def config_store(self) -> ConfigStore:
        """The transfer configs, for sync and doctor: the DTS adapter the fan-out uses."""
        from orchestrator.adapters.dts import DtsTransfers

        transfers = self.transfers()
        assert isinstance(transfers, DtsTransfers)
        return transfers

    @cached_property
    def destination_tables(self) -> DestinationTables:
        from orchestrator.adapters.bigquery import build_destination_tables

        return build_destination_tables(self.settings)

    def destinations(self) -> DestinationTables:
        """``destination_tables`` as a factory: the preflight and notify build BigQuery's client
        only when they first need it."""
        with self._lock:
            return self.destination_tables

    @cached_property
    def events(self) -> EventBus:
        def build() -> EventBus:
            from orchestrator.adapters.pubsub import build_event_bus

            return build_event_bus(self.settings)

        return LazyEventBus(build)

    @cached_property
    def notifier(self) -> Notifier:
        def build() -> Notifier:
            from orchestrator.adapters.slack_webhook import SlackWebhookNotifier

            return SlackWebhookNotifier.from_settings(self.settings, self.secrets)

        return LazyNotifier(build)

    @cached_property
    def messages(self) -> Messages:
        def build() -> Messages:
            from orchestrator.present.slack import SlackMessages

            return SlackMessages(self.settings)

        return LazyMessages(build)

    @cached_property
    def notify_service(self) -> NotifyService:
        from orchestrator.app.notify import NotifyService

        return NotifyService(
            self.settings,
            self.ledger,
            self.notifier,
            self.events,
            SystemClock(),
            self.messages,
            self.transfers,
            self.destinations,
        )

    @cached_property
    def transfer_runs(self) -> TransferRuns:
        """Starts and records DTS runs: one, shared by the daily service and the reruns."""
        from orchestrator.app.transfers import TransferRuns

        return TransferRuns(self.ledger, self.transfers, destinations=self.destinations)

    @cached_property
    def service(self) -> Orchestrator:
        from orchestrator.app.daily import Orchestrator

        return Orchestrator(
            self.settings,
            self.ledger,
            self.exporter,
            self.transfers,
            self.events,
            SystemClock(),
            lambda: self.transfer_runs,
            self.missed_days,
            self.preflight,
        )

    @cached_property
    def preflight(self) -> Preflight:
        from orchestrator.app.preflight import Preflight

        return Preflight(self.exporter, self.destinations, self.ledger)

    @cached_property
    def missed_days(self) -> MissedDayWatch:
        from orchestrator.app.missed_day import MissedDayWatch

        return MissedDayWatch(
            self.settings,
            self.ledger,
            lambda: self.notifier,
            self.messages,
            SystemClock(),
        )

    @cached_property
    def reruns(self) -> Reruns:
        from orchestrator.app.reruns import Reruns

        return Reruns(
            self.settings,
            self.ledger,
            self.exporter,
            self.transfers,
            self.events,
            SystemClock(),
            self.transfer_runs,
        )

    @cached_property
    def status(self) -> StatusReader:
        from orchestrator.app.status import StatusReader

        return StatusReader(self.ledger, SystemClock(), self.settings.prices)

    def doctor_context(self, *, send_test: bool = False, impersonate: str = "") -> Context:
        """What doctor's checks probe, each built on first use from these settings. With
        ``impersonate`` (a function's service account) the web-identity check mints that
        account's ID token, so it tries the path exactly as the function runs it."""
        from orchestrator.adapters.probes import unverified_claims
        from orchestrator.app.checks import Context
        from orchestrator.present import slack_notices

        s = self.settings

        def aws() -> AwsProbePort:
            from orchestrator.adapters.aws_session import client
            from orchestrator.adapters.probes import AwsProbe

            session = self.aws_session(impersonate)
            return AwsProbe(
                **{
                    name: client(session, name, s.aws_endpoint_url)
                    for name in ("sts", "s3", "kms", "iam", "rds")
                }
            )

        def topics() -> TopicProbePort:
            from orchestrator.adapters.probes import TopicProbe
            from orchestrator.adapters.pubsub import build_publisher

            return TopicProbe(build_publisher())

        def id_token() -> str:
            from orchestrator.adapters import aws_session

            if impersonate:
                return aws_session.impersonated_id_token_loader(impersonate, s.aws_audience)()
            return aws_session.google_id_token_loader(s.aws_audience)()

        def exporter() -> Exporter:
            if not impersonate:
                return self.exporter()
            from orchestrator.adapters.aws import build_exporter

            return build_exporter(s, self.aws_session(impersonate))

        def assume(token: str) -> str:
            from orchestrator.adapters.probes import anonymous_sts, assume_web_identity

            sts = anonymous_sts(s.aws_region, s.aws_endpoint_url)
            return assume_web_identity(sts, s.aws_role_arn, token, "rds2bq-doctor")

        def trust_policy() -> dict[str, Any] | None:
            # The operator's own credentials, if they may read the role.
            from orchestrator.adapters.probes import AwsProbe, operator_iam

            iam = operator_iam(s.aws_endpoint_url)
            probe = AwsProbe(sts=None, s3=None, kms=None, iam=iam, rds=None)
            return probe.role(s.aws_role_arn).trust_policy

        return Context(
            settings=s,
            aws=_once(aws),
            exporter=_once(exporter),
            configs=self.config_store,
            tables=lambda: self.destination_tables,
            topics=_once(topics),
            secrets=lambda: self.secrets,
            ledger=lambda: self.ledger,
            notifier=lambda: self.notifier,
            id_token=id_token,
            assume_web_identity=assume,
            trust_policy=trust_policy,
            send_test=send_test,
            impersonating=impersonate,
            claims=unverified_claims,
            test_message=lambda: slack_notices.test_message(s),
        )


_current: Wiring | None = None
_current_lock = threading.Lock()


def get(environ: Mapping[str, str] | None = None) -> Wiring:
    """The instance's wiring, built on first use from the environment."""
    global _current
    with _current_lock:
        if _current is None:
            _current = Wiring(load_settings(environ))
        return _current


def install(wiring: Wiring | None) -> None:
    """Use this wiring for the entry points (tests, the local stack)."""
    global _current
    with _current_lock:
        _current = wiring


def reset() -> None:
    """Forget the cached wiring (tests, and the CLI after changing the environment)."""
    global _current
    with _current_lock:
        _current = None


def _once(factory: Callable[[], Any]) -> Callable[[], Any]:
    built: list[Any] = []

    def get() -> Any:
        if not built:
            built.append(factory())
        return built[0]

    return get

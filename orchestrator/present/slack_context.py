"""What every Slack message needs besides its subject: where things live, how to show times."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from orchestrator.core.prices import Prices
from orchestrator.present import slack_blocks as kit

if TYPE_CHECKING:
    from orchestrator.config import Settings


@dataclass(frozen=True)
class SlackContext:
    """What every message needs besides its subject: where things live and how to show times."""

    timezone: ZoneInfo
    project: str
    location: str
    dataset: str
    env: str = ""
    prices: Prices = field(default_factory=Prices)  # for the run digest's cost estimate

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackContext:
        return cls(
            timezone=settings.timezone,
            project=settings.gcp_project,
            location=settings.bq_location,
            dataset=settings.bq_dataset,
            env=settings.env,
            prices=settings.prices,
        )

    def status_command(self, run_id: str) -> str:
        return f"python -m orchestrator status {run_id}"

    def rerun_command(self, run_id: str, table: str) -> str:
        """The re-transfer of one table from the run's export (``rerun --table``)."""
        return f"python -m orchestrator rerun {run_id} --table {table}"

    def env_label(self) -> str:
        """``rds2bq *prod* · ``: what a message's context line starts with."""
        return f"rds2bq *{kit.escape(self.env)}* · " if self.env else "rds2bq · "

    def prefix(self) -> str:
        """``rds2bq prod: ``: what a message's fallback text starts with."""
        return f"rds2bq {self.env}: " if self.env else "rds2bq: "

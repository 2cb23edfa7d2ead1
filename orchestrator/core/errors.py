"""One root error. Transient errors are safe to retry; permanent ones are not.

Adapters translate vendor errors into these at the boundary (``raise ... from exc``), so the
core and the entry points never see a botocore or Google API error.
"""

from __future__ import annotations


class Rds2bqError(Exception):
    """Root of every error this project raises on purpose."""


class TransientError(Rds2bqError):
    """A fault that may go away by itself: throttling, a timeout, a 5xx. Retry it."""


class PermanentError(Rds2bqError):
    """A fault that a retry cannot fix: bad input, a missing permission, a missing resource."""


class ConfigError(PermanentError):
    """The settings are invalid. ``problems`` lists every problem, each naming its key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(self.problems))


class BadRequestError(PermanentError):
    """A caller sent something we cannot act on; the message says why (HTTP 400)."""


class MalformedMessageError(BadRequestError):
    """A message on the notification topic (or an event's JSON) that we cannot trust: neither a
    DTS run notification nor one of our events.

    ``reason`` is short and never quotes the message data (which may hold anything, secrets
    included); only attribute values, clipped, are named.
    """

    def __init__(self, reason: str, message_id: str = "") -> None:
        self.reason = reason
        self.message_id = message_id
        super().__init__(f"malformed message {message_id or '(no id)'}: {reason}")


class NotFoundError(PermanentError):
    """A named thing (run, table, source, snapshot) does not exist (HTTP 404)."""


class ConflictError(PermanentError):
    """The request conflicts with the current state, e.g. a run already in flight (HTTP 409)."""


class SourceNotFoundError(NotFoundError):
    """The configured cluster or DB instance does not exist."""


class NoSnapshotError(NotFoundError):
    """No *available* automated snapshot exists for the source (or for the requested date)."""


class ExportQuotaError(TransientError):
    """Five exports are already running in this account; the next poll or retry may succeed."""


class AccessDeniedError(PermanentError):
    """AWS refused a call: the message names the action that is missing."""


class KmsKeyError(PermanentError):
    """The KMS key cannot be used for the export (missing, disabled, or no grant allowed)."""


class TransferConfigMissingError(PermanentError):
    """A configured table has no DTS transfer config: run ``python -m orchestrator sync``."""


class ExportFilesGoneError(ConflictError):
    """The run's export no longer holds a table's files (deleted, or expired by a lifecycle rule):
    only a re-export can load it again (HTTP 409)."""

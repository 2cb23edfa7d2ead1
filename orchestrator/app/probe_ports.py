"""The ports doctor's checks probe through (the probes adapter implements them), and the
records they return. Apart from ``ports`` because no function path uses them: a cold start
does not build these classes (bench/, figure 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class KmsKey:
    arn: str
    state: str  # Enabled | Disabled | PendingDeletion | PendingImport | Unavailable
    usage: str  # ENCRYPT_DECRYPT ...
    spec: str  # SYMMETRIC_DEFAULT ...


@dataclass(frozen=True)
class Role:
    arn: str
    trust_policy: dict[str, Any]

    @property
    def trusted_services(self) -> frozenset[str]:
        services: set[str] = set()
        for statement in _statements(self.trust_policy):
            if statement.get("Effect") != "Allow":
                continue
            principal = statement.get("Principal", {})
            if isinstance(principal, dict):
                services.update(_as_list(principal.get("Service")))
        return frozenset(services)


@dataclass(frozen=True)
class SourceEngine:
    engine: str
    status: str


@dataclass(frozen=True)
class Topic:
    path: str
    schema: str  # '' when the topic has no schema (DTS requires none)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        return [statements]
    return [s for s in statements if isinstance(s, dict)]


class AwsProbePort(Protocol):
    def caller_arn(self) -> str: ...
    def source_engine(self, kind: str, source_id: str) -> SourceEngine: ...
    def bucket_region(self, bucket: str) -> str: ...
    def kms_key(self, key_id: str) -> KmsKey: ...
    def role(self, role_arn: str) -> Role: ...


class TopicProbePort(Protocol):
    def topic(self, path: str) -> Topic: ...
    def publishers(self, path: str) -> list[str] | None: ...

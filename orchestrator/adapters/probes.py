"""Read-only probes for ``doctor``: is each AWS and Pub/Sub resource there, and usable?

Each probe speaks the domain (``kms_key`` -> KmsKey) and translates vendor errors with
``orchestrator.adapters.aws.translate`` (AWS) or into our errors (Google): a missing resource is a
NotFoundError, a refused call an AccessDeniedError or PermanentError naming the action. Nothing
here changes anything in either account.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import BotoCoreError, ClientError

from orchestrator.adapters.aws import translate
from orchestrator.adapters.google_errors import TRANSIENT, message
from orchestrator.app.probe_ports import KmsKey, Role, SourceEngine, Topic
from orchestrator.core.errors import (
    AccessDeniedError,
    NotFoundError,
    PermanentError,
    TransientError,
)

TIMEOUT = 15.0
_NOT_FOUND_CODES = {
    "NoSuchBucket",
    "404",
    "NotFound",
    "NotFoundException",
    "NoSuchEntity",
    "NoSuchEntityException",
}
_DENIED_CODES = {"AccessDenied", "AccessDeniedException", "403", "Forbidden"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def _aws(action: str, what: str) -> Iterator[None]:
    """Like adapters.aws._aws, with not-found and access-denied told apart for any resource."""
    try:
        yield
    except ClientError as exc:
        code = _code(exc)
        if code in _NOT_FOUND_CODES:
            raise NotFoundError(f"{what} does not exist") from exc
        if code in _DENIED_CODES:
            raise AccessDeniedError(f"{action} on {what} was refused ({code})") from exc
        raise translate(exc, action) from exc
    except BotoCoreError as exc:
        raise translate(exc, action) from exc


class AwsProbe:
    """Read-only AWS calls, with injected botocore clients (built by the doctor from the wiring)."""

    def __init__(self, *, sts: Any, s3: Any, kms: Any, iam: Any, rds: Any) -> None:
        self._sts = sts
        self._s3 = s3
        self._kms = kms
        self._iam = iam
        self._rds = rds

    def caller_arn(self) -> str:
        with _aws("sts:GetCallerIdentity", "the caller"):
            return str(self._sts.get_caller_identity()["Arn"])

    def source_engine(self, kind: str, source_id: str) -> SourceEngine:
        if kind in ("cluster", "cluster-snapshot"):
            with _aws("rds:DescribeDBClusters", f"cluster {source_id}"):
                found = self._rds.describe_db_clusters(DBClusterIdentifier=source_id)["DBClusters"]
        else:
            with _aws("rds:DescribeDBInstances", f"DB instance {source_id}"):
                found = self._rds.describe_db_instances(DBInstanceIdentifier=source_id)[
                    "DBInstances"
                ]
        item = found[0]
        status = item.get("Status") or item.get("DBInstanceStatus") or ""
        return SourceEngine(str(item.get("Engine", "")), str(status))

    def bucket_region(self, bucket: str) -> str:
        with _aws("s3:ListBucket", f"bucket {bucket}"):
            self._s3.head_bucket(Bucket=bucket)
        with _aws("s3:GetBucketLocation", f"bucket {bucket}"):
            location = self._s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
        return str(location or "us-east-1")  # S3 reports us-east-1 as no constraint

    def kms_key(self, key_id: str) -> KmsKey:
        with _aws("kms:DescribeKey", f"KMS key {key_id}"):
            meta = self._kms.describe_key(KeyId=key_id)["KeyMetadata"]
        return KmsKey(
            arn=str(meta.get("Arn", key_id)),
            state=str(meta.get("KeyState") or ("Enabled" if meta.get("Enabled") else "Disabled")),
            usage=str(meta.get("KeyUsage", "")),
            spec=str(meta.get("KeySpec") or meta.get("CustomerMasterKeySpec") or ""),
        )

    def role(self, role_arn: str) -> Role:
        name = role_arn.rsplit("/", 1)[-1]
        with _aws("iam:GetRole", f"role {role_arn}"):
            role = self._iam.get_role(RoleName=name)["Role"]
        document = role.get("AssumeRolePolicyDocument", {})
        if isinstance(document, str):  # IAM returns it URL-encoded on some paths
            document = json.loads(unquote(document))
        return Role(str(role.get("Arn", role_arn)), dict(document))


def anonymous_sts(region: str, endpoint_url: str = "") -> Any:
    """An STS client that signs nothing: AssumeRoleWithWebIdentity needs only the token."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    return boto3.client(
        "sts",
        region_name=region,
        endpoint_url=endpoint_url or None,
        config=Config(signature_version=UNSIGNED, connect_timeout=10, read_timeout=20),
    )


def operator_iam(endpoint_url: str = "") -> Any:
    """IAM with the operator's own credentials (boto3's default chain), not the functions'."""
    import boto3

    from orchestrator.adapters.aws_session import CLIENT_CONFIG

    return boto3.client("iam", endpoint_url=endpoint_url or None, config=CLIENT_CONFIG)


def assume_web_identity(sts_unsigned: Any, role_arn: str, token: str, session: str) -> str:
    """AssumeRoleWithWebIdentity once (an unsigned call); the assumed role's ARN. The token is
    never part of an error."""
    try:
        reply = sts_unsigned.assume_role_with_web_identity(
            RoleArn=role_arn, RoleSessionName=session, WebIdentityToken=token, DurationSeconds=900
        )
    except ClientError as exc:
        code = _code(exc)
        message = str(exc.response.get("Error", {}).get("Message", ""))
        if code in ("AccessDenied", "InvalidIdentityToken", "IDPRejectedClaim", "ExpiredToken"):
            raise AccessDeniedError(f"{code}: {message}") from exc
        raise translate(exc, "sts:AssumeRoleWithWebIdentity") from exc
    except BotoCoreError as exc:
        raise translate(exc, "sts:AssumeRoleWithWebIdentity") from exc
    return str(reply["AssumedRoleUser"]["Arn"])


def unverified_claims(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified (whoever receives the token verifies it); {} if unreadable."""
    from google.auth import jwt

    try:
        claims = jwt.decode(token, verify=False)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError):
        return {}
    return dict(claims) if isinstance(claims, dict) else {}


class TopicProbe:
    """Pub/Sub topic existence, schema and publishers, with an injected ``PublisherClient``."""

    def __init__(self, publisher: Any) -> None:
        self._publisher = publisher

    def topic(self, path: str) -> Topic:
        from google.api_core import exceptions as gexc

        try:
            topic = self._publisher.get_topic(request={"topic": path}, timeout=TIMEOUT)
        except gexc.NotFound as exc:
            raise NotFoundError(f"topic {path} does not exist") from exc
        except (gexc.Forbidden, gexc.Unauthorized) as exc:  # over REST: by HTTP code
            raise AccessDeniedError(f"pubsub.topics.get on {path} was refused") from exc
        except TRANSIENT as exc:
            raise TransientError(f"Pub/Sub unavailable reading {path}") from exc
        except gexc.GoogleAPICallError as exc:
            raise PermanentError(f"reading topic {path}: {message(exc)}") from exc
        return Topic(path, str(topic.schema_settings.schema or ""))

    def publishers(self, path: str) -> list[str] | None:
        """Members with roles/pubsub.publisher on the topic; None when the policy is unreadable
        (no permission, or an emulator without IAM)."""
        from google.api_core import exceptions as gexc

        try:
            policy = self._publisher.get_iam_policy(request={"resource": path}, timeout=TIMEOUT)
        except gexc.GoogleAPICallError:
            return None
        members: list[str] = []
        for binding in policy.bindings:
            if binding.role == "roles/pubsub.publisher":
                members.extend(str(m) for m in binding.members)
        return members

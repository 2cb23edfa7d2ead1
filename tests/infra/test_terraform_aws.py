"""infra/aws, for real: formatted, valid, and applied against moto's server, then inspected with
boto3 for what each identity may do.

moto does not enforce IAM, so these tests read the policies back and check their contents: the
trust conditions docs/platform.md describes, no wildcard action anywhere, "*" resources only where
AWS offers no narrower one, and the bucket and key settings.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.infra.conftest import (
    APPLY_TIMEOUT,
    GOOGLE_ROOT_FILES,
    ROOT,
    Terraform,
    moto_override,
)

REGION = "ap-northeast-1"
SOURCE_ID = "shop-aurora"
AUDIENCE = "rds2bq-test-audience"
SA_IDS = ("112233445566778899001", "998877665544332211000")
RETENTION_DAYS = 9

# The only actions that may have "*" as resource, each because AWS offers nothing narrower:
# CancelExportTask has no resource type; DescribeExportTasks' resource types are optional and a
# lookup by export id names no source.
STAR_RESOURCE_ALLOWED = {"rds:DescribeExportTasks", "rds:CancelExportTask"}

# A cold `terraform init` and the apply (the provider waits for S3 and KMS settings to read back
# stable, about a minute against moto) need more than the suite's default 300 s per test.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_terraform_fmt(terraform: Terraform) -> None:
    # Every .tf file in the repository: scheduler.tf at the root and infra/aws.
    result = terraform.run(ROOT, "fmt", "-check", "-recursive", "-diff", check=False)
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}{result.stderr}"
    for name in GOOGLE_ROOT_FILES:
        assert (ROOT / name).exists()


def test_aws_module_validates(terraform: Terraform, aws_workdir: Path) -> None:
    result = terraform.run(aws_workdir, "validate", "-json")
    assert json.loads(result.stdout)["valid"] is True


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("s3_prefix", "rds2bq/", "nor start or end with '/'"),
        ("s3_prefix", "a:b", "contain no ':'"),
        ("google_service_account_ids", '["rds2bq-poll@p.iam.gserviceaccount.com"]', "numeric"),
        ("source_kind", "instance", "cluster, cluster-snapshot or db-snapshot"),
    ],
)
def test_variable_validation_refuses_bad_input(
    terraform: Terraform,
    aws_workdir: Path,
    variable: str,
    value: str,
    message: str,
) -> None:
    # GIVEN otherwise valid inputs WHEN one is wrong THEN the plan stops before any API call,
    # naming the rule (the provider is configured for a region only: no credentials needed).
    good = {
        "region": REGION,
        "source_id": SOURCE_ID,
        "bucket_name": "rds2bq-validation",
        "google_service_account_ids": json.dumps(list(SA_IDS)),
    }
    args = [f"-var={k}={v}" for k, v in {**good, variable: value}.items()]
    result = terraform.run(
        aws_workdir, "plan", "-input=false", "-refresh=false", *args, check=False
    )
    assert result.returncode != 0
    assert message in " ".join(result.stderr.split()), result.stderr


# --- Applied against moto ----------------------------------------------------------------------


@dataclass
class Applied:
    workdir: Path
    outputs: dict[str, str]
    prefix: str
    bucket: str
    iam: Any
    s3: Any
    kms: Any


@pytest.fixture(scope="module")
def applied(
    terraform: Terraform,
    aws_workdir: Path,
    moto_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Applied]:
    # A copy of the initialised module plus an override file pointing it at moto; the state
    # stays in the temporary copy. Unique names: the moto server is shared with other tests.
    workdir = tmp_path_factory.mktemp("infra-aws-moto")
    shutil.copytree(aws_workdir, workdir, symlinks=True, dirs_exist_ok=True)
    (workdir / "moto_override.tf").write_text(moto_override(moto_server.endpoint), encoding="utf-8")
    suffix = secrets.token_hex(3)
    prefix, bucket = f"tfit{suffix}", f"rds2bq-tfit-{suffix}"
    tfvars = {
        "region": REGION,
        "name_prefix": prefix,
        "source_id": SOURCE_ID,
        "bucket_name": bucket,
        "google_service_account_ids": list(SA_IDS),
        "aws_audience": AUDIENCE,
        "export_retention_days": RETENTION_DAYS,
    }
    (workdir / "test.auto.tfvars.json").write_text(json.dumps(tfvars), encoding="utf-8")
    terraform.run(workdir, "apply", "-auto-approve", "-input=false", timeout=APPLY_TIMEOUT)
    raw = json.loads(terraform.run(workdir, "output", "-json").stdout)
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    clients = {
        name: session.client(name, endpoint_url=moto_server.endpoint)
        for name in ("iam", "s3", "kms")
    }
    yield Applied(workdir, {k: v["value"] for k, v in raw.items()}, prefix, bucket, **clients)
    # moto's state goes with the server; the working copy with tmp_path.


def statements(document: dict[str, Any] | str) -> list[dict[str, Any]]:
    doc = json.loads(document) if isinstance(document, str) else document
    return [
        dict(s, Action=_listed(s.get("Action")), Resource=_listed(s.get("Resource")))
        for s in doc["Statement"]
    ]


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def by_sid(document: dict[str, Any] | str) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in statements(document)}


def role_policy(applied: Applied, role: str) -> list[dict[str, Any]]:
    names = applied.iam.list_role_policies(RoleName=role)["PolicyNames"]
    assert names == [role], names
    assert applied.iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
    return statements(applied.iam.get_role_policy(RoleName=role, PolicyName=role)["PolicyDocument"])


def assert_least_privilege(policy: list[dict[str, Any]]) -> None:
    for statement in policy:
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            assert action != "*" and not action.endswith(":*"), statement
        if "*" in statement["Resource"]:
            assert set(statement["Action"]) <= STAR_RESOURCE_ALLOWED, statement


def test_outputs_are_the_settings(applied: Applied) -> None:
    out = applied.outputs
    assert (
        out["orchestrator_role_arn"]
        == f"arn:aws:iam::123456789012:role/{applied.prefix}-orchestrator"
    )
    assert out["export_role_arn"] == f"arn:aws:iam::123456789012:role/{applied.prefix}-export"
    assert out["bucket"] == applied.bucket
    assert out["s3_prefix"] == "rds2bq"
    assert out["kms_key_arn"].startswith(f"arn:aws:kms:{REGION}:123456789012:key/")
    assert out["region"] == REGION


def test_orchestrator_trusts_only_the_pinned_google_accounts(applied: Applied) -> None:
    role = applied.iam.get_role(RoleName=f"{applied.prefix}-orchestrator")["Role"]
    trust = statements(role["AssumeRolePolicyDocument"])
    assert len(trust) == len(SA_IDS)
    for statement, sa_id in zip(sorted(trust, key=lambda s: s["Sid"]), sorted(SA_IDS), strict=True):
        assert statement["Effect"] == "Allow"
        assert statement["Principal"] == {"Federated": "accounts.google.com"}
        assert _listed(statement["Action"]) == ["sts:AssumeRoleWithWebIdentity"]
        # aud = the token's azp (numeric id), oaud = the audience string, sub = numeric id:
        # all three pinned, aud and sub paired in one statement.
        assert statement["Condition"] == {
            "StringEquals": {
                "accounts.google.com:aud": sa_id,
                "accounts.google.com:oaud": AUDIENCE,
                "accounts.google.com:sub": sa_id,
            }
        }
    assert role["MaxSessionDuration"] == 3600


def test_orchestrator_policy_is_least_privilege(applied: Applied) -> None:
    role = f"{applied.prefix}-orchestrator"
    policy = role_policy(applied, role)
    assert_least_privilege(policy)
    sids = {s["Sid"]: s for s in policy}
    key_arn, bucket = applied.outputs["kms_key_arn"], applied.bucket
    rds = f"arn:aws:rds:{REGION}:123456789012"

    assert sids["ExportSource"]["Action"] == ["rds:StartExportTask"]
    # The live cluster, and its automated snapshots (a rerun of a past day exports one).
    snapshots = f"{rds}:cluster-snapshot:rds:{SOURCE_ID}-*"
    assert sids["ExportSource"]["Resource"] == [f"{rds}:cluster:{SOURCE_ID}", snapshots]
    assert set(sids["WatchExportTasks"]["Action"]) == {
        "rds:DescribeExportTasks",
        "rds:CancelExportTask",
    }
    assert sids["DescribeSource"]["Action"] == [
        "rds:DescribeDBClusters",
        "rds:DescribeDBClusterSnapshots",
    ]
    assert sids["DescribeSource"]["Resource"] == [f"{rds}:cluster:{SOURCE_ID}", snapshots]
    assert sids["PassExportRole"]["Action"] == ["iam:PassRole"]
    assert sids["PassExportRole"]["Resource"] == [applied.outputs["export_role_arn"]]
    # The metadata files, and the data files (their Parquet footers), under the prefix only.
    assert sids["ReadExportMetadata"]["Action"] == ["s3:GetObject"]
    assert sids["ReadExportMetadata"]["Resource"] == [
        f"arn:aws:s3:::{bucket}/rds2bq/*/export_*info_*.json"
    ]
    assert sids["ReadParquetFooters"]["Action"] == ["s3:GetObject"]
    assert sids["ReadParquetFooters"]["Resource"] == [f"arn:aws:s3:::{bucket}/rds2bq/*.parquet"]
    assert sids["ListExportPrefix"]["Resource"] == [f"arn:aws:s3:::{bucket}"]
    assert sids["ListExportPrefix"]["Condition"] == {
        "StringLike": {"s3:prefix": ["rds2bq", "rds2bq/*"]}
    }
    assert sids["DescribeExportKey"]["Resource"] == [key_arn]
    grant = sids["LetRdsUseExportKey"]
    assert grant["Action"] == ["kms:CreateGrant"] and grant["Resource"] == [key_arn]
    assert grant["Condition"] == {
        "Bool": {"kms:GrantIsForAWSResource": "true"},
        "StringEquals": {"kms:ViaService": f"rds.{REGION}.amazonaws.com"},
    }
    assert sids["DecryptExportViaS3"]["Action"] == ["kms:Decrypt"]
    assert sids["DecryptExportViaS3"]["Resource"] == [key_arn]
    assert sids["DecryptExportViaS3"]["Condition"] == {
        "StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
    }
    assert set(sids) == {
        "ExportSource",
        "WatchExportTasks",
        "DescribeSource",
        "PassExportRole",
        "ReadExportMetadata",
        "ReadParquetFooters",
        "ListExportPrefix",
        "DescribeExportKey",
        "LetRdsUseExportKey",
        "DecryptExportViaS3",
    }


RDS = f"arn:aws:rds:{REGION}:123456789012"


@pytest.mark.parametrize(
    ("kind", "export", "describe", "described"),
    [
        (
            "cluster-snapshot",
            [f"{RDS}:cluster-snapshot:rds:{SOURCE_ID}-*"],
            ["rds:DescribeDBClusters", "rds:DescribeDBClusterSnapshots"],
            [f"{RDS}:cluster:{SOURCE_ID}", f"{RDS}:cluster-snapshot:rds:{SOURCE_ID}-*"],
        ),
        (
            "db-snapshot",
            [f"{RDS}:snapshot:rds:{SOURCE_ID}-*"],
            ["rds:DescribeDBInstances", "rds:DescribeDBSnapshots"],
            [f"{RDS}:db:{SOURCE_ID}", f"{RDS}:snapshot:rds:{SOURCE_ID}-*"],
        ),
    ],
)
def test_other_source_kinds_are_scoped_to_their_source(
    terraform: Terraform,
    applied: Applied,
    kind: str,
    export: list[str],
    describe: list[str],
    described: list[str],
) -> None:
    # The applied module above uses a live cluster; the other kinds are evaluated by terraform
    # console on the same configuration (the orchestrator policy is built from these values).
    result = terraform.run(
        applied.workdir, "console", f"-var=source_kind={kind}", stdin="jsonencode(local.source)\n"
    )
    source = json.loads(json.loads(result.stdout.strip()))
    assert source == {"export": export, "describe": describe, "described": described}


def test_export_role_is_for_rds_export_only(applied: Applied) -> None:
    role = f"{applied.prefix}-export"
    trust = statements(applied.iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"])
    assert len(trust) == 1
    assert trust[0]["Principal"] == {"Service": "export.rds.amazonaws.com"}
    assert trust[0]["Action"] == ["sts:AssumeRole"]
    assert trust[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}

    policy = role_policy(applied, role)
    assert_least_privilege(policy)
    sids = {s["Sid"]: s for s in policy}
    bucket = applied.bucket
    assert set(sids["WriteExportObjects"]["Action"]) == {
        "s3:PutObject*",
        "s3:GetObject*",
        "s3:DeleteObject*",
    }
    assert sids["WriteExportObjects"]["Resource"] == [f"arn:aws:s3:::{bucket}/rds2bq/*"]
    assert set(sids["ExportBucket"]["Action"]) == {"s3:ListBucket", "s3:GetBucketLocation"}
    assert sids["ExportBucket"]["Resource"] == [f"arn:aws:s3:::{bucket}"]
    assert sids["UseExportKeyViaS3"]["Resource"] == [applied.outputs["kms_key_arn"]]
    assert sids["UseExportKeyViaS3"]["Condition"] == {
        "StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
    }


def test_dts_reader_can_only_read_the_prefix(applied: Applied) -> None:
    user = f"{applied.prefix}-dts-reader"
    assert applied.iam.get_user(UserName=user)["User"]["Path"] == f"/{applied.prefix}/"
    # Its key is created out of band (docs/deploy.md), never in Terraform state.
    assert applied.iam.list_access_keys(UserName=user)["AccessKeyMetadata"] == []
    assert applied.iam.list_attached_user_policies(UserName=user)["AttachedPolicies"] == []
    assert applied.iam.list_user_policies(UserName=user)["PolicyNames"] == [user]
    policy = statements(
        applied.iam.get_user_policy(UserName=user, PolicyName=user)["PolicyDocument"]
    )
    assert_least_privilege(policy)
    sids = {s["Sid"]: s for s in policy}
    assert {a for s in policy for a in s["Action"]} == {
        "s3:GetObject",
        "s3:ListBucket",
        "s3:GetBucketLocation",
        "kms:Decrypt",
    }
    assert sids["ReadExportObjects"]["Resource"] == [f"arn:aws:s3:::{applied.bucket}/rds2bq/*"]
    # DTS asks where the bucket is; that call names the bucket, not a prefix.
    assert sids["LocateBucket"]["Action"] == ["s3:GetBucketLocation"]
    assert sids["LocateBucket"]["Resource"] == [f"arn:aws:s3:::{applied.bucket}"]
    assert "Condition" not in sids["LocateBucket"]
    assert sids["ListExportPrefix"]["Condition"] == {"StringLike": {"s3:prefix": "rds2bq/*"}}
    assert sids["DecryptViaS3"]["Resource"] == [applied.outputs["kms_key_arn"]]
    assert sids["DecryptViaS3"]["Condition"] == {
        "StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
    }


def test_bucket_is_private_encrypted_and_expiring(applied: Applied) -> None:
    s3, bucket = applied.s3, applied.bucket
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": applied.outputs["kms_key_arn"],
    }
    assert rule["BucketKeyEnabled"] is True
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
    assert ownership["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    # Versioning deliberately never enabled (s3.tf explains why).
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)

    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    expire = rules["expire-old-exports"]
    assert expire["Status"] == "Enabled"
    assert expire["Filter"] == {"Prefix": "rds2bq/"}
    assert expire["Expiration"] == {"Days": RETENTION_DAYS}
    abort = rules["abort-incomplete-uploads"]
    assert abort["Status"] == "Enabled"
    assert abort["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}

    deny = by_sid(s3.get_bucket_policy(Bucket=bucket)["Policy"])["DenyInsecureTransport"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_key_rotates_and_names_every_user(applied: Applied) -> None:
    kms, key_arn = applied.kms, applied.outputs["kms_key_arn"]
    assert kms.get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"] is True
    assert kms.describe_key(KeyId=key_arn)["KeyMetadata"]["KeyUsage"] == "ENCRYPT_DECRYPT"
    aliases = kms.list_aliases(KeyId=key_arn)["Aliases"]
    assert [a["AliasName"] for a in aliases] == [f"alias/{applied.prefix}-exports"]

    policy = by_sid(kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"])
    account = "arn:aws:iam::123456789012"
    orchestrator = f"{account}:role/{applied.prefix}-orchestrator"
    export = f"{account}:role/{applied.prefix}-export"
    reader = f"{account}:user/{applied.prefix}/{applied.prefix}-dts-reader"
    for statement in policy.values():
        principal = statement["Principal"]
        assert principal != "*" and principal.get("AWS") != "*", statement
        assert "kms:*" not in statement["Action"], statement

    # Administrators manage the key but cannot use it.
    admin = policy["KeyAdministration"]
    assert admin["Principal"] == {"AWS": f"{account}:root"}
    used = {
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:GenerateDataKey*",
        "kms:ReEncrypt*",
        "kms:CreateGrant",
    }
    assert not used & set(admin["Action"])
    assert {"kms:PutKeyPolicy", "kms:ScheduleKeyDeletion"} <= set(admin["Action"])

    grant = policy["OrchestratorGrantToRds"]
    assert grant["Principal"] == {"AWS": orchestrator}
    assert grant["Action"] == ["kms:CreateGrant"]
    assert grant["Condition"] == {
        "Bool": {"kms:GrantIsForAWSResource": "true"},
        "StringEquals": {"kms:ViaService": f"rds.{REGION}.amazonaws.com"},
    }
    via_s3 = {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}
    decrypt = policy["DecryptViaS3"]
    assert sorted(_listed(decrypt["Principal"]["AWS"])) == sorted([orchestrator, reader])
    assert decrypt["Action"] == ["kms:Decrypt"] and decrypt["Condition"] == via_s3
    writer = policy["ExportRoleViaS3"]
    assert writer["Principal"] == {"AWS": export} and writer["Condition"] == via_s3
    assert set(policy) == {
        "KeyAdministration",
        "OrchestratorDescribe",
        "OrchestratorGrantToRds",
        "DecryptViaS3",
        "ExportRoleViaS3",
    }

# The export key: RDS encrypts every export with it (StartExportTask requires KmsKeyId) and the
# bucket uses it as its default SSE-KMS key.
#
# The key policy names every user of the key itself instead of delegating use to IAM with the
# usual "root may kms:*" statement: account administrators keep full control of the key (so it can
# never become unmanageable) but cannot read exports just by writing an IAM policy.

data "aws_iam_policy_document" "exports_key" {
  #checkov:skip=CKV_AWS_109:Key policy, not an identity policy: Resource "*" means this key only, and the permission-management actions (PutKeyPolicy, grants) go to the key administrators alone.
  #checkov:skip=CKV_AWS_111:Key policy, not an identity policy: Resource "*" means this key only; every write (CreateGrant, Encrypt) is limited to named principals, most via kms:ViaService.
  #checkov:skip=CKV_AWS_356:Key policy, not an identity policy: a key policy's Resource can only be "*" (this key); no statement reaches another key.
  # In a key policy "*" as Resource means "this key"; no statement here reaches any other key.
  statement {
    sid    = "KeyAdministration"
    effect = "Allow"
    actions = [
      "kms:CancelKeyDeletion",
      "kms:CreateAlias",
      "kms:DeleteAlias",
      "kms:DescribeKey",
      "kms:DisableKey",
      "kms:DisableKeyRotation",
      "kms:EnableKey",
      "kms:EnableKeyRotation",
      "kms:GetKeyPolicy",
      "kms:GetKeyRotationStatus",
      "kms:ListAliases",
      "kms:ListGrants",
      "kms:ListKeyPolicies",
      "kms:ListResourceTags",
      "kms:PutKeyPolicy",
      "kms:RevokeGrant",
      "kms:RotateKeyOnDemand",
      "kms:ScheduleKeyDeletion",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:UpdateAlias",
      "kms:UpdateKeyDescription",
    ]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = local.kms_admins
    }
  }

  # The caller of StartExportTask lets RDS use the key through a grant.
  statement {
    sid       = "OrchestratorDescribe"
    effect    = "Allow"
    actions   = ["kms:DescribeKey"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.orchestrator.arn]
    }
  }

  statement {
    sid       = "OrchestratorGrantToRds"
    effect    = "Allow"
    actions   = ["kms:CreateGrant"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.orchestrator.arn]
    }

    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.via_rds]
    }
  }

  # Reading export metadata and Parquet footers (orchestrator) and exported files (DTS reader)
  # through S3: the files are SSE-KMS.
  statement {
    sid       = "DecryptViaS3"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.orchestrator.arn, aws_iam_user.dts_reader.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.via_s3]
    }
  }

  # The export role writes SSE-KMS objects through S3.
  statement {
    sid       = "ExportRoleViaS3"
    effect    = "Allow"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.export.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.via_s3]
    }
  }
}

resource "aws_kms_key" "exports" {
  description             = "rds2bq: encrypts RDS exports of ${var.source_id} in s3://${var.bucket_name}/${var.s3_prefix}/"
  key_usage               = "ENCRYPT_DECRYPT"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.exports_key.json
}

resource "aws_kms_alias" "exports" {
  name          = "alias/${var.name_prefix}-exports"
  target_key_id = aws_kms_key.exports.key_id
}

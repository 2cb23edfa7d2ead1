# --- The orchestrator role: assumed by the Cloud Functions with a Google ID token -----------------
#
# Google is a built-in web-identity provider for STS: no IAM OIDC provider to create. One
# statement per Google service account pins the token three ways (see FACTS.md):
#   accounts.google.com:aud  = the token's azp, the service account's numeric unique id
#   accounts.google.com:oaud = the token's aud, the audience string the function asked for
#   accounts.google.com:sub  = the service account's numeric unique id
# One statement per account (rather than one with lists) keeps aud and sub paired.

data "aws_iam_policy_document" "orchestrator_trust" {
  dynamic "statement" {
    for_each = toset(var.google_service_account_ids)

    content {
      sid     = "GoogleServiceAccount${statement.value}"
      effect  = "Allow"
      actions = ["sts:AssumeRoleWithWebIdentity"]

      principals {
        type        = "Federated"
        identifiers = ["accounts.google.com"]
      }

      condition {
        test     = "StringEquals"
        variable = "accounts.google.com:aud"
        values   = [statement.value]
      }

      condition {
        test     = "StringEquals"
        variable = "accounts.google.com:oaud"
        values   = [var.aws_audience]
      }

      condition {
        test     = "StringEquals"
        variable = "accounts.google.com:sub"
        values   = [statement.value]
      }
    }
  }
}

resource "aws_iam_role" "orchestrator" {
  name                 = "${var.name_prefix}-orchestrator"
  description          = "rds2bq Cloud Functions (keyless, Google ID token): start and watch exports of ${var.source_id}."
  assume_role_policy   = data.aws_iam_policy_document.orchestrator_trust.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "orchestrator" {
  statement {
    sid       = "ExportSource"
    effect    = "Allow"
    actions   = ["rds:StartExportTask"]
    resources = local.source.export
  }

  # "*" where AWS leaves no choice: CancelExportTask has no resource type, and
  # DescribeExportTasks' resource types are optional while the orchestrator's calls name no
  # source (by ExportTaskIdentifier, or by status to count the account's running exports against
  # the limit of 5), so they are evaluated against "*". Both only read or stop export tasks.
  statement {
    sid       = "WatchExportTasks"
    effect    = "Allow"
    actions   = concat(["rds:DescribeExportTasks"], var.allow_cancel_export ? ["rds:CancelExportTask"] : [])
    resources = ["*"]
  }

  statement {
    sid       = "DescribeSource"
    effect    = "Allow"
    actions   = local.source.describe
    resources = local.source.described
  }

  # StartExportTask's dependent action: hand the export role to RDS, and no other role.
  statement {
    sid       = "PassExportRole"
    effect    = "Allow"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.export.arn]
  }

  # Read the export's metadata files, and list the prefix to see what an export produced.
  statement {
    sid       = "ReadExportMetadata"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = [local.metadata_objects_arn]
  }

  # The poll's preflight (and sync) read each data file's Parquet footer, its rows and columns,
  # with ranged GETs. IAM has no condition on the byte range: this lets the role read the data
  # files whole, of the exports under the prefix and of nothing else.
  statement {
    sid       = "ReadParquetFooters"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = [local.parquet_objects_arn]
  }

  statement {
    sid       = "ListExportPrefix"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.s3_prefix, "${var.s3_prefix}/*"]
    }
  }

  # The same KMS grants as the key policy states (kms.tf), so this document is the whole
  # answer to "what can the orchestrator do".
  statement {
    sid       = "DescribeExportKey"
    effect    = "Allow"
    actions   = ["kms:DescribeKey"]
    resources = [aws_kms_key.exports.arn]
  }

  statement {
    sid       = "LetRdsUseExportKey"
    effect    = "Allow"
    actions   = ["kms:CreateGrant"]
    resources = [aws_kms_key.exports.arn]

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

  statement {
    sid       = "DecryptExportViaS3"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.exports.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.via_s3]
    }
  }
}

resource "aws_iam_role_policy" "orchestrator" {
  name   = "${var.name_prefix}-orchestrator"
  role   = aws_iam_role.orchestrator.id
  policy = data.aws_iam_policy_document.orchestrator.json
}

# --- The export role: RDS assumes it to write the export --------------------------------------

data "aws_iam_policy_document" "export_trust" {
  statement {
    sid     = "RdsExport"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["export.rds.amazonaws.com"]
    }

    # Confused-deputy guard: only exports started in this account may use the role.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "export" {
  name                 = "${var.name_prefix}-export"
  description          = "Assumed by RDS (export.rds.amazonaws.com) to write rds2bq exports under s3://${var.bucket_name}/${var.s3_prefix}/."
  assume_role_policy   = data.aws_iam_policy_document.export_trust.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "export" {
  # The actions AWS documents for the export role (API_StartExportTask: PutObject*, GetObject*,
  # ListBucket, DeleteObject*, GetBucketLocation), with objects confined to our prefix.
  statement {
    sid       = "WriteExportObjects"
    effect    = "Allow"
    actions   = ["s3:PutObject*", "s3:GetObject*", "s3:DeleteObject*"]
    resources = [local.prefix_objects_arn]
  }

  # Bucket-level calls; ListBucket is not narrowed by s3:prefix here because RDS's own listing
  # pattern is not documented and a denied listing fails the whole export.
  statement {
    sid       = "ExportBucket"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [local.bucket_arn]
  }

  # The bucket encrypts with SSE-KMS: S3 calls KMS on the writer's behalf.
  statement {
    sid       = "UseExportKeyViaS3"
    effect    = "Allow"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = [aws_kms_key.exports.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.via_s3]
    }
  }
}

resource "aws_iam_role_policy" "export" {
  name   = "${var.name_prefix}-export"
  role   = aws_iam_role.export.id
  policy = data.aws_iam_policy_document.export.json
}

# --- The DTS reader: the IAM user whose static keys BigQuery DTS uses -------------------------
#
# BigQuery DTS's amazon_s3 source accepts only an access key id and secret (no role, no
# federation), so this is the one long-lived credential in rds2bq. It can read the export
# prefix and nothing else. Its access key is NOT created here: a key created by Terraform would
# sit in plain text in the state file. docs/deploy.md creates it with `aws iam create-access-key`
# piped straight into `gcloud secrets versions add`.

resource "aws_iam_user" "dts_reader" {
  #checkov:skip=CKV_AWS_273:BigQuery DTS (amazon_s3) authenticates only with an IAM user's static access key; SSO or roles cannot be used by it.
  name = "${var.name_prefix}-dts-reader"
  path = "/${var.name_prefix}/"
}

data "aws_iam_policy_document" "dts_reader" {
  statement {
    sid       = "ReadExportObjects"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = [local.prefix_objects_arn]
  }

  statement {
    sid       = "ListExportPrefix"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.s3_prefix}/*"]
    }
  }

  # DTS documents read-only S3 access on the bucket (AmazonS3ReadOnlyAccess) as its minimum; of
  # that, a reader of one prefix needs the bucket's Region too. GetBucketLocation takes no
  # s3:prefix, so it cannot share the statement above.
  statement {
    sid       = "LocateBucket"
    effect    = "Allow"
    actions   = ["s3:GetBucketLocation"]
    resources = [local.bucket_arn]
  }

  statement {
    sid       = "DecryptViaS3"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.exports.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.via_s3]
    }
  }
}

resource "aws_iam_user_policy" "dts_reader" {
  #checkov:skip=CKV_AWS_40:A group would hold exactly this one user; the policy is the whole and only purpose of the user, and attaching it directly keeps it visible next to the user.
  name   = "${var.name_prefix}-dts-reader"
  user   = aws_iam_user.dts_reader.name
  policy = data.aws_iam_policy_document.dts_reader.json
}

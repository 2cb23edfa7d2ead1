# The export bucket: private, SSE-KMS with the export key, expiring old exports.
#
# Versioning stays off, on purpose. Every export is written once under a new, never reused
# export id and is a reproducible copy of the database; versioning would protect nothing that a
# re-export cannot rebuild, and it would keep deleted copies of production data (personal data,
# often) alive past the retention window that the lifecycle rule below promises.

resource "aws_s3_bucket" "exports" {
  #checkov:skip=CKV_AWS_21:Versioning off by design: exports are write-once copies that a re-export rebuilds, and noncurrent versions would keep personal data past the retention window.
  #checkov:skip=CKV_AWS_144:No cross-region replication: a replica doubles the copies of production data, and RDS exports only to a bucket in the source's Region anyway.
  #checkov:skip=CKV_AWS_18:No server access logging bucket here: reads are audited with CloudTrail S3 data events for this bucket (account-level trail, see docs/deploy.md), which also name the IAM principal.
  #checkov:skip=CKV2_AWS_62:No S3 event notifications: nothing consumes them; the orchestrator polls DescribeExportTasks and reads the export metadata.
  bucket        = var.bucket_name
  force_destroy = false
}

resource "aws_s3_bucket_ownership_controls" "exports" {
  bucket = aws_s3_bucket.exports.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "exports" {
  bucket                  = aws_s3_bucket.exports.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "exports" {
  bucket = aws_s3_bucket.exports.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.exports.arn
    }
    # One data key per bucket instead of one KMS call per object: cheaper, and DTS reads many
    # part files.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "exports" {
  bucket = aws_s3_bucket.exports.id

  rule {
    id     = "expire-old-exports"
    status = "Enabled"

    filter {
      prefix = "${var.s3_prefix}/"
    }

    expiration {
      days = var.export_retention_days
    }
  }

  # Whole bucket: a multipart upload abandoned anywhere is billed until aborted.
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "exports_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.exports.arn, "${aws_s3_bucket.exports.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "exports" {
  bucket = aws_s3_bucket.exports.id
  policy = data.aws_iam_policy_document.exports_bucket.json

  # S3 rejects a bucket policy while the public access block is being applied.
  depends_on = [aws_s3_bucket_public_access_block.exports]
}

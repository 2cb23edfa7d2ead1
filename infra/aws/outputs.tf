# Each output is the value of one RDS2BQ_* setting (cloudbuild.yaml substitution in brackets).

output "orchestrator_role_arn" {
  description = "RDS2BQ_AWS_ROLE_ARN (_AWS_ROLE_ARN): the role the functions assume with their Google ID token."
  value       = aws_iam_role.orchestrator.arn
}

output "export_role_arn" {
  description = "RDS2BQ_EXPORT_ROLE_ARN (_EXPORT_ROLE_ARN): the role RDS assumes to write the export."
  value       = aws_iam_role.export.arn
}

output "bucket" {
  description = "RDS2BQ_S3_BUCKET (_S3_BUCKET)."
  value       = aws_s3_bucket.exports.bucket
}

output "s3_prefix" {
  description = "RDS2BQ_S3_PREFIX (_S3_PREFIX)."
  value       = var.s3_prefix
}

output "kms_key_arn" {
  description = "RDS2BQ_KMS_KEY_ID (_KMS_KEY_ID): the export key."
  value       = aws_kms_key.exports.arn
}

output "dts_reader_user" {
  description = "IAM user whose access key goes into the DTS keys secret (created out of band: docs/deploy.md)."
  value       = aws_iam_user.dts_reader.name
}

output "region" {
  description = "RDS2BQ_AWS_REGION (_AWS_REGION)."
  value       = var.region
}

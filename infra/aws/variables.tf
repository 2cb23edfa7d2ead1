variable "region" {
  description = "AWS Region of the source database, the export bucket and the key (RDS exports only to a bucket in the same Region). Becomes RDS2BQ_AWS_REGION."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS Region name such as ap-northeast-1."
  }
}

variable "name_prefix" {
  description = "Prefix of every name this module creates (roles, user, key alias)."
  type        = string
  default     = "rds2bq"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2-32 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "source_kind" {
  description = "What is exported, as RDS2BQ_SOURCE_KIND: cluster (live Aurora cluster), cluster-snapshot (its automated snapshots) or db-snapshot (automated snapshots of a DB instance)."
  type        = string
  default     = "cluster"

  validation {
    condition     = contains(["cluster", "cluster-snapshot", "db-snapshot"], var.source_kind)
    error_message = "source_kind must be cluster, cluster-snapshot or db-snapshot."
  }
}

variable "source_id" {
  description = "Aurora cluster identifier, or DB instance identifier for db-snapshot (RDS2BQ_SOURCE_ID)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9-]{0,62}$", var.source_id)) && !strcontains(var.source_id, "--") && !endswith(var.source_id, "-")
    error_message = "source_id must be an RDS identifier: a letter first, then letters, digits or single '-', 1-63 characters, not ending in '-'."
  }
}

variable "bucket_name" {
  description = "Name of the export bucket this module creates (RDS2BQ_S3_BUCKET). Globally unique."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name)) && !strcontains(var.bucket_name, "..")
    error_message = "bucket_name must be a valid S3 bucket name: 3-63 lowercase letters, digits, '.' or '-'."
  }
}

variable "s3_prefix" {
  description = "Prefix inside the bucket for every export (RDS2BQ_S3_PREFIX). Every grant below is scoped to it."
  type        = string
  default     = "rds2bq"

  validation {
    condition = alltrue([
      length(var.s3_prefix) > 0,
      !strcontains(var.s3_prefix, ":"),
      !strcontains(var.s3_prefix, "*"),
      !strcontains(var.s3_prefix, "//"),
      !startswith(var.s3_prefix, "/"),
      !endswith(var.s3_prefix, "/"),
    ])
    error_message = "s3_prefix must be non-empty and contain no ':' '*' or '//', nor start or end with '/' (RDS exports break on them)."
  }
}

variable "google_service_account_ids" {
  description = "Numeric unique ids (not emails) of the Google service accounts that may assume the orchestrator role: the output aws_web_identity_service_account_ids of scheduler.tf (start_export, poll, rerun)."
  type        = list(string)

  validation {
    condition     = length(var.google_service_account_ids) > 0 && alltrue([for id in var.google_service_account_ids : can(regex("^[0-9]{10,30}$", id))])
    error_message = "google_service_account_ids must list at least one numeric service-account unique id (gcloud iam service-accounts describe EMAIL --format='value(uniqueId)')."
  }
}

variable "aws_audience" {
  description = "Audience of the Google ID tokens exchanged with STS: must equal RDS2BQ_AWS_AUDIENCE. Pinned as accounts.google.com:oaud."
  type        = string
  default     = "rds2bq"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9:/._-]{0,254}$", var.aws_audience))
    error_message = "aws_audience must be 1-255 characters: letters, digits and : / . _ -, no spaces."
  }
}

variable "allow_cancel_export" {
  description = "Let the orchestrator cancel export tasks (rds:CancelExportTask), for operators who cancel a run. RDS offers no resource-level scoping for it."
  type        = bool
  default     = true
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the export key is deleted after a destroy (7-30 days)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

variable "kms_admin_arns" {
  description = "IAM principals that administer the export key (no use of it). Empty: the account root, i.e. whoever IAM lets administer KMS."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.kms_admin_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(root|role/.+|user/.+)$", arn))])
    error_message = "kms_admin_arns must be IAM root, role or user ARNs."
  }
}

variable "export_retention_days" {
  description = "Days an export stays in the bucket before S3 deletes it. Long enough to rerun a transfer of a recent run; short because every export is a full copy of production data."
  type        = number
  default     = 14

  validation {
    condition     = var.export_retention_days >= 2 && var.export_retention_days <= 3650
    error_message = "export_retention_days must be between 2 and 3650."
  }
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}
